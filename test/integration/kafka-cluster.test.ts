import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBadges,
  makeTempDir,
  publishBadges,
  runJavaProducer,
  startBridgeProcess,
  startKafkaCluster,
  startMosquitto,
  type BridgeProcess,
  type JavaProducerResult,
  type KafkaCluster,
  type KafkaNode,
  type Mosquitto,
} from '../harness/index.js';

/**
 * The bridge against a real 3-node KRaft cluster (replication factor 3, min.insync.replicas 2,
 * 8 partitions per topic) while brokers fail the way they do in production: the leader of most
 * partitions SIGKILLed mid-stream; that, then a second broker down for 15 s (below min ISR:
 * acks=all writes must fail and spool, never be acknowledged); and a rolling restart of all
 * three under load; the network path to the busiest leader going silent (a black hole, not a
 * refusal) for 20 s. Each test publishes QoS 1 messages from 500 badges with per-badge sequence
 * numbers and reads the topic back with kcat (librdkafka, an independent client): 0 missing,
 * 0 out of order per badge, one partition per badge, and 0 duplicates: each fault heals within
 * KAFKA_DELIVERY_TIMEOUT_MS (120 s), so every batch whose answer was lost is resolved by the
 * producer that sent it (same producer id and sequences), which Kafka writes once.
 *
 * The anchor: beside the bridge, through the same fault at the same time, the Java producer
 * (kafka-clients, enable.idempotence=true, acks=all, its defaults otherwise) writes the same
 * badge records to a topic of its own, read back by the same reader; both figures are printed.
 *
 * The cluster starts once for the file (three JVMs on two cores take ~30 s).
 */
const BADGES = 500;
const PARTITIONS = 8;

let mosq: Mosquitto;
let cluster: KafkaCluster;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  [mosq, cluster] = await Promise.all([startMosquitto(), startKafkaCluster({ nodes: 3, clientPaths: ['bridge'] })]);
  for (const t of ['cluster-kill', 'cluster-minisr', 'cluster-rolling', 'cluster-blackhole']) {
    for (const topic of [t, `${t}-java`]) {
      await cluster.createTopic(topic, PARTITIONS, { replicationFactor: 3, configs: { 'min.insync.replicas': '2' } });
      await cluster.waitInSync(topic, 3);
    }
  }
}, 180_000);

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), cluster?.stop()]);
});

async function bridge(name: string, brokers = cluster.bootstrap): Promise<BridgeProcess> {
  const dir = makeTempDir(`cluster-${name}-`);
  const b = await startBridgeProcess({
    logDir: dir,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_TOPIC: `cluster/${name}/#`,
      MQTT_CLIENT_ID: `cluster-${name}`,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: `cluster-${name}`,
      KAFKA_WRITE_TIMEOUT_MS: '5000',
      KAFKA_CONNECT_TIMEOUT_MS: '2000',
      SPOOL_REPLAY_INTERVAL_MS: '2000',
      SPOOL_PATH: `${dir}/spool.db`,
      // Each failed write at debug: the test prints the kinds and errors it saw.
      LOG_LEVEL: 'debug',
      // To measure what an outage longer than the delivery timeout costs (the 0-duplicate
      // assertions then fail by design): CLUSTER_DELIVERY_TIMEOUT_MS=8000 npx vitest run … -t 'min ISR'.
      ...(process.env.CLUSTER_DELIVERY_TIMEOUT_MS ? { KAFKA_DELIVERY_TIMEOUT_MS: process.env.CLUSTER_DELIVERY_TIMEOUT_MS } : {}),
    },
  });
  bridges.push(b);
  return b;
}

/** The Java producer through the same fault: same records, same rate, its own topic. */
function javaAnchor(name: string, perBadge: number, ratePerS: number, bootstrap = cluster.bootstrap): Promise<JavaProducerResult> {
  const dir = makeTempDir(`cluster-${name}-java-`);
  const run = runJavaProducer({ bootstrap, topic: `cluster-${name}-java`, badges: BADGES, perBadge, ratePerS, logFile: `${dir}/java.log` });
  run.catch(() => undefined);
  return run;
}

/** Reads the Java producer's topic back with the same reader and prints its figures beside ours. */
async function reportJava(name: string, run: Promise<JavaProducerResult>, perBadge: number): Promise<void> {
  const r = await run;
  const records = await cluster.readTopic(`cluster-${name}-java`, { expected: r.acked, timeoutMs: 60_000 });
  const check = checkBadges(records, BADGES, perBadge);
  console.log(
    `[cluster ${name}] java producer (idempotent, acks=all): sent ${r.sent}, acked ${r.acked}, failed ${r.failed}, read ${records.length}, ` +
      `missing ${check.missing.length}, duplicates ${check.duplicates}, out of order ${check.outOfOrder.length}${r.firstError ? `, first error ${r.firstError}` : ''}`,
  );
}

/** The node leading most partitions of `topic`. */
async function busiestLeader(topic: string): Promise<KafkaNode> {
  const counts = new Map<number, number>();
  for (const leader of (await cluster.leaders(topic)).values()) counts.set(leader, (counts.get(leader) ?? 0) + 1);
  const [id] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
  return cluster.node(id);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for the bridge to have everything durable and delivered, then reads the topic back and checks it. */
async function settleAndCheck(b: BridgeProcess, name: string, published: number, perBadge: number): Promise<void> {
  await b.waitFor(
    'spool drained and everything acknowledged',
    async () => (await b.metric('mqtt_kafka_spool_rows')) === 0 && (await b.metric('mqtt_kafka_unacked_messages')) === 0 && (await b.metric('mqtt_kafka_write_path_workers', { path: 'spooling' })) === 0,
    120_000,
  );
  const records = await cluster.readTopic(`cluster-${name}`, { expected: published, timeoutMs: 120_000 });
  const check = checkBadges(records, BADGES, perBadge);
  const spooled = await b.metric('mqtt_kafka_spool_records_spooled_total');
  const errors = await b.metrics();
  const kinds = [...errors].filter(([k, v]) => k.startsWith('mqtt_kafka_write_errors_total{') && v > 0).map(([k, v]) => `${/kind="([^"]+)"/.exec(k)?.[1]}/${/path="([^"]+)"/.exec(k)?.[1]}=${v}`);
  const errs = new Map<string, number>();
  for (const l of b.logLines()) {
    if (l.fault === 'kafka_write' && l.kind === 'unknown' && typeof l.err === 'string') errs.set(l.err, (errs.get(l.err) ?? 0) + 1);
  }
  if (errs.size > 0) console.log(`[cluster ${name}] unclassified write errors: ${[...errs].map(([e, n]) => `${n}× ${e}`).join(' | ')}`);
  console.log(
    `[cluster ${name}] published ${published}, read ${records.length}, distinct ${check.distinct}, missing ${check.missing.length}, duplicates ${check.duplicates}, ` +
      `out of order ${check.outOfOrder.length}, split ${check.splitPartitions.length}, spooled ${spooled}, write errors ${kinds.join(' ') || 'none'}`,
  );
  expect(check.missing).toEqual([]);
  expect(check.outOfOrder).toEqual([]);
  expect(check.splitPartitions).toEqual([]);
  expect(check.distinct).toBe(published);
  // Every fault here heals within KAFKA_DELIVERY_TIMEOUT_MS: the producer that sent a batch
  // resolves it with the same sequences, and Kafka writes it once.
  expect(check.duplicates).toBe(0);
  expect(await b.metric('mqtt_kafka_dropped_total')).toBe(0);
}

describe('Kafka cluster faults', () => {
  it('loses nothing and keeps per-badge order when the leader of most partitions is SIGKILLed mid-stream', async () => {
    const b = await bridge('kill');
    const perBadge = 80; // 40,000 messages at 2,000 msg/s: the kill lands 5 s in
    const java = javaAnchor('kill', perBadge, 2000);
    let victim: KafkaNode | undefined;
    let kill: Promise<void> | undefined;
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge,
      ratePerS: 2000,
      topic: (id) => `cluster/kill/${id}`,
      onProgress: (n) => {
        if (n === 10_000) {
          kill = (async () => {
            victim = await busiestLeader('cluster-kill');
            await victim.kill9();
          })();
        }
      },
    });
    await kill;
    expect(published).toBe(BADGES * perBadge);
    await settleAndCheck(b, 'kill', published, perBadge);
    await reportJava('kill', java, perBadge);
    await b.proc.stop('SIGTERM');
    await victim!.start();
    await cluster.waitInSync('cluster-kill', 3, 90_000);
  }, 240_000);

  it('spools instead of acknowledging while two of three brokers are down (below min ISR), and loses nothing when both return', async () => {
    const b = await bridge('minisr');
    const perBadge = 80;
    const java = javaAnchor('minisr', perBadge, 2000);
    let first: KafkaNode | undefined;
    let second: KafkaNode | undefined;
    let firstKill: Promise<void> | undefined;
    let faults: Promise<void> | undefined;
    const window = { written: [0, 0], spooled: [0, 0] };
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge,
      ratePerS: 2000,
      topic: (id) => `cluster/minisr/${id}`,
      onProgress: (n) => {
        if (n === 10_000) {
          firstKill = (async () => {
            first = await busiestLeader('cluster-minisr');
            await first.kill9();
          })();
        }
        // The second broker goes down while messages keep arriving (about 7 s of publishing left).
        if (n === 26_000) {
          faults = (async () => {
            await firstKill;
            second = cluster.nodes.find((x) => x !== first && x.running)!;
            await second.kill9();
            // Requests answered before the kill have been counted after 2 s; from then on only one
            // broker is up, below min.insync.replicas=2: no acks=all write may be acknowledged.
            await sleep(2_000);
            window.written[0] = await b.metric('mqtt_kafka_records_written_total');
            window.spooled[0] = await b.metric('mqtt_kafka_spool_records_spooled_total');
            await sleep(13_000);
            window.written[1] = await b.metric('mqtt_kafka_records_written_total');
            window.spooled[1] = await b.metric('mqtt_kafka_spool_records_spooled_total');
            await second.start();
            await first!.start();
          })();
        }
      },
    });
    await faults;
    expect(published).toBe(BADGES * perBadge);
    console.log(`[cluster minisr] one broker up: written ${window.written.join(' → ')}, spooled ${window.spooled.join(' → ')}`);
    // With one broker left nothing was acknowledged as written, and what arrived went to the spool.
    expect(window.written[1]).toBe(window.written[0]);
    expect(window.spooled[1]).toBeGreaterThan(window.spooled[0]!);
    await cluster.waitInSync('cluster-minisr', 2, 120_000);
    await settleAndCheck(b, 'minisr', published, perBadge);
    await reportJava('minisr', java, perBadge);
    await b.proc.stop('SIGTERM');
    await cluster.waitInSync('cluster-minisr', 3, 90_000);
  }, 300_000);

  it('loses nothing and keeps per-badge order through a rolling restart of all three brokers under load', async () => {
    const b = await bridge('rolling');
    const perBadge = 120; // 60,000 messages at 1,500 msg/s: publishing lasts through the roll
    const java = javaAnchor('rolling', perBadge, 1500);
    let roll: Promise<void> | undefined;
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge,
      ratePerS: 1500,
      topic: (id) => `cluster/rolling/${id}`,
      onProgress: (n) => {
        if (n === 3_000) {
          roll = (async () => {
            // As an operator upgrading Kafka does: one node at a time, controlled shutdown, and the
            // next only once every partition is fully in sync again.
            for (const node of cluster.nodes) {
              await node.stop();
              await node.start();
              await node.waitServing(120_000);
              await cluster.waitInSync('cluster-rolling', 3, 120_000);
            }
          })();
        }
      },
    });
    await roll;
    expect(published).toBe(BADGES * perBadge);
    await settleAndCheck(b, 'rolling', published, perBadge);
    await reportJava('rolling', java, perBadge);
    await b.proc.stop('SIGTERM');
  }, 300_000);

  it('writes everything once when the path to the busiest leader goes silent for 20 s (a black hole, shorter than the delivery timeout)', async () => {
    const path = cluster.path('bridge');
    const b = await bridge('blackhole', path.bootstrap);
    const perBadge = 80; // 40,000 messages at 2,000 msg/s: the black hole opens 5 s in
    const java = javaAnchor('blackhole', perBadge, 2000, path.bootstrap);
    let hole: Promise<void> | undefined;
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge,
      ratePerS: 2000,
      topic: (id) => `cluster/blackhole/${id}`,
      onProgress: (n) => {
        if (n === 10_000) {
          hole = (async () => {
            const victim = await busiestLeader('cluster-blackhole');
            // Requests to it are accepted and never answered; the broker itself stays a healthy
            // member of the cluster (its followers stay in sync), so it stays the leader.
            path.blackhole([victim.id]);
            await sleep(20_000);
            path.heal([victim.id]);
          })();
        }
      },
    });
    await hole;
    expect(published).toBe(BADGES * perBadge);
    await settleAndCheck(b, 'blackhole', published, perBadge);
    await reportJava('blackhole', java, perBadge);
    await b.proc.stop('SIGTERM');
  }, 240_000);
});
