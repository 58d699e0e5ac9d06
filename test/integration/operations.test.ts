import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBadges,
  makeTempDir,
  publishBadges,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
} from '../harness/index.js';

/** Operations: metrics against reality, health under load and during an outage, shutdown under load. */
const BADGES = 500;
const PER_BADGE = 40;

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  for (const t of ['ops-metrics', 'ops-shutdown', 'ops-force']) await kafka.createTopic(t, 4);
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

async function bridge(over: Record<string, string>, dir = makeTempDir('ops-')): Promise<BridgeProcess> {
  const b = await startBridgeProcess({
    logDir: dir,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_TOPIC: 'cackalacky/badge/egress/#',
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      SPOOL_PATH: `${dir}/spool.db`,
      ...over,
    },
  });
  bridges.push(b);
  return b;
}

/** Polls /healthz and /readyz every 50 ms until stdin closes; prints the timings as JSON. */
const PROBER = `
  const base = process.argv[1];
  const probes = [];
  let run = true;
  process.stdin.on('data', () => (run = false)).resume();
  // Warm-up, not recorded: the first fetch sets up this process's HTTP client and connection.
  for (let i = 0; i < 3; i++) for (const path of ['/healthz', '/readyz']) await (await fetch(base + path)).arrayBuffer();
  process.stdout.write('ready\\n');
  while (run) {
    for (const path of ['/healthz', '/readyz']) {
      const t0 = performance.now();
      const r = await fetch(base + path);
      await r.arrayBuffer();
      probes.push({ path, status: r.status, ms: Math.round(performance.now() - t0) });
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  process.stdout.write(JSON.stringify(probes) + '\\n');
`;

describe('operations', () => {
  it('reports counters that match what was published and what Kafka holds; health answers within 100 ms under load', async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'ops-metrics', KAFKA_TOPIC: 'ops-metrics' });
    // Probe from a process of its own: timing fetch() here would measure this process's
    // event loop, which the publisher keeps busy, rather than the bridge.
    const prober = spawn(process.execPath, ['--input-type=module', '-e', PROBER, `http://127.0.0.1:${b.httpPort}`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    // Load starts only once the prober is probing (a process starting on two busy cores can take seconds).
    const proberReady = new Promise<void>((resolve, reject) => {
      prober.stdout.on('data', (d: Buffer) => ((out += d.toString()), out.startsWith('ready\n') && resolve()));
      prober.once('exit', (code) => reject(new Error(`prober exited (${code}) before it was ready`)));
    });
    await proberReady;
    const scrapes: number[] = [];
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: PER_BADGE,
      // Well above the 5,000 msg/s the latency target is set at, without starving the two
      // cores that publisher, Mosquitto, Kafka and the bridge share here.
      ratePerS: 8000,
      onProgress: async (n) => {
        if (n % 5000 === 0) scrapes.push(await b.metric('mqtt_kafka_messages_received_total'));
      },
    });
    prober.stdin.end('stop\n');
    await new Promise((r) => prober.on('exit', r));
    const probes = JSON.parse(out.slice('ready\n'.length)) as { ms: number; status: number; path: string }[];
    await b.waitFor('all written', async () => (await b.metric('mqtt_kafka_unacked_messages')) === 0 && (await b.metric('mqtt_kafka_records_written_total')) >= published);

    // Scrapes during the run saw the counter grow.
    expect(scrapes.length).toBeGreaterThanOrEqual(3);
    expect(scrapes).toEqual([...scrapes].sort((x, y) => x - y));
    expect(scrapes[scrapes.length - 1]).toBeGreaterThan(0);

    const records = await kafka.readTopic('ops-metrics', { expected: published, timeoutMs: 60_000 });
    expect(checkBadges(records, BADGES, PER_BADGE).missing).toEqual([]);
    expect(await b.metric('mqtt_kafka_messages_received_total')).toBe(published);
    expect(await b.metric('mqtt_kafka_records_written_total', { path: 'direct' })).toBe(records.length);
    expect(await b.metric('mqtt_kafka_end_to_end_latency_seconds_count', { durable: 'kafka' })).toBe(records.length);
    expect(await b.metric('mqtt_kafka_bytes_written_total')).toBeGreaterThan(records.length * 100);
    expect(await b.metric('mqtt_kafka_in_flight_messages')).toBe(0);
    expect(await b.metric('mqtt_kafka_mqtt_connected')).toBe(1);
    expect(await b.metric('mqtt_kafka_kafka_up')).toBe(1);
    expect(await b.metric('mqtt_kafka_ready')).toBe(1);

    expect(probes.length).toBeGreaterThanOrEqual(10);
    expect(probes.filter((p) => p.status !== 200)).toEqual([]);
    // Within 100 ms. Publisher, Mosquitto, Kafka, the bridge and this prober share two cores
    // here, so a scheduler hiccup is allowed for 1 probe in 10; none may take 500 ms.
    const slow = probes.filter((p) => p.ms >= 100);
    const sorted = probes.map((p) => p.ms).sort((a, b) => a - b);
    console.log(`health probes under load: ${probes.length}, p50 ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted[sorted.length - 1]} ms, ${slow.length} at or over 100 ms`);
    expect(slow.length).toBeLessThanOrEqual(Math.floor(probes.length / 10));
    expect(probes.filter((p) => p.ms >= 500)).toEqual([]);
    await b.proc.stop('SIGTERM');
  });

  it('stays live during a Kafka outage (spooling) and ready while the spool accepts', async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'ops-outage', KAFKA_TOPIC: 'ops-metrics', KAFKA_WRITE_TIMEOUT_MS: '2000' });
    await kafka.stop();
    try {
      await publishBadges({ url: mosq.url, badges: 50, perBadge: 4 });
      await b.waitFor('spooling', async () => (await b.metric('mqtt_kafka_write_path_workers', { path: 'spooling' })) > 0);
      const live = await fetch(`http://127.0.0.1:${b.httpPort}/healthz`);
      expect(live.status).toBe(200);
      const ready = await b.readyz();
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({ kafkaWritable: false, spooling: true, spoolAccepting: true });
      expect(await b.metric('mqtt_kafka_kafka_up')).toBe(0);
    } finally {
      await kafka.start();
    }
    await b.waitFor('drained', async () => (await b.metric('mqtt_kafka_spool_rows')) === 0, 60_000);
    await b.proc.stop('SIGTERM');
  });

  it('drains on SIGTERM while 5,000 msg/s flow: exits 0 in the grace period, nothing is lost, nothing duplicated', async () => {
    const dir = makeTempDir('shutdown-');
    const over = { MQTT_CLIENT_ID: 'ops-shutdown', KAFKA_TOPIC: 'ops-shutdown', SHUTDOWN_TIMEOUT_MS: '20000' };
    let b = await bridge(over, dir);
    let stopped: Promise<{ code: number | null; ms: number }> | undefined;
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: PER_BADGE,
      ratePerS: 5000,
      onProgress: (n) => {
        if (n === 8_000) {
          const first = b;
          stopped = (async () => {
            const t0 = Date.now();
            const exit = await first.proc.stop('SIGTERM', 30_000);
            return { code: exit.code, ms: Date.now() - t0 };
          })();
        }
      },
    });
    const { code, ms } = await stopped!;
    expect(code).toBe(0);
    expect(ms).toBeLessThan(20_000);
    // The broker kept what arrived while the bridge was down; a restarted bridge delivers it.
    b = await bridge(over, dir);
    await b.waitFor('caught up', async () => (await b.metric('mqtt_kafka_unacked_messages')) === 0 && (await b.metric('mqtt_kafka_records_written_total')) > 0, 60_000);
    const records = await kafka.readTopic('ops-shutdown', { expected: published, timeoutMs: 60_000 });
    const check = checkBadges(records, BADGES, PER_BADGE);
    expect(check.missing).toEqual([]);
    expect(check.outOfOrder).toEqual([]);
    // A clean stop PUBACKs everything it wrote, and the broker has read those PUBACKs before the
    // DISCONNECT: the restart adds no duplicates (test/integration/graceful-stop.test.ts does 5).
    console.log(`shutdown under load: exit ${code} after ${ms} ms, ${check.duplicates} duplicates`);
    expect(check.duplicates).toBe(0);
    await b.proc.stop('SIGTERM');
  });

  it('exits at once on a second signal while a drain is stuck', async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'ops-force', KAFKA_TOPIC: 'ops-force', SHUTDOWN_TIMEOUT_MS: '60000', KAFKA_WRITE_TIMEOUT_MS: '60000' });
    // Kafka frozen (SIGSTOP), not gone: connections open but nothing answers, so writes hang
    // for KAFKA_WRITE_TIMEOUT_MS and the drain cannot finish by itself.
    process.kill(kafka.pid!, 'SIGSTOP');
    try {
      await publishBadges({ url: mosq.url, badges: 10, perBadge: 2 });
      await new Promise((r) => setTimeout(r, 500));
      process.kill(b.proc.pid, 'SIGTERM');
      await new Promise((r) => setTimeout(r, 1000));
      expect(b.proc.running).toBe(true);
      const t0 = Date.now();
      process.kill(b.proc.pid, 'SIGTERM');
      const exit = await b.proc.waitExit(10_000);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(exit.code).toBe(1);
    } finally {
      process.kill(kafka.pid!, 'SIGCONT');
    }
  });
});
