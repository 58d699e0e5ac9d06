/**
 * `npx tsx bench/cpu-split.ts`: where the bridge's CPU goes, MQTT side against Kafka side — the
 * measurement behind the partitioned-mode evaluation in docs/operations.md ("Several replicas").
 * Starts its own Mosquitto and Kafka, runs one bridge under `--cpu-prof`, publishes
 * CPU_SPLIT_MESSAGES (default 100,000) QoS 1 messages over 500 badge topics at full speed, stops
 * the bridge gracefully (the profile is written at exit) and attributes every sample to the
 * nearest frame on its stack that belongs to a known part:
 *   mqtt   MQTT.js, mqtt-packet and src/mqtt (decode, PUBACK, flow control)
 *   kafka  @platformatic/kafka and src/kafka (batching, encoding, produce, acks)
 *   spool  better-sqlite3 and src/spool;  bridge  src/bridge (transform, headers, routing)
 *   http   fastify, prom-client, pino and src/observability
 *   node   Node's own code with none of those above it (socket reads and writes, timers)
 *   gc / idle / program  V8's pseudo-frames.
 * Prints the split as a table and as JSON.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { makeTempDir, startBridgeProcess, startKafka, startMosquitto, stopAll } from '../test/harness/index.js';

const N = Number(process.env.CPU_SPLIT_MESSAGES ?? 100_000);
const BADGES = 500;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const PARTS: [string, RegExp][] = [
  ['mqtt', /node_modules\/(mqtt|mqtt-packet|bl|commist|help-me|number-allocator)\/|\/src\/mqtt\//],
  ['kafka', /node_modules\/@platformatic\/kafka\/|\/src\/kafka\//],
  ['spool', /node_modules\/better-sqlite3\/|\/src\/spool\//],
  ['bridge', /\/src\/bridge\/|\/src\/sparkplug\//],
  ['http', /node_modules\/(fastify|prom-client|pino|pino-std-serializers|sonic-boom|thread-stream|light-my-request|find-my-way|avvio)\/|\/src\/observability\//],
];

function partOf(node: ProfileNode): string | undefined {
  const { url, functionName } = node.callFrame;
  if (functionName === '(garbage collector)') return 'gc';
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(program)') return 'program';
  for (const [name, re] of PARTS) if (re.test(url)) return name;
  return undefined;
}

/** Microseconds per part, each sample going to the nearest ancestor (or itself) with a part. */
export function splitProfile(p: Profile): Record<string, number> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map<number, string>();
  const resolve = (id: number): string => {
    const known = memo.get(id);
    if (known) return known;
    const n = byId.get(id)!;
    const own = partOf(n);
    const up = parent.get(id);
    const part = own ?? (up === undefined ? 'node' : resolve(up));
    memo.set(id, part === 'program' && own === undefined ? 'node' : part);
    return memo.get(id)!;
  };
  const out: Record<string, number> = {};
  for (let i = 0; i < p.samples.length; i++) {
    const part = resolve(p.samples[i]!);
    out[part] = (out[part] ?? 0) + (p.timeDeltas[i] ?? 0);
  }
  return out;
}

/** The functions with the most self time (µs), named `function (file:line)`: where to look first. */
export function topSelf(p: Profile, n: number): [string, number][] {
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!)!;
    const { functionName, url } = node.callFrame;
    if (functionName === '(idle)') continue;
    const where = url ? url.replace(/^.*node_modules\//, '').replace(/^.*\/(src|dist)\//, '$1/') : '';
    const key = `${functionName || '(anonymous)'}${where ? ` ${where}:${(node.callFrame as { lineNumber?: number }).lineNumber ?? 0}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, n);
}

async function publish(url: string, n: number): Promise<number> {
  const c = await mqtt.connectAsync(url, { clientId: `cpu-split-pub-${Date.now()}`, clean: true });
  const inflight = new Set<Promise<unknown>>();
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    const body = JSON.stringify({ badge_id: `badge-${i % BADGES}`, seq: Math.floor(i / BADGES), ts: Date.now() / 1000 });
    const p = c.publishAsync(`cpu/badge/${i % BADGES}/heartbeat`, body, { qos: 1 });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    if (inflight.size >= 1000) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  await c.endAsync();
  return Date.now() - t0;
}

async function main(): Promise<void> {
  const [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  try {
    await kafka.createTopic('cpu', 6);
    const dir = makeTempDir('cpu-split-');
    const profDir = path.join(dir, 'prof');
    const b = await startBridgeProcess({
      logDir: dir,
      nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
      env: { MQTT_BROKER: '127.0.0.1', MQTT_PORT: String(mosq.port), MQTT_TOPIC: 'cpu/badge/#', MQTT_CLIENT_ID: 'cpu-split', KAFKA_BROKER: '127.0.0.1', KAFKA_PORT: String(kafka.port), KAFKA_TOPIC: 'cpu' },
    });
    const ms = await publish(mosq.url, N);
    await b.waitFor('all in Kafka', async () => (await b.metric('mqtt_kafka_records_written_total')) >= N && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 120_000);
    const exit = await b.proc.stop('SIGTERM', 60_000);
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`no profile written (bridge exit ${JSON.stringify(exit)})`);
    const profile = JSON.parse(readFileSync(path.join(profDir, file), 'utf8')) as Profile;
    const split = splitProfile(profile);
    const busy = Object.entries(split).filter(([k]) => k !== 'idle').reduce((a, [, v]) => a + v, 0);
    process.stdout.write(`cpu split of one bridge over ${N} QoS 1 messages (${Math.round(N / (ms / 1000))} msg/s published), busy ${(busy / 1e6).toFixed(1)} s:\n`);
    for (const [k, v] of Object.entries(split).sort((a, c) => c[1] - a[1])) {
      process.stdout.write(`  ${k.padEnd(8)} ${(v / 1e6).toFixed(2).padStart(7)} s  ${k === 'idle' ? '' : `${((100 * v) / busy).toFixed(1)} % of busy`}\n`);
    }
    process.stdout.write(`top self time (µs per message):\n`);
    for (const [k, v] of topSelf(profile, Number(process.env.CPU_SPLIT_TOP ?? 30))) process.stdout.write(`  ${(v / N).toFixed(2).padStart(6)}  ${k}\n`);
    process.stdout.write(`${JSON.stringify({ messages: N, publishMs: ms, busyUs: busy, split })}\n`);
  } finally {
    await stopAll();
  }
}

await main();
