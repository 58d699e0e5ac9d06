/**
 * `npm run build && npx tsx bench/replay.ts`: the replay phase of `npm run bench` on its own, with
 * the bridge's CPU. Spools REPLAY_RECORDS (default 300,000) QoS 1 messages of 200 B over 500
 * topics with Kafka down, starts Kafka, and reports the replay rate (first replayed record to an
 * empty spool) and the bridge's CPU per replayed record (user + system). REPLAY_ROUNDS (default
 * 1) repeats the spool-and-replay cycle in the same bridge. REPLAY_BRIDGE_ENV adds variables for
 * the bridge ('KAFKA_REPLAY_BATCH_MAX_MESSAGES=500 ...'); BRIDGE_NODE_FLAGS replaces its Node flags
 * (add --cpu-prof --cpu-prof-dir=DIR to profile it).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { makeTempDir, startBridgeProcess, startKafka, startMosquitto, stopAll, type BridgeProcess } from '../test/harness/index.js';
import { settingsFrom } from './lib/settings.js';

const N = Number(process.env.REPLAY_RECORDS ?? 300_000);
const ROUNDS = Number(process.env.REPLAY_ROUNDS ?? 1);
const log = (msg: string) => process.stderr.write(`[replay] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** User and system CPU seconds of the process so far (/proc/<pid>/stat fields 14 and 15). */
function cpuSeconds(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) / 100, sys: Number(f[12]) / 100 };
}

async function waitMetric(b: BridgeProcess, name: string, pred: (v: number) => boolean): Promise<number> {
  const end = Date.now() + 600_000;
  for (;;) {
    const v = await b.metric(name);
    if (pred(v)) return Date.now();
    if (Date.now() > end) throw new Error(`timeout waiting for ${name} (last ${v})`);
    await sleep(20);
  }
}

async function publish(url: string, n: number): Promise<void> {
  const c = await mqtt.connectAsync(url, { clientId: `replay-pub-${Date.now()}`, clean: true });
  const inflight = new Set<Promise<unknown>>();
  const pad = ' '.repeat(180);
  for (let i = 0; i < n; i++) {
    const p = c.publishAsync(`bench/badge/${i % 500}/hb`, `{"seq":${i}}${pad}`, { qos: 1 });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    if (inflight.size >= 5000) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  await c.endAsync();
}

async function main(): Promise<void> {
  const dir = makeTempDir('replay-');
  const [mosq, kafka] = await Promise.all([startMosquitto({ logDir: dir }), startKafka({ logDir: dir })]);
  try {
    await kafka.createTopic('replay', 4);
    process.env.BRIDGE_DIST ??= '1';
    const extra = settingsFrom(process.env.REPLAY_BRIDGE_ENV);
    const b = await startBridgeProcess({
      env: {
        MQTT_BROKER: '127.0.0.1',
        MQTT_PORT: String(mosq.port),
        MQTT_TOPIC: 'bench/#',
        MQTT_CLIENT_ID: 'replay-bench',
        KAFKA_BROKER: '127.0.0.1',
        KAFKA_PORT: String(kafka.port),
        KAFKA_TOPIC: 'replay',
        SPOOL_MAX_BYTES: String(4 * 1024 ** 3),
        LOG_LEVEL: 'warn',
        ...extra,
      },
      logDir: path.join(dir, 'bridge'),
    });
    let replayed = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      await kafka.stop();
      const spooled0 = await b.metric('mqtt_kafka_spool_records_spooled_total');
      await publish(mosq.url, N);
      await waitMetric(b, 'mqtt_kafka_spool_records_spooled_total', (v) => v >= spooled0 + N);
      await kafka.start();
      const r0 = await waitMetric(b, 'mqtt_kafka_spool_records_replayed_total', (v) => v > replayed);
      const c0 = cpuSeconds(b.proc.pid);
      const r1 = await waitMetric(b, 'mqtt_kafka_spool_rows', (v) => v === 0);
      const c1 = cpuSeconds(b.proc.pid);
      const user = c1.user - c0.user;
      const sys = c1.sys - c0.sys;
      const cpu = user + sys;
      replayed = await b.metric('mqtt_kafka_spool_records_replayed_total');
      log(`round ${round}: ${N} records, ${Math.round((N * 1000) / (r1 - r0))} records/s, ${((cpu * 1e6) / N).toFixed(1)} µs CPU per record (user ${user.toFixed(2)} s + system ${sys.toFixed(2)} s in ${((r1 - r0) / 1000).toFixed(1)} s)`);
    }
    await b.proc.stop('SIGTERM');
  } finally {
    await stopAll();
  }
}

await main();
