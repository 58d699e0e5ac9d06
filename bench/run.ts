/**
 * `npm run bench`: starts its own Mosquitto and Kafka on loopback and measures (DESIGN §7):
 *  1. raw Mosquitto QoS 1 pub→sub throughput (MQTT.js publisher and subscriber, same run);
 *  2. bridge end-to-end QoS 1 throughput (publish → acknowledged by Kafka) and its ratio to 1,
 *     and the bridge's CPU time (user + system) per 100,000 messages in that run;
 *  3. publish→Kafka latency p50/p99 at a fixed rate (Kafka LogAppendTime minus publish time);
 *  4. spool ingest rate with Kafka down (durable: committed to the spool);
 *  5. replay rate and time to drain the spool after Kafka returns;
 *  6. peak RSS of the bridge with an empty spool and while the spool holds the records;
 *  7. typed records: end-to-end throughput and CPU per message of a routes file writing the same
 *     payloads as Avro through a schema registry (Apicurio Registry, started here) against the
 *     same route with format json, in this run.
 * Prints one table and writes the same figures as JSON to bench/results/.
 *
 * Sizes: BENCH_MESSAGES (default 100000), BENCH_SPOOL_RECORDS (default 1000000),
 * BENCH_LATENCY_RATE (default 5000 msg/s) for BENCH_LATENCY_SECONDS (default 10),
 * BENCH_TYPED_MESSAGES (default 50000) for each of the four typed runs (json, avro, avro, json).
 * BENCH_BRIDGE_ENV: settings for every bridge of the run, e.g. 'KAFKA_WORKERS=2 KAFKA_BATCH_MAX_MESSAGES=1000'.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { makeTempDir, repoRoot, startBridgeProcess, startKafka, startMosquitto, startRegistry, stopAll, type BridgeProcess } from '../test/harness/index.js';
import { settingsFrom } from './lib/settings.js';

const N = Number(process.env.BENCH_MESSAGES ?? 100_000);
const SPOOL_N = Number(process.env.BENCH_SPOOL_RECORDS ?? 1_000_000);
const LAT_RATE = Number(process.env.BENCH_LATENCY_RATE ?? 5000);
const LAT_SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 10);
const TYPED_N = Number(process.env.BENCH_TYPED_MESSAGES ?? 50_000);
const bridgeEnv = settingsFrom(process.env.BENCH_BRIDGE_ENV);
const PAYLOAD_BYTES = 200;
const BADGES = 500;

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function payload(seq: number): string {
  const head = JSON.stringify({ seq, ts: Date.now() });
  return head + ' '.repeat(Math.max(0, PAYLOAD_BYTES - head.length));
}

/** Publishes `n` QoS 1 messages over 500 badge topics with a window of unacknowledged publishes. */
async function publish(url: string, n: number, opts: { ratePerS?: number; window?: number; topicPrefix?: string } = {}): Promise<{ ms: number }> {
  const c = await mqtt.connectAsync(url, { clientId: `bench-pub-${Date.now()}`, clean: true });
  const window = opts.window ?? 1000;
  const prefix = opts.topicPrefix ?? 'bench/badge';
  const inflight = new Set<Promise<unknown>>();
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    const p = c.publishAsync(`${prefix}/${i % BADGES}/hb`, payload(i), { qos: 1 });
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
    if (inflight.size >= window) await Promise.race(inflight);
    if (opts.ratePerS) {
      const wait = t0 + (i * 1000) / opts.ratePerS - Date.now();
      if (wait > 1) await sleep(wait);
    }
  }
  await Promise.all(inflight);
  const ms = Date.now() - t0;
  await c.endAsync();
  return { ms };
}

/** Raw Mosquitto QoS 1 pub→sub: a subscriber in its own process (like the bridge), the publisher here. */
async function rawMosquitto(url: string, n: number): Promise<number> {
  const script = `
    import mqtt from 'mqtt';
    const n = ${n}; let got = 0, t0 = 0;
    const c = mqtt.connect(${JSON.stringify(url)}, { clientId: 'bench-raw-sub', clean: true });
    c.on('connect', () => c.subscribe('raw/#', { qos: 1 }, () => process.stdout.write('ready\\n')));
    c.on('message', () => { if (got++ === 0) t0 = Date.now(); if (got === n) { process.stdout.write('done ' + (Date.now() - t0) + '\\n'); c.end(true, () => process.exit(0)); } });
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const ready = new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => ((out += d.toString()), out.includes('ready') && resolve())));
  await ready;
  const t0 = Date.now();
  await publish(url, n, { topicPrefix: 'raw/badge' });
  await new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const m = /done (\d+)/.exec(out);
  const ms = Math.max(Date.now() - t0, m ? Number(m[1]) : 0);
  return (n * 1000) / ms;
}

/** Samples the bridge's resident set size every 100 ms. */
function rssSampler(pid: number) {
  let peak = 0;
  const timer = setInterval(() => {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) * 1024);
    } catch {
      // process gone
    }
  }, 100);
  return {
    reset: () => (peak = 0),
    peakMb: () => peak / 1048576,
    stop: () => clearInterval(timer),
  };
}

/** CPU seconds (user + system) the process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces, hence the last ')'): utime and stime are fields 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const CLK_TCK = 100;
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Busy and total CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait). */
function machineCpu(): { busy: number; cores: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const cores = readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d/.test(l)).length;
  return { busy: (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) / 100, cores };
}

/** Cores busy on average over a phase, and each broker's CPU per message in it. */
function phaseCpu(start: ReturnType<typeof machineCpu>, wallMs: number, n: number, pids: Record<string, number | undefined>, before: Record<string, number>): string {
  const busy = (machineCpu().busy - start.busy) / (wallMs / 1000);
  const per = Object.entries(pids)
    .filter(([, pid]) => pid !== undefined)
    .map(([name, pid]) => `${name} ${(((cpuSeconds(pid!) - before[name]!) * 1e6) / n).toFixed(1)} µs`);
  return `${busy.toFixed(2)} of ${start.cores} cores busy; ${per.join(', ')} per message`;
}

function cpuOf(pids: Record<string, number | undefined>): Record<string, number> {
  return Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, pid === undefined ? 0 : cpuSeconds(pid)]));
}

async function waitMetric(b: BridgeProcess, name: string, pred: (v: number) => boolean, timeoutMs = 600_000, labels?: Record<string, string>): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await b.metric(name, labels);
    if (pred(v)) return Date.now();
    if (Date.now() > end) throw new Error(`timeout waiting for ${name} (last ${v})`);
    await sleep(50);
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const dir = makeTempDir('bench-');
  log(`brokers starting (logs in ${dir})`);
  const [mosq, kafka, registry] = await Promise.all([startMosquitto({ logDir: dir }), startKafka({ logDir: dir }), startRegistry({ logDir: dir })]);
  const results: Record<string, number | string> = {};
  try {
    for (const topic of ['bench', 'bench-latency', 'bench-spool', 'bench-typed-json', 'bench-typed-avro']) {
      await kafka.createTopic(topic, 4, { configs: { 'message.timestamp.type': 'LogAppendTime' } });
    }

    log(`raw Mosquitto QoS 1 pub→sub, ${N} messages`);
    // Brokers, publisher and bridge share the machine's cores: how busy they were says whether a
    // phase was bound by CPU, and whose.
    const brokers = { Mosquitto: mosq.pid, Kafka: kafka.pid };
    let m0 = machineCpu();
    let b0 = cpuOf(brokers);
    const w0 = Date.now();
    results.raw_mosquitto_qos1_msg_s = Math.round(await rawMosquitto(mosq.url, N));
    results.raw_cpu = phaseCpu(m0, Date.now() - w0, N, { Mosquitto: mosq.pid }, b0);

    const env = (topic: string, clientId: string, spool: string): Record<string, string> => ({
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_TOPIC: 'bench/#',
      MQTT_CLIENT_ID: clientId,
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_TOPIC: topic,
      SPOOL_PATH: spool,
      LOG_LEVEL: 'warn',
      ...bridgeEnv,
    });

    // --- bridge, Kafka up, empty spool ---
    const b1 = await startBridgeProcess({ env: env('bench', 'bench-e2e', path.join(dir, 'e2e', 'spool.db')), logDir: path.join(dir, 'e2e') });
    const rss1 = rssSampler(b1.proc.pid);
    log(`bridge end to end, ${N} messages`);
    const cpu0 = cpuSeconds(b1.proc.pid);
    m0 = machineCpu();
    b0 = cpuOf(brokers);
    const t0 = Date.now();
    await publish(mosq.url, N);
    const t1 = await waitMetric(b1, 'mqtt_kafka_records_written_total', (v) => v >= N);
    const cpu = cpuSeconds(b1.proc.pid) - cpu0;
    results.e2e_cpu = phaseCpu(m0, t1 - t0, N, brokers, b0);
    results.e2e_qos1_msg_s = Math.round((N * 1000) / (t1 - t0));
    results.bridge_cpu_s_per_100k = Number(((cpu * 100_000) / N).toFixed(2));
    results.bridge_cpu_us_per_msg = Number(((cpu * 1e6) / N).toFixed(1));
    results.e2e_to_raw_ratio = Number((results.e2e_qos1_msg_s / (results.raw_mosquitto_qos1_msg_s as number)).toFixed(3));
    results.e2e_produce_requests = await b1.metric('mqtt_kafka_produce_latency_seconds_count', { path: 'direct' });

    // --- typed records: the same route as json and as avro, one after the other ---
    const typedDir = path.join(dir, 'typed');
    mkdirSync(typedDir, { recursive: true });
    writeFileSync(path.join(typedDir, 'bench.avsc'), JSON.stringify({ type: 'record', name: 'Bench', fields: [{ name: 'seq', type: 'long' }, { name: 'ts', type: 'long' }] }));
    // Two rounds, alternating, so neither format always runs first on a warming machine.
    const typed = { json: { n: 0, ms: 0, cpu: 0 }, avro: { n: 0, ms: 0, cpu: 0 } };
    for (const format of ['json', 'avro', 'avro', 'json'] as const) {
      const round = typed[format].n === 0 ? 1 : 2;
      const routes = path.join(typedDir, `${format}.yaml`);
      writeFileSync(routes, `routes:\n  - name: bench\n    match: bench/#\n    topic: bench-typed-${format}\n    format: ${format}\n${format === 'avro' ? '    schema: bench.avsc\n' : ''}`);
      const { KAFKA_TOPIC: _t, ...base } = env('', `bench-typed-${format}-${round}`, path.join(typedDir, `${format}-${round}`, 'spool.db'));
      const bt = await startBridgeProcess({ env: { ...base, ROUTES_FILE: routes, SCHEMA_REGISTRY_URL: registry.url }, logDir: path.join(typedDir, `${format}-${round}`) });
      log(`typed records: route format ${format} (round ${round}), ${TYPED_N} messages`);
      const c0 = cpuSeconds(bt.proc.pid);
      const p0 = Date.now();
      await publish(mosq.url, TYPED_N);
      const p1 = await waitMetric(bt, 'mqtt_kafka_records_written_total', (v) => v >= TYPED_N);
      const c1 = cpuSeconds(bt.proc.pid) - c0;
      const dead = await bt.metric('mqtt_kafka_dead_letter_total');
      if (dead > 0) throw new Error(`typed ${format} run dead-lettered ${dead} records`);
      typed[format].n += TYPED_N;
      typed[format].ms += p1 - p0;
      typed[format].cpu += c1;
      await bt.proc.stop('SIGTERM');
    }
    for (const format of ['json', 'avro'] as const) {
      const t = typed[format];
      results[`typed_${format}_msg_s`] = Math.round((t.n * 1000) / t.ms);
      results[`typed_${format}_cpu_us_per_msg`] = Number(((t.cpu * 1e6) / t.n).toFixed(1));
    }
    results.typed_messages = typed.json.n;
    results.typed_avro_to_json_cpu_ratio = Number(((results.typed_avro_cpu_us_per_msg as number) / (results.typed_json_cpu_us_per_msg as number)).toFixed(3));
    results.typed_avro_to_json_msg_s_ratio = Number(((results.typed_avro_msg_s as number) / (results.typed_json_msg_s as number)).toFixed(3));

    log(`latency at ${LAT_RATE} msg/s for ${LAT_SECONDS} s`);
    // Switch the bridge's topic by using a second bridge instance would change the process; instead
    // publish under a distinct prefix and measure against records whose seq is in the latency run.
    await b1.proc.stop('SIGTERM');
    rss1.stop();
    const b2 = await startBridgeProcess({ env: env('bench-latency', 'bench-latency', path.join(dir, 'lat', 'spool.db')), logDir: path.join(dir, 'lat') });
    const latN = LAT_RATE * LAT_SECONDS;
    const rss2 = rssSampler(b2.proc.pid);
    await publish(mosq.url, latN, { ratePerS: LAT_RATE, window: 5000 });
    await waitMetric(b2, 'mqtt_kafka_records_written_total', (v) => v >= latN);
    const recs = await kafka.readTopic('bench-latency', { expected: latN, timeoutMs: 120_000 });
    const lat = recs.map((r) => r.timestamp - (JSON.parse(r.value!) as { ts: number }).ts).sort((a, b) => a - b);
    results.latency_rate_msg_s = LAT_RATE;
    results.latency_records = latN;
    results.latency_p50_ms = quantile(lat, 0.5);
    results.latency_p99_ms = quantile(lat, 0.99);
    results.latency_max_ms = lat[lat.length - 1] ?? NaN;
    results.latency_produce_requests = await b2.metric('mqtt_kafka_produce_latency_seconds_count', { path: 'direct' });
    results.peak_rss_mb_empty_spool = Number(Math.max(rss1.peakMb(), rss2.peakMb()).toFixed(1));
    rss2.stop();
    await b2.proc.stop('SIGTERM');

    // --- spool: Kafka down ---
    const b3 = await startBridgeProcess({ env: { ...env('bench-spool', 'bench-spool', path.join(dir, 'spool', 'spool.db')), SPOOL_MAX_BYTES: String(4 * 1024 ** 3) }, logDir: path.join(dir, 'spool') });
    const rss3 = rssSampler(b3.proc.pid);
    await kafka.stop();
    log(`spool ingest with Kafka down, ${SPOOL_N} messages`);
    const s0 = Date.now();
    await publish(mosq.url, SPOOL_N, { window: 5000 });
    const s1 = await waitMetric(b3, 'mqtt_kafka_spool_records_spooled_total', (v) => v >= SPOOL_N);
    results.spool_ingest_msg_s = Math.round((SPOOL_N * 1000) / (s1 - s0));
    results.spool_records = SPOOL_N;
    results.spool_file_mb = Number(((await b3.metric('mqtt_kafka_spool_file_bytes')) / 1048576).toFixed(1));
    results.peak_rss_mb_spool_full = Number(rss3.peakMb().toFixed(1));

    log('replay after Kafka returns');
    rss3.reset();
    await kafka.start();
    const r0 = await waitMetric(b3, 'mqtt_kafka_spool_records_replayed_total', (v) => v > 0);
    const r1 = await waitMetric(b3, 'mqtt_kafka_spool_rows', (v) => v === 0);
    results.replay_records_s = Math.round((SPOOL_N * 1000) / Math.max(1, r1 - r0));
    results.drain_seconds = Number(((r1 - r0) / 1000).toFixed(1));
    results.peak_rss_mb_replay = Number(rss3.peakMb().toFixed(1));
    results.rss_spool_vs_empty = Number((Math.max(results.peak_rss_mb_spool_full as number, results.peak_rss_mb_replay) / (results.peak_rss_mb_empty_spool as number)).toFixed(3));
    rss3.stop();
    await b3.proc.stop('SIGTERM');
  } finally {
    await stopAll();
  }

  results.payload_bytes = PAYLOAD_BYTES;
  results.messages = N;
  results.date = new Date().toISOString();
  printTable(results);
  const outDir = path.join(repoRoot, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `bench-${results.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  log(`wrote ${file}`);
}

function printTable(r: Record<string, number | string>): void {
  const rows: [string, string][] = [
    ['raw Mosquitto QoS 1 pub→sub', `${r.raw_mosquitto_qos1_msg_s} msg/s`],
    ['bridge end-to-end QoS 1 (publish → Kafka ack)', `${r.e2e_qos1_msg_s} msg/s`],
    ['  ratio end-to-end / raw', `${r.e2e_to_raw_ratio}`],
    ['  machine during raw / end to end', `${r.raw_cpu} / ${r.e2e_cpu}`],
    ['bridge CPU (user + system) per 100,000 messages', `${r.bridge_cpu_s_per_100k} s (${r.bridge_cpu_us_per_msg} µs/message)`],
    ['  produce requests, records per request', perRequest(r.e2e_produce_requests, r.messages)],
    [`latency publish→Kafka at ${r.latency_rate_msg_s} msg/s p50 / p99 / max`, `${r.latency_p50_ms} / ${r.latency_p99_ms} / ${r.latency_max_ms} ms`],
    ['  produce requests, records per request', perRequest(r.latency_produce_requests, r.latency_records)],
    ['spool ingest, Kafka down (durable)', `${r.spool_ingest_msg_s} msg/s`],
    [`replay after Kafka returns (${r.spool_records} records)`, `${r.replay_records_s} records/s, drained in ${r.drain_seconds} s`],
    ['spool file size', `${r.spool_file_mb} MB`],
    ['peak RSS, empty spool', `${r.peak_rss_mb_empty_spool} MB`],
    ['peak RSS, spool filling / replaying', `${r.peak_rss_mb_spool_full} / ${r.peak_rss_mb_replay} MB`],
    ['  ratio spool / empty', `${r.rss_spool_vs_empty}`],
    [`typed records, route format json (${r.typed_messages} messages, 2 runs)`, `${r.typed_json_msg_s} msg/s, ${r.typed_json_cpu_us_per_msg} µs CPU/message`],
    [`typed records, route format avro through the registry`, `${r.typed_avro_msg_s} msg/s, ${r.typed_avro_cpu_us_per_msg} µs CPU/message`],
    ['  ratio avro / json: throughput, CPU per message', `${r.typed_avro_to_json_msg_s_ratio}, ${r.typed_avro_to_json_cpu_ratio}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\n| ${'measure'.padEnd(w)} | value |\n|${'-'.repeat(w + 2)}|-------|\n`);
  for (const [k, v] of rows) process.stdout.write(`| ${k.padEnd(w)} | ${v} |\n`);
}

/** "1,234 requests, 81.0 records per request": how the writer pool cut the records into requests. */
function perRequest(requests: number | string | undefined, records: number | string | undefined): string {
  const q = Number(requests);
  const n = Number(records);
  return `${q.toLocaleString('en-US')} requests, ${(n / Math.max(1, q)).toFixed(1)} records per request`;
}

main().catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await stopAll().catch(() => undefined);
  process.exit(1);
});
