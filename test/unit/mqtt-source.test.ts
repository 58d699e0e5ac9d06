import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { createMqttSource } from '../../src/mqtt/source.js';
import type { InboundMessage, MqttSource } from '../../src/mqtt/types.js';
import { FakeBroker } from './fake-broker.js';

/**
 * The MQTT source with the real MQTT.js client against a scriptable broker (test/unit/fake-broker.ts):
 * back-pressure without disconnects.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sources: MqttSource[] = [];
const brokers: FakeBroker[] = [];

afterEach(async () => {
  for (const s of sources.splice(0)) await s.close().catch(() => undefined);
  for (const b of brokers.splice(0)) await b.close();
});

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

function mqttConfig(url: string, over: Partial<Config['mqtt']> = {}): Config['mqtt'] {
  return {
    url,
    topics: ['sensors/#'],
    clientId: 'bridge-1',
    qos: 1,
    protocolVersion: 5,
    sessionExpiryS: 3600,
    keepaliveS: 60,
    reconnectMs: 100,
    maxInFlight: 1000,
    maxInFlightBytes: 1 << 26,
    ...over,
  };
}

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

function harness(broker: FakeBroker, over: Partial<Config['mqtt']> = {}, opts: { settle?: 'now' | 'manual' } = {}) {
  const logs: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
        cb();
      },
    }),
  );
  const delivered: InboundMessage[] = [];
  const telemetry = { mqttState: () => undefined, mqttReconnect: () => reconnects++, mqttRedelivered: () => undefined };
  let reconnects = 0;
  let source: MqttSource;
  source = createMqttSource(mqttConfig(broker.url, over), {
    logger,
    telemetry,
    onMessage: (m) => {
      delivered.push(m);
      if (opts.settle !== 'manual') source.settle(m.seq);
    },
  });
  sources.push(source);
  return { source, delivered, logs, reconnects: () => reconnects };
}

describe('MQTT source: back-pressure without disconnects', () => {
  it('holds intake at MAX_IN_FLIGHT_MESSAGES for 3 × keepalive without losing the connection, says why, then drains', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker, { keepaliveS: 1, maxInFlight: 3 }, { settle: 'manual' });
    await h.source.start();
    for (let i = 0; i < 10; i++) broker.conn.publish(`sensors/${i}`, 'x');
    await until(() => h.delivered.length === 3, 'the bound reached');
    expect(h.source.pauseReason).toBe('in_flight_bound');
    await sleep(3200);
    expect(h.delivered.length).toBe(3);
    expect(broker.conns.length).toBe(1);
    expect(h.reconnects()).toBe(0);
    expect(h.source.state).toBe('subscribed');
    expect(broker.packets('pingreq').length).toBeGreaterThanOrEqual(2);
    // Settle as they come: everything drains on the same connection.
    const settleAll = () => h.delivered.forEach((m) => h.source.settle(m.seq));
    while (h.delivered.length < 10) {
      settleAll();
      await sleep(10);
    }
    settleAll();
    await until(() => broker.packets('puback').length === 10, '10 PUBACKs');
    expect(broker.packets('puback').map((p) => p.messageId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(h.source.pauseReason).toBeUndefined();
    expect(broker.conns.length).toBe(1);
    expect(h.logs.filter((l) => l.level >= 40)).toEqual([]);
  });
});
