import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drainIntentPath } from '../../src/drain/intent.js';
import {
  repoRoot,
  checkBadges,
  mosquittoSys,
  publishBadges,
  ReplicaSet,
  spoolRowsOnDisk,
  startKafka,
  startMosquitto,
  waitUntil,
  type BadgeCheck,
  type Kafka,
  type Mosquitto,
} from '../harness/index.js';

/**
 * Several replicas in shared mode (MQTT_SHARED_GROUP) against real Mosquitto and Kafka: 60,000 QoS 1
 * messages from 500 badges at full speed, each test with its own MQTT topic prefix, share group
 * and Kafka topic, read back by an independent consumer (kcat). Every test reports messages/s in
 * total and per replica, lost, duplicates and per-badge order violations. Order violations are
 * expected on Mosquitto (it hands a shared subscription's messages round robin, so one badge's
 * messages go through different replicas): they are reported, not asserted.
 */
const BADGES = 500;
const PER_BADGE = 120;
const TOTAL = BADGES * PER_BADGE;
const REPLICAS = 3;

let mosq: Mosquitto;
let kafka: Kafka;
const sets: ReplicaSet[] = [];

beforeAll(async () => {
  // sys_interval 1: $SYS/broker/clients/* every second, to see which sessions the broker holds.
  [mosq, kafka] = await Promise.all([startMosquitto({ extraConfig: ['sys_interval 1'] }), startKafka()]);
  for (const t of ['shared', 'kill-restart', 'kill-away', 'drain', 'drain-v4']) await kafka.createTopic(t, 6);
});

afterAll(async () => {
  for (const s of sets) await s.stopAll().catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function replicaSet(name: string, over: Record<string, string> = {}, replicas = REPLICAS): ReplicaSet {
  const s = new ReplicaSet({
    replicas,
    clientIdPrefix: `${name}-`,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_TOPIC: `${name}/badge/#`,
      MQTT_SHARED_GROUP: name,
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_TOPIC: name,
      KAFKA_WORKERS: '2',
      KAFKA_WRITE_TIMEOUT_MS: '3000',
      KAFKA_CONNECT_TIMEOUT_MS: '2000',
      SPOOL_REPLAY_INTERVAL_MS: '1000',
      ...over,
    },
  });
  sets.push(s);
  return s;
}

const badgeTopic = (name: string) => (id: string) => `${name}/badge/${id}/heartbeat`;

async function endOffsetsSum(topic: string): Promise<number> {
  return Object.values(await kafka.endOffsets(topic)).reduce((a, b) => a + b, 0);
}

/** Waits until the running replicas hold nothing unacknowledged nor spooled and Kafka's end offsets stand still. */
async function settled(set: ReplicaSet, topic: string, atLeast: number, timeoutMs = 90_000): Promise<void> {
  let last = -1;
  let stableSince = Date.now();
  await waitUntil(
    `${topic}: ${atLeast} records in Kafka and the replicas idle`,
    async () => {
      const n = await endOffsetsSum(topic);
      if (n !== last) {
        last = n;
        stableSince = Date.now();
      }
      const b = await set.backlog();
      return n >= atLeast && b.unacked === 0 && b.spoolRows === 0 && Date.now() - stableSince > 1500;
    },
    timeoutMs,
  );
}

interface Report {
  check: BadgeCheck;
  records: number;
  seconds: number;
}

/** Reads the topic back, checks it, and prints the per-test line the issue asks for. */
async function report(label: string, set: ReplicaSet, topic: string, startedAt: number, endedAt: number): Promise<Report> {
  const records = await kafka.readTopic(topic, { expected: TOTAL, timeoutMs: 90_000 });
  const check = checkBadges(records, BADGES, PER_BADGE);
  const seconds = (endedAt - startedAt) / 1000;
  const per = await Promise.all(set.replicas.map((r) => set.counters(r.index)));
  const perReplica = per.map((c, i) => `#${i} ${c.written} written (${Math.round(c.written / seconds)}/s), ${c.received} received, ${c.redelivered} redelivered`).join('; ');
  console.log(
    `[replicas] ${label}: ${TOTAL} published, ${check.distinct} distinct in Kafka (${records.length} records) in ${seconds.toFixed(1)} s = ${Math.round(TOTAL / seconds)} msg/s; ` +
      `lost ${check.missing.length}, duplicates ${check.duplicates}, order violations ${check.orderViolations} (${check.outOfOrder.length} of ${BADGES} badges); per replica: ${perReplica}`,
  );
  // Per-key partitioning holds whatever the replica: the key (the MQTT topic) picks the partition.
  expect(check.splitPartitions).toEqual([]);
  return { check, records: records.length, seconds };
}

/** Per-badge order violations among the records of each writer (process), told apart by the message id's prefix. */
function orderWithinWriters(records: Awaited<ReturnType<Kafka['readTopic']>>): { writers: number; violations: number } {
  const last = new Map<string, number>();
  const writers = new Set<string>();
  let violations = 0;
  const sorted = [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  for (const r of sorted) {
    const writer = (r.headers['mqtt.message_id'] ?? '').split('-')[0]!;
    writers.add(writer);
    const { badge_id, seq } = JSON.parse(r.value ?? '{}') as { badge_id: string; seq: number };
    const k = `${writer}/${badge_id}`;
    if (seq < (last.get(k) ?? -1)) violations++;
    else last.set(k, seq);
  }
  return { writers: writers.size, violations };
}

describe('several replicas in shared mode (MQTT_SHARED_GROUP)', () => {
  it('3 replicas split 60,000 QoS 1 messages from 500 badges: every message in Kafka, duplicates counted', async () => {
    const set = replicaSet('shared');
    await set.startAll();
    const t0 = Date.now();
    const published = await publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE, topic: badgeTopic('shared') });
    expect(published).toBe(TOTAL);
    await settled(set, 'shared', TOTAL);
    const { check } = await report('shared', set, 'shared', t0, Date.now());
    expect(check.missing).toEqual([]);
    expect(check.distinct).toBe(TOTAL);
    // What the bridge does promise in shared mode: per-key order within a replica. The message id
    // header starts with the writing process' id, so the records split by writer.
    const within = orderWithinWriters(await kafka.readTopic('shared', { expected: TOTAL, timeoutMs: 60_000 }));
    console.log(`[replicas] shared: ${within.writers} writers; order violations within a writer: ${within.violations}`);
    expect(within.writers).toBe(REPLICAS);
    expect(within.violations).toBe(0);
    // The group really splits: every replica wrote a real share, and together they wrote each message about once.
    const written = await Promise.all(set.replicas.map(async (r) => (await set.counters(r.index)).written));
    for (const w of written) expect(w).toBeGreaterThan(TOTAL / REPLICAS / 3);
    expect(written.reduce((a, b) => a + b, 0)).toBe(TOTAL + check.duplicates);
    await set.stopAll();
  });

  it('one replica SIGKILLed mid-stream and restarted 10 s later (same client id, same spool): 0 lost', async () => {
    const set = replicaSet('kill-restart');
    await set.startAll();
    let restarted: Promise<unknown> | undefined;
    const t0 = Date.now();
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: PER_BADGE,
      topic: badgeTopic('kill-restart'),
      onProgress: async (n) => {
        if (n === 20_000) {
          await set.kill9(1);
          restarted = sleep(10_000).then(() => set.start(1));
        }
      },
    });
    expect(published).toBe(TOTAL);
    await restarted;
    await settled(set, 'kill-restart', TOTAL);
    const { check } = await report('kill-restart', set, 'kill-restart', t0, Date.now());
    expect(set.replicas[1]!.lives).toBe(2);
    expect(check.missing).toEqual([]);
    await set.stopAll();
  });

  it('one replica SIGKILLed and not restarted: the rest reach Kafka, its share waits in its session, nothing is lost once it returns', async () => {
    const set = replicaSet('kill-away', { MQTT_SESSION_EXPIRY_S: '3600' });
    await set.startAll();
    const t0 = Date.now();
    let killedAt = 0;
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: PER_BADGE,
      topic: badgeTopic('kill-away'),
      onProgress: async (n) => {
        if (n === 20_000) {
          await set.kill9(1);
          killedAt = Date.now();
        }
      },
    });
    expect(published).toBe(TOTAL);
    // The survivors settle; the dead replica's session keeps its share on the broker.
    await settled(set, 'kill-away', 1);
    const inKafka = checkBadges(await kafka.readTopic('kill-away', { timeoutMs: 60_000 }), BADGES, PER_BADGE);
    const inSpool = spoolRowsOnDisk(set.replicas[1]!.spoolPath);
    const sys = await mosquittoSys(mosq.url);
    const waiting = TOTAL - inKafka.distinct - inSpool;
    console.log(
      `[replicas] kill-away, replica 1 away: ${inKafka.distinct} of ${TOTAL} in Kafka, ${inSpool} in its spool, ${waiting} waiting for its session on the broker ` +
        `(broker: ${sys['clients/disconnected']} disconnected persistent session(s), ${sys['store/messages/count']} stored messages)`,
    );
    expect(inKafka.distinct).toBeLessThan(TOTAL);
    expect(sys['clients/disconnected']).toBeGreaterThanOrEqual(1);
    // A shortened stand-in for a long absence: the session (MQTT_SESSION_EXPIRY_S=3600) keeps the
    // messages however long the replica is away, as long as it is less than the expiry; 15 s here.
    await sleep(Math.max(0, 15_000 - (Date.now() - killedAt)));
    const afterAbsence = checkBadges(await kafka.readTopic('kill-away', { timeoutMs: 60_000 }), BADGES, PER_BADGE);
    expect(afterAbsence.distinct, 'nothing of its share reaches Kafka while it is away').toBe(inKafka.distinct);
    await set.start(1);
    await settled(set, 'kill-away', TOTAL);
    const { check } = await report('kill-away (after its return)', set, 'kill-away', t0, Date.now());
    expect(check.missing).toEqual([]);
    await set.stopAll();
  });

  it('scale-down: replica 2 of 3 drained and removed while traffic flows — 0 lost, its spool empty, its session gone from the broker', async () => {
    const set = replicaSet('drain', { MQTT_SESSION_EXPIRY_S: '3600' });
    await set.startAll();
    const leaving = set.replicas[2]!;
    let drained: Promise<{ code: number | null; ms: number; disconnectedBefore: number }> | undefined;
    const t0 = Date.now();
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: PER_BADGE,
      topic: badgeTopic('drain'),
      // Traffic flows before, during and after the drain: 60,000 messages over about 12 s.
      ratePerS: 5000,
      onProgress: (n) => {
        if (n !== 20_000) return;
        drained = (async () => {
          const disconnectedBefore = (await mosquittoSys(mosq.url))['clients/disconnected'] ?? -1;
          // The operator's step 1, as in docs/operations.md: the CLI in the pod, with its SPOOL_PATH.
          // (execFile rejects on a non-zero exit.)
          await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'cli.ts'), 'drain-on-stop'], {
            cwd: repoRoot,
            env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', SPOOL_PATH: leaving.spoolPath },
          });
          expect(existsSync(drainIntentPath(leaving.spoolPath))).toBe(true);
          // Step 2: the scale-down's SIGTERM.
          const t = Date.now();
          const code = await set.stop(2);
          return { code, ms: Date.now() - t, disconnectedBefore };
        })();
      },
    });
    expect(published).toBe(TOTAL);
    const d = await drained!;
    await settled(set, 'drain', TOTAL);
    const { check } = await report('drain (replica 2 drained at 20,000)', set, 'drain', t0, Date.now());
    const sys = await mosquittoSys(mosq.url);
    const log = readFileSync(path.join(leaving.dir, 'bridge.log'), 'utf8');
    const drainLine = log.split('\n').find((l) => l.includes('drained for scale-down'));
    console.log(
      `[replicas] drain: replica 2 exited ${d.code} after ${d.ms} ms; spool rows on disk ${spoolRowsOnDisk(leaving.spoolPath)}; ` +
        `broker disconnected sessions before ${d.disconnectedBefore}, after ${sys['clients/disconnected']}; ${drainLine ?? 'no drain line'}`,
    );
    expect(d.code).toBe(0);
    expect(drainLine).toBeDefined();
    // Its spool is empty and the mark is gone (a later start is an ordinary one).
    expect(spoolRowsOnDisk(leaving.spoolPath)).toBe(0);
    expect(existsSync(drainIntentPath(leaving.spoolPath))).toBe(false);
    // Its session is gone from the broker: not among the disconnected persistent sessions ...
    expect(sys['clients/disconnected']).toBe(d.disconnectedBefore);
    // ... and nothing waits for it: every message, including the 40,000 published after the drain
    // began, reached Kafka through the two others, without replica 2 ever starting again (a
    // session left subscribed would hold a third of them, as the SIGKILL test above shows).
    expect(check.missing).toEqual([]);
    expect(check.distinct).toBe(TOTAL);
    expect(leaving.lives).toBe(1);
    await set.stopAll();
  });

  it('scale-down with MQTT 3.1.1: the session of the drained replica is ended by a clean-session connect, nothing lost', async () => {
    const set = replicaSet('drain-v4', { MQTT_VERSION: '4' }, 2);
    await set.startAll();
    const leaving = set.replicas[1]!;
    const per = 20;
    let drained: Promise<{ code: number | null; disconnectedBefore: number }> | undefined;
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: per,
      topic: badgeTopic('drain-v4'),
      ratePerS: 5000,
      onProgress: (n) => {
        if (n !== 3000) return;
        drained = (async () => {
          const disconnectedBefore = (await mosquittoSys(mosq.url))['clients/disconnected'] ?? -1;
          await promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'cli.ts'), 'drain-on-stop'], {
            cwd: repoRoot,
            env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', SPOOL_PATH: leaving.spoolPath },
          });
          return { code: await set.stop(1), disconnectedBefore };
        })();
      },
    });
    const d = await drained!;
    await settled(set, 'drain-v4', published);
    const check = checkBadges(await kafka.readTopic('drain-v4', { expected: published, timeoutMs: 60_000 }), BADGES, per);
    const sys = await mosquittoSys(mosq.url);
    console.log(`[replicas] drain-v4: exit ${d.code}; ${check.distinct} of ${published} in Kafka, ${check.duplicates} duplicates; disconnected sessions before ${d.disconnectedBefore}, after ${sys['clients/disconnected']}`);
    expect(d.code).toBe(0);
    expect(sys['clients/disconnected']).toBe(d.disconnectedBefore);
    expect(check.missing).toEqual([]);
    await set.stopAll();
  });
});
