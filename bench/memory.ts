/**
 * `npx tsx bench/memory.ts`: where the bridge's memory goes, and what Node flag sets cost — the
 * measurement behind README "Memory". Starts its own Mosquitto and Kafka, then for each flag set
 * (MEM_FLAGS: flag sets separated by '|'; default: the image's command line) runs one bridge
 * (the compiled build, `npm run build` first) and reads, from /proc and its /metrics:
 *   idle    RSS after MEM_IDLE_SECONDS (default 15) with no traffic, heap by space (V8), external
 *           and array buffers, and /proc/<pid>/smaps_rollup (anonymous vs file-backed pages);
 *   full    peak RSS while MEM_MESSAGES (default 100,000) QoS 1 messages of 200 B over 500 badge
 *           topics go through at full speed, CPU µs per message (user + system), throughput;
 *           the garbage collections meanwhile (prom-client's nodejs_gc_duration_seconds: minor =
 *           scavenges, major = mark-compacts) and their pause time;
 *   topics  peak RSS while MEM_TOPICS (default 100,000) messages go to as many distinct topics.
 * With MEM_ALLOC=1, each bridge also preloads bench/lib/alloc-sampler.mjs and, during the full-speed
 * phase, samples MEM_ALLOC_SECONDS (default 3) of allocations, freed objects included: bytes
 * allocated per message, in all and by function (the sampler costs CPU: leave the CPU figure of
 * such a run aside).
 * Prints one table per measure; writes the JSON to bench/results/memory-<date>.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { makeTempDir, repoRoot, startBridgeProcess, startKafka, startMosquitto, stopAll, type BridgeProcess } from '../test/harness/index.js';
import { settingsFrom } from './lib/settings.js';

const N = Number(process.env.MEM_MESSAGES ?? 100_000);
const TOPICS = Number(process.env.MEM_TOPICS ?? 100_000);
const IDLE_S = Number(process.env.MEM_IDLE_SECONDS ?? 15);
/** The image's command line: Dockerfile NODE_OPTIONS + CMD. */
const IMAGE_FLAGS = readImageFlags();
const FLAG_SETS = (process.env.MEM_FLAGS ?? IMAGE_FLAGS).split('|').map((s) => s.trim());
const ALLOC = process.env.MEM_ALLOC === '1';
const ALLOC_S = Number(process.env.MEM_ALLOC_SECONDS ?? 3);
const SAMPLER = path.join(repoRoot, 'bench', 'lib', 'alloc-sampler.mjs');
const BADGES = 500;
const MB = 1048576;

const log = (msg: string) => process.stderr.write(`[memory] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The Node flags the image runs with, read from the Dockerfile (NODE_OPTIONS, then the CMD's). */
function readImageFlags(): string {
  const df = readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
  const opts = /NODE_OPTIONS="([^"]*)"/.exec(df)?.[1] ?? '';
  const cmd = /^CMD \[(.*)\]\s*$/m.exec(df)?.[1] ?? '';
  const cmdFlags = [...cmd.matchAll(/"(--[^"]+)"/g)].map((m) => m[1]);
  return [opts, ...cmdFlags].join(' ').trim();
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function rollup(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(line);
    if (m && ['Rss', 'Anonymous', 'Shared_Clean', 'Private_Clean', 'Private_Dirty'].includes(m[1]!)) out[m[1]!] = Number(m[2]) / 1024;
  }
  return out;
}

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Peak RSS (every 50 ms), and at the same time the peaks of anonymous memory and of V8's committed heap and external memory (every 250 ms). */
function peakSampler(pid: number, b: BridgeProcess) {
  let peak = 0;
  const peaks: Record<string, number> = {};
  const max = (k: string, v: number) => (peaks[k] = Math.max(peaks[k] ?? 0, v));
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssMb(pid));
    } catch {
      // gone
    }
  }, 50);
  let busy = false;
  const slow = setInterval(() => {
    if (busy) return;
    busy = true;
    try {
      max('anonymous', rollup(pid).Anonymous ?? 0);
    } catch {
      // gone
    }
    heap(b)
      .then((h) => {
        max('v8 committed', Object.entries(h).filter(([k]) => k.endsWith('(committed)')).reduce((a, [, v]) => a + v, 0));
        max('v8 used', h['v8 heap used'] ?? 0);
        max('external', h.external ?? 0);
      })
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, 250);
  return {
    peak: () => peak,
    peaks: () => peaks,
    stop: () => {
      clearInterval(timer);
      clearInterval(slow);
    },
  };
}

/** V8 heap by space, external and array buffers, from prom-client's default metrics. */
async function heap(b: BridgeProcess): Promise<Record<string, number>> {
  const m = await b.metrics();
  const out: Record<string, number> = {};
  for (const [k, v] of m) {
    const s = /^nodejs_heap_space_size_total_bytes\{space="(\w+)"\}$/.exec(k);
    if (s) out[`v8 ${s[1]} (committed)`] = v / MB;
  }
  out['v8 heap used'] = (m.get('nodejs_heap_size_used_bytes') ?? NaN) / MB;
  out['external'] = (m.get('nodejs_external_memory_bytes') ?? NaN) / MB;
  return out;
}

/** Garbage collections so far, from prom-client's GC histogram: count and pause seconds by kind. */
async function gcStats(b: BridgeProcess): Promise<Record<string, number>> {
  const m = await b.metrics();
  const out: Record<string, number> = {};
  for (const [k, v] of m) {
    const g = /^nodejs_gc_duration_seconds_(count|sum)\{kind="(\w+)"\}$/.exec(k);
    if (g) out[`${g[2]} ${g[1]}`] = v;
  }
  return out;
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** Bytes allocated per message in a sampling heap profile, in all and by function (self). */
function allocationsPerMessage(file: string, messages: number): { total: number; byFunction: [string, number][] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { head: ProfileNode };
  const by = new Map<string, number>();
  let total = 0;
  const walk = (n: ProfileNode) => {
    const f = n.callFrame;
    const where = f.url === '' ? '(V8 built-in)' : `${f.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${f.lineNumber + 1}`;
    const name = `${f.functionName || '(anonymous)'} ${where}`;
    by.set(name, (by.get(name) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  const byFunction = [...by].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([k, v]): [string, number] => [k, v / messages]);
  return { total: total / messages, byFunction };
}

async function sampleAllocations(b: BridgeProcess, file: string): Promise<{ total: number; byFunction: [string, number][] }> {
  // Past the first messages (connections and JIT warm-up), also when MEM_MESSAGES is small.
  const warm = Math.min(5000, Math.floor(N / 4));
  while ((await b.metric('mqtt_kafka_messages_received_total')) < warm) await sleep(50);
  const m0 = await b.metric('mqtt_kafka_messages_received_total');
  process.kill(b.proc.pid, 'SIGUSR2');
  await sleep(ALLOC_S * 1000);
  process.kill(b.proc.pid, 'SIGUSR2');
  const messages = (await b.metric('mqtt_kafka_messages_received_total')) - m0;
  const end = Date.now() + 30_000;
  for (;;) {
    try {
      return allocationsPerMessage(file, messages);
    } catch (err) {
      if (Date.now() > end) throw err;
      await sleep(200);
    }
  }
}

async function publish(url: string, n: number, topic: (i: number) => string): Promise<void> {
  const c = await mqtt.connectAsync(url, { clientId: `mem-pub-${Date.now()}`, clean: true });
  const body = (i: number) => {
    const head = JSON.stringify({ seq: i, ts: Date.now() });
    return head + ' '.repeat(Math.max(0, 200 - head.length));
  };
  const inflight = new Set<Promise<unknown>>();
  for (let i = 0; i < n; i++) {
    const p = c.publishAsync(topic(i), body(i), { qos: 1 });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    if (inflight.size >= 1000) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  await c.endAsync();
}

async function waitWritten(b: BridgeProcess, n: number): Promise<number> {
  const end = Date.now() + 600_000;
  while ((await b.metric('mqtt_kafka_records_written_total')) < n) {
    if (Date.now() > end) throw new Error('timeout waiting for records written');
    await sleep(50);
  }
  return Date.now();
}

async function main(): Promise<void> {
  const dir = makeTempDir('mem-');
  log(`brokers starting (logs in ${dir}); flag sets: ${FLAG_SETS.map((f) => `[${f}]`).join(' ')}`);
  const [mosq, kafka] = await Promise.all([startMosquitto({ logDir: dir }), startKafka({ logDir: dir })]);
  const rows: Record<string, Record<string, number>> = {};
  const allocations: Record<string, [string, number][]> = {};
  try {
    await kafka.createTopic('mem', 4);
    for (const [i, flags] of FLAG_SETS.entries()) {
      process.env.BRIDGE_NODE_FLAGS = ALLOC ? `${flags} --import=${SAMPLER}` : flags;
      process.env.BRIDGE_DIST = '1';
      const sub = path.join(dir, `run-${i}`);
      mkdirSync(sub, { recursive: true });
      const b = await startBridgeProcess({
        env: {
          MQTT_BROKER: '127.0.0.1',
          MQTT_PORT: String(mosq.port),
          MQTT_TOPIC: 'mem/#',
          MQTT_CLIENT_ID: `mem-${i}`,
          KAFKA_BROKER: '127.0.0.1',
          KAFKA_PORT: String(kafka.port),
          KAFKA_TOPIC: 'mem',
          LOG_LEVEL: 'warn',
          ALLOC_PROFILE_PATH: path.join(sub, 'alloc.heapprofile'),
          // MEM_BRIDGE_ENV: extra variables for the bridge, e.g. 'MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=131072'.
          ...settingsFrom(process.env.MEM_BRIDGE_ENV),
        },
        logDir: sub,
      });
      const pid = b.proc.pid;
      log(`[${flags}] idle ${IDLE_S} s`);
      await sleep(IDLE_S * 1000);
      const row: Record<string, number> = { 'idle RSS': rssMb(pid) };
      for (const [k, v] of Object.entries(rollup(pid))) row[`idle smaps ${k}`] = v;
      for (const [k, v] of Object.entries(await heap(b))) row[`idle ${k}`] = v;

      log(`[${flags}] full speed, ${N} messages`);
      const s = peakSampler(pid, b);
      const g0 = await gcStats(b);
      const c0 = cpuSeconds(pid);
      const t0 = Date.now();
      const sent = publish(mosq.url, N, (j) => `mem/badge/${j % BADGES}/hb`);
      const alloc = ALLOC ? await sampleAllocations(b, path.join(sub, 'alloc.heapprofile')) : undefined;
      await sent;
      const t1 = await waitWritten(b, N);
      row['full CPU µs/msg'] = ((cpuSeconds(pid) - c0) * 1e6) / N;
      row['full msg/s'] = (N * 1000) / (t1 - t0);
      const g1 = await gcStats(b);
      const gc = (k: string) => (g1[k] ?? 0) - (g0[k] ?? 0);
      row['full GC scavenges'] = gc('minor count');
      row['full GC mark-compacts'] = gc('major count');
      row['full GC pause ms'] = (gc('minor sum') + gc('major sum') + gc('incremental sum')) * 1000;
      if (alloc) {
        row['full allocated KB/msg'] = alloc.total / 1024;
        // The same flag set may be listed twice: each run keeps its own list.
        allocations[`${flags} (run ${i + 1})`] = alloc.byFunction;
      }
      row['full peak RSS'] = s.peak();
      for (const [k, v] of Object.entries(s.peaks())) row[`full peak ${k}`] = v;
      for (const [k, v] of Object.entries(await heap(b))) row[`full ${k}`] = v;
      s.stop();

      if (TOPICS > 0) {
        log(`[${flags}] ${TOPICS} distinct topics`);
        const s2 = peakSampler(pid, b);
        await publish(mosq.url, TOPICS, (j) => `mem/device/${j}/reading`);
        await waitWritten(b, N + TOPICS);
        row['topics peak RSS'] = s2.peak();
        for (const [k, v] of Object.entries(s2.peaks())) row[`topics peak ${k}`] = v;
        row['topics RSS after'] = rssMb(pid);
        s2.stop();
      }
      // The same flag set may be listed twice (alternating runs): each run gets its own column.
      let name = flags || '(none)';
      for (let k = 2; rows[name] !== undefined; k++) name = `${flags || '(none)'} #${k}`;
      rows[name] = row;
      await b.proc.stop('SIGTERM');
    }
  } finally {
    await stopAll();
  }
  const keys = [...new Set(Object.values(rows).flatMap((r) => Object.keys(r)))];
  const names = Object.keys(rows);
  const lines = [`| MB (or as named) | ${names.map((n) => `\`${n}\``).join(' | ')} |`, `|---|${names.map(() => '---:').join('|')}|`];
  for (const k of keys) lines.push(`| ${k} | ${names.map((n) => (rows[n]![k] ?? NaN).toFixed(1)).join(' | ')} |`);
  process.stdout.write(lines.join('\n') + '\n');
  for (const [flags, top] of Object.entries(allocations)) {
    process.stdout.write(`\nallocated per message at full speed, by function (self), [${flags}]:\n`);
    for (const [fn, bytes] of top) process.stdout.write(`${bytes.toFixed(0).padStart(6)} B  ${fn}\n`);
  }
  const out = path.join(repoRoot, 'bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, `memory-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ date: new Date().toISOString(), messages: N, topics: TOPICS, rows, allocations }, null, 2));
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
