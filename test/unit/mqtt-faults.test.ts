import { describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { createMqttSource } from '../../src/mqtt/source.js';
import { freePort } from '../harness/ports.js';
import { captureLogger } from './fakes.js';

/** MQTT.js against a port nobody listens on: every reconnect attempt fails (ECONNREFUSED). */
describe('MQTT connection errors are one fault, not a line per reconnect', () => {
  it('logs 2 s of failing reconnects every 100 ms as one warn line', async () => {
    const port = await freePort();
    const cap = captureLogger();
    let reconnects = 0;
    const config: Config['mqtt'] = {
      url: `mqtt://127.0.0.1:${port}`,
      topics: ['t/#'],
      clientId: 'mqtt-faults-test',
      qos: 1,
      protocolVersion: 5,
      sessionExpiryS: 60,
      keepaliveS: 60,
      reconnectMs: 100,
      maxInFlight: 10,
      maxInFlightBytes: 1 << 20,
      readAheadMessages: 0,
      readAheadMaxAgeMs: 1000,
      removedFilterPolicy: 'dead_letter',
    };
    const source = createMqttSource(config, {
      onMessage: () => undefined,
      logger: cap.logger,
      telemetry: { mqttState: () => undefined, mqttReconnect: () => void reconnects++, mqttRedelivered: () => undefined },
    });
    void source.start().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 2000));
    await source.close();
    expect(reconnects).toBeGreaterThanOrEqual(8);
    const loud = cap.atLeastWarn().filter((l) => l.component === 'mqtt');
    expect(loud).toHaveLength(1);
    expect(loud[0]).toMatchObject({ level: 'warn', fault: 'mqtt_connection', retryInMs: 100 });
    expect(loud[0]!.msg).toMatch(/^MQTT (broker unreachable|connection error)/);
  });
});
