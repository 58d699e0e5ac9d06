import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBadges,
  freePorts,
  makeTempDir,
  publishBadges,
  startBridgeProcess,
  startDelayProxy,
  startKafka,
  startMosquitto,
  type BridgeProcess,
  type DelayProxy,
  type Kafka,
  type Mosquitto,
} from '../harness/index.js';

/**
 * Zero duplicates on a graceful stop (issue 9): publish continuously at 5,000 msg/s, SIGTERM the
 * bridge and start it again, five times, then read Kafka back. Every message must be there once:
 * a graceful stop writes every PUBACK that became releasable, confirms the broker read them, and
 * only then disconnects; what arrived after intake stopped is left for the broker to redeliver.
 * Run twice: Kafka direct, and behind a proxy adding 200 ms to every request.
 */
const BADGES = 500;
const PER_BADGE = 360; // 180,000 messages, 36 s at 5,000 msg/s
const RATE = 5000;
const RESTARTS = 5;

let mosq: Mosquitto;
let kafka: Kafka;
let proxy: DelayProxy;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  // Kafka advertises the proxy, so every client (the bridge, kcat, the admin) goes through it.
  const [kafkaPort, proxyPort] = await freePorts(2);
  proxy = await startDelayProxy({ port: proxyPort!, targetPort: kafkaPort! });
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka({ port: kafkaPort!, extraProps: { 'advertised.listeners': `PLAINTEXT://127.0.0.1:${proxyPort}` } })]);
  await kafka.createTopic('gs-direct', 4);
  await kafka.createTopic('gs-slow', 4);
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
  await proxy?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function restartsUnderLoad(name: string): Promise<void> {
  const dir = makeTempDir(`${name}-`);
  const env = {
    MQTT_BROKER: '127.0.0.1',
    MQTT_PORT: String(mosq.port),
    MQTT_TOPIC: 'cackalacky/badge/egress/#',
    MQTT_CLIENT_ID: name,
    KAFKA_BROKER: '127.0.0.1',
    KAFKA_PORT: String(proxy.port),
    KAFKA_TOPIC: name,
    SPOOL_PATH: `${dir}/spool.db`,
    SHUTDOWN_TIMEOUT_MS: '20000',
  };
  const start = async (): Promise<BridgeProcess> => {
    const b = await startBridgeProcess({ env, logDir: dir });
    bridges.push(b);
    return b;
  };
  let b = await start();
  let publishing = true;
  const publish = publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE, ratePerS: RATE }).finally(() => (publishing = false));
  const stops: { code: number | null; ms: number; whilePublishing: boolean; reconnects: number }[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    await sleep(2000);
    const reconnects = await b.metric('mqtt_kafka_mqtt_reconnects_total');
    const whilePublishing = publishing;
    const t0 = Date.now();
    const exit = await b.proc.stop('SIGTERM', 30_000);
    stops.push({ code: exit.code, ms: Date.now() - t0, whilePublishing, reconnects });
    b = await start();
  }
  const published = await publish;
  await b.waitFor('caught up', async () => (await b.metric('mqtt_kafka_unacked_messages')) === 0 && (await b.metric('mqtt_kafka_in_flight_messages')) === 0, 90_000);
  const records = await kafka.readTopic(name, { expected: published, timeoutMs: 120_000 });
  // A little longer: a duplicate would arrive after the last original.
  await sleep(1000);
  const all = await kafka.readTopic(name, { expected: records.length, timeoutMs: 60_000 });
  const check = checkBadges(all, BADGES, PER_BADGE);
  const log = fs.readFileSync(b.logFile, 'utf8');
  const lines = log.split('\n');
  const count = (re: RegExp) => lines.filter((l) => re.test(l)).length;
  const late = lines.filter((l) => l.includes('after intake stopped')).map((l) => (JSON.parse(l) as { messages: number }).messages);
  console.log(
    `${name}: ${published} published, ${all.length} records, ${check.missing.length} lost, ${check.duplicates} duplicates, ${check.outOfOrder.length} badges out of order; ` +
      `stops ${JSON.stringify(stops)}; left for redelivery at each stop: ${JSON.stringify(late)}`,
  );
  expect(stops).toHaveLength(RESTARTS);
  expect(stops.filter((s) => s.whilePublishing)).toHaveLength(RESTARTS);
  expect(stops.map((s) => s.code)).toEqual(Array(RESTARTS).fill(0));
  expect(check.missing).toEqual([]);
  expect(check.outOfOrder).toEqual([]);
  expect(check.duplicates).toBe(0);
  expect(all.length).toBe(published);
  // Messages that arrived after intake stopped are not errors: no Kafka write failure, one info line per stop at most.
  expect(count(/BRIDGE_ERR_CLOSED/)).toBe(0);
  expect(count(/Kafka write failed/)).toBe(0);
  expect(count(/could not confirm that the broker read/)).toBe(0);
  expect(late.length).toBeLessThanOrEqual(RESTARTS);
  expect(count(/"level":"(error|fatal)"/)).toBe(0);
  // Every Kafka connection went through the delay proxy, and the slow run really was slow.
  const latency = (await b.metric('mqtt_kafka_produce_latency_seconds_sum', { path: 'direct' })) / (await b.metric('mqtt_kafka_produce_latency_seconds_count', { path: 'direct' }));
  console.log(`${name}: proxy connections ${proxy.accepted}, mean produce latency of the last run ${(latency * 1000).toFixed(0)} ms`);
  expect(proxy.accepted).toBeGreaterThan(0);
  if (proxy.upstreamDelayMs > 0) expect(latency).toBeGreaterThanOrEqual(proxy.upstreamDelayMs / 1000);
  else expect(latency).toBeLessThan(0.2);
  await b.proc.stop('SIGTERM');
}

describe('graceful stop', () => {
  it('5 SIGTERM restarts at 5,000 msg/s: every message in Kafka exactly once (0 duplicates, 0 lost)', async () => {
    proxy.upstreamDelayMs = 0;
    await restartsUnderLoad('gs-direct');
  }, 300_000);

  it('the same with the Kafka write path slow (200 ms added to every request)', async () => {
    proxy.upstreamDelayMs = 200;
    try {
      await restartsUnderLoad('gs-slow');
    } finally {
      proxy.upstreamDelayMs = 0;
    }
  }, 300_000);
});
