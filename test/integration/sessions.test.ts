import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBadges,
  publishBadges,
  groupEnv,
  ReplicaSet,
  startBlackholeProxy,
  startKafka,
  startMosquitto,
  waitUntil,
  type BlackholeProxy,
  type Kafka,
  type Mosquitto,
  type ReadRecord,
} from '../harness/index.js';

/**
 * MQTT sessions that belong to a group of replicas (BRIDGE_GROUP), against real Mosquitto and a
 * real Kafka: one session, 500 badges with per-badge sequence numbers, QoS 1, read back by an
 * independent consumer (kcat). Every test prints one line: lost, duplicates, out of order, the
 * takeover time (from the fault to the first record the new owner wrote, by Kafka timestamp:
 * the bridge stamps records with their MQTT receive time) and the broker's session takeovers
 * (from Mosquitto's log).
 */
const BADGES = 500;

let mosq: Mosquitto;
let kafka: Kafka;
const sets: ReplicaSet[] = [];
const proxies: BlackholeProxy[] = [];

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([
    startMosquitto(),
    // The bridge under test cuts its own Kafka path in one test: 'r0' is replica 0's.
    startKafka({ clientPaths: ['r0'], extraProps: { 'group.initial.rebalance.delay.ms': '0' } }),
  ]);
}, 120_000);

afterAll(async () => {
  for (const s of sets) await s.stopAll().catch(() => undefined);
  for (const p of proxies) await p.close().catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface GroupOpts {
  replicas?: number;
  env?: Record<string, string>;
  envFor?: (i: number) => Record<string, string>;
}

async function group(name: string, o: GroupOpts = {}): Promise<ReplicaSet> {
  await kafka.createTopic(name, 6);
  const s = new ReplicaSet({
    replicas: o.replicas ?? 2,
    clientIdPrefix: `${name}-`,
    sharedClientId: `${name}-bridge`,
    env: {
      ...groupEnv(name, mosq.port, `127.0.0.1:${kafka.port}`),
      KAFKA_WRITE_TIMEOUT_MS: '3000',
      KAFKA_CONNECT_TIMEOUT_MS: '2000',
      SPOOL_REPLAY_INTERVAL_MS: '1000',
      BRIDGE_GROUP: name,
      BRIDGE_SESSION_RELEASE_MS: '8000',
      ...o.env,
    },
    ...(o.envFor ? { envFor: o.envFor } : {}),
  });
  sets.push(s);
  return s;
}

/** The replica whose bridge reports session 0 connected; waits until exactly one does. */
const owner = (set: ReplicaSet, timeoutMs = 30_000, not?: number): Promise<number> => set.sessionOwner({ timeoutMs, ...(not === undefined ? {} : { not }) });

/** 500 badges x `per` messages at `rate` msg/s under this test's topic prefix; `fault` runs once, after `at` publishes. */
async function publish(name: string, per: number, rate: number, at: number, fault: () => void): Promise<void> {
  await publishBadges({
    url: mosq.url,
    badges: BADGES,
    perBadge: per,
    ratePerS: rate,
    topic: (id) => `${name}/badge/${id}/hb`,
    onProgress: (n) => {
      if (n === at) fault();
    },
  });
}

/** Session → the replicas that report it connected (from their /metrics). */
async function holders(set: ReplicaSet): Promise<Map<number, number[]>> {
  const out = new Map<number, number[]>();
  for (const r of set.running()) {
    const m = await r.bridge!.metrics().catch(() => new Map<string, number>());
    for (const [k, v] of m) {
      const hit = /^mqtt_kafka_session_connected\{session="(\d+)"\}$/.exec(k);
      if (!hit || v !== 1) continue;
      const s = Number(hit[1]);
      out.set(s, [...(out.get(s) ?? []), r.index]);
    }
  }
  return out;
}

/** Until each of `sessions` sessions is connected at exactly one replica, and every replica holds at most `maxEach`. */
async function spread(set: ReplicaSet, sessions: number, maxEach: number, timeoutMs = 60_000): Promise<Map<number, number[]>> {
  let h = new Map<number, number[]>();
  await waitUntil(
    `${sessions} sessions, each connected once, at most ${maxEach} per replica`,
    async () => {
      h = await holders(set);
      const per = new Map<number, number>();
      for (const rs of h.values()) for (const r of rs) per.set(r, (per.get(r) ?? 0) + 1);
      return h.size === sessions && [...h.values()].every((rs) => rs.length === 1) && [...per.values()].every((n) => n <= maxEach);
    },
    timeoutMs,
  );
  return h;
}

/** Mosquitto's log lines saying a client id's older connection was taken over, since `from` (byte offset). */
function takeoversInLog(clientId: string, from: number): number {
  const text = readFileSync(mosq.logFile, 'utf8').slice(from);
  return text.split('\n').filter((l) => l.includes(`Client ${clientId} already connected, closing old connection`)).length;
}
const logSize = () => readFileSync(mosq.logFile).length;

async function endOffsetsSum(topic: string): Promise<number> {
  return Object.values(await kafka.endOffsets(topic)).reduce((a, b) => a + b, 0);
}

/** Until the running replicas hold nothing unacknowledged nor spooled and the topic has stopped growing. */
async function settled(set: ReplicaSet, topic: string, atLeast: number, timeoutMs = 90_000): Promise<void> {
  let last = -1;
  let stableSince = Date.now();
  await waitUntil(
    `${topic}: ${atLeast} records and the replicas idle`,
    async () => {
      const n = await endOffsetsSum(topic);
      if (n !== last) {
        last = n;
        stableSince = Date.now();
      }
      const b = await set.backlog();
      return n >= atLeast && b.unacked === 0 && b.spoolRows === 0 && Date.now() - stableSince > 2000;
    },
    timeoutMs,
  );
}

/** Writer (MQTT connection) of a record: the message id's prefix, new for every session a replica takes. */
const writerOf = (r: ReadRecord) => (r.headers['mqtt.message_id'] ?? '').split('-')[0]!;

/** From `at` to the first record whose writer had written nothing before `at`. */
function takeoverMs(records: readonly ReadRecord[], at: number): number {
  const before = new Set(records.filter((r) => r.timestamp < at).map(writerOf));
  const after = records.filter((r) => r.timestamp >= at && !before.has(writerOf(r))).map((r) => r.timestamp);
  return after.length === 0 ? Number.NaN : Math.min(...after) - at;
}

interface Outcome {
  lost: number;
  duplicates: number;
  outOfOrder: number;
  records: ReadRecord[];
}

async function readBack(label: string, topic: string, total: number, perBadge: number, extra: Record<string, unknown>): Promise<Outcome> {
  const records = await kafka.readTopic(topic, { expected: total, timeoutMs: 90_000 });
  const c = checkBadges(records, BADGES, perBadge);
  const fields = Object.entries(extra)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? Math.round(v) : String(v)}`)
    .join(', ');
  console.log(`[sessions] ${label}: ${total} published, ${c.distinct} distinct in Kafka (${records.length} records); lost ${c.missing.length}, duplicates ${c.duplicates}, out of order ${c.orderViolations} (${c.outOfOrder.length} badges); ${fields}`);
  expect(c.splitPartitions).toEqual([]);
  return { lost: c.missing.length, duplicates: c.duplicates, outOfOrder: c.orderViolations, records };
}

describe('MQTT sessions owned by a group of replicas (BRIDGE_GROUP)', () => {
  it('2 replicas, 1 session, 2,000 msg/s: SIGKILL of the owner → the standby resumes the session; 0 lost, 0 out of order, takeover < 10 s', async () => {
    const name = 'grp-kill';
    const PER = 80;
    const set = await group(name);
    await set.startAll();
    const first = await owner(set);
    const log0 = logSize();
    let killedAt = 0;
    const t0 = Date.now();
    await publish(name, PER, 2000, 12_000, () => {
      killedAt = Date.now();
      void set.kill9(first);
    });
    const next = await owner(set, 30_000, first);
    await settled(set, name, BADGES * PER);
    const out = await readBack('SIGKILL of the owner', name, BADGES * PER, PER, {
      'takeover ms': takeoverMs(await kafka.readTopic(name, { expected: BADGES * PER }), killedAt),
      'broker takeovers': takeoversInLog(`${name}-bridge`, log0),
      seconds: (Date.now() - t0) / 1000,
      'new owner': `#${next}`,
    });
    expect(out.lost).toBe(0);
    expect(out.outOfOrder).toBe(0);
    const ms = takeoverMs(out.records, killedAt);
    expect(ms).toBeLessThan(10_000);
  }, 180_000);

  for (const replicas of [2, 3]) {
    it(`rolling restart of ${replicas} replicas (SIGTERM one at a time, StatefulSet order) at 5,000 msg/s: planned handovers, 0 lost, 0 out of order, 0 duplicates`, async () => {
      const name = `grp-roll${replicas}`;
      const PER = 100;
      const set = await group(name, { replicas });
      // The highest ordinal first, so it is the owner: a StatefulSet rolls from there down.
      await set.start(replicas - 1);
      await owner(set);
      for (let i = replicas - 2; i >= 0; i--) await set.start(i);
      const log0 = logSize();
      const handovers: number[] = [];
      const t0 = Date.now();
      let rolledAt = 0;
      const roll = async (): Promise<void> => {
        for (let i = replicas - 1; i >= 0; i--) {
          const held = (await set.replicas[i]!.bridge!.metric('mqtt_kafka_session_connected', { session: '0' }).catch(() => 0)) === 1;
          const at = Date.now();
          await set.stop(i);
          if (held) handovers.push(at);
          await set.start(i);
        }
        rolledAt = Date.now();
      };
      let rolling: Promise<void> | undefined;
      await publishBadges({
        url: mosq.url,
        badges: BADGES,
        perBadge: PER,
        ratePerS: 5000,
        topic: (id) => `${name}/badge/${id}/hb`,
        onProgress: (n) => {
          if (n === 5000) rolling = roll();
        },
      });
      const published = Date.now();
      await rolling;
      await settled(set, name, BADGES * PER);
      const all = await kafka.readTopic(name, { expected: BADGES * PER });
      const out = await readBack(`rolling restart of ${replicas}`, name, BADGES * PER, PER, {
        'takeover ms': handovers.map((h) => takeoverMs(all, h)).join('/'),
        'broker takeovers': takeoversInLog(`${name}-bridge`, log0),
        'publishing s': (published - t0) / 1000,
        'roll ended ms after the last publish': rolledAt - published,
        seconds: (Date.now() - t0) / 1000,
      });
      expect(out.lost).toBe(0);
      expect(out.outOfOrder).toBe(0);
      expect(out.duplicates).toBe(0);
      expect(takeoversInLog(`${name}-bridge`, log0)).toBe(0);
      expect(handovers.length).toBeGreaterThanOrEqual(1);
      for (const h of handovers) expect(takeoverMs(all, h)).toBeLessThan(10_000);
    }, 240_000);
  }

  it("the owner's path to MQTT black-holed (Kafka fine): it gives the session up, the other takes it over; one connection, no ping-pong, 0 lost", async () => {
    const name = 'grp-mqtt-cut';
    const PER = 80;
    const proxy = await startBlackholeProxy({ targetPort: mosq.port });
    proxies.push(proxy);
    const set = await group(name, { envFor: (i): Record<string, string> => (i === 0 ? { MQTT_PORT: String(proxy.port) } : {}) });
    // Replica 0 first, so it is the owner.
    await set.start(0);
    await owner(set);
    await set.start(1);
    const log0 = logSize();
    let cutAt = 0;
    await publish(name, PER, 3000, 6000, () => {
      cutAt = Date.now();
      proxy.blackhole();
    });
    const next = await owner(set, 60_000, 0);
    // Heal, and see that the session stays where it is now.
    proxy.heal();
    await sleep(10_000);
    const still = await owner(set, 5000);
    await settled(set, name, BADGES * PER);
    const takeovers = takeoversInLog(`${name}-bridge`, log0);
    const out = await readBack('MQTT path of the owner black-holed', name, BADGES * PER, PER, {
      'takeover ms': takeoverMs(await kafka.readTopic(name, { expected: BADGES * PER }), cutAt),
      'broker takeovers': takeovers,
      'owner after heal': `#${still}`,
    });
    expect(next).toBe(1);
    expect(still).toBe(1);
    expect(out.lost).toBe(0);
    // The new owner's CONNECT fenced the silent one once; nothing fought back afterwards.
    expect(takeovers).toBeLessThanOrEqual(1);
  }, 180_000);

  it("the owner's path to Kafka black-holed (MQTT fine): it spools; the group moves the session and the broker fences the old owner; 0 lost", async () => {
    const name = 'grp-kafka-cut';
    const PER = 80;
    const path = kafka.path('r0');
    const set = await group(name, { envFor: (i): Record<string, string> => (i === 0 ? { KAFKA_BROKERS: path.bootstrap } : {}) });
    await set.start(0);
    await owner(set);
    await set.start(1);
    const log0 = logSize();
    let cutAt = 0;
    await publish(name, PER, 3000, 6000, () => {
      cutAt = Date.now();
      path.blackhole();
    });
    await owner(set, 60_000, 0);
    const spooled0 = (await set.counters(0)).spooled;
    path.heal();
    await settled(set, name, BADGES * PER, 120_000);
    const takeovers = takeoversInLog(`${name}-bridge`, log0);
    const out = await readBack('Kafka path of the owner black-holed', name, BADGES * PER, PER, {
      'takeover ms': takeoverMs(await kafka.readTopic(name, { expected: BADGES * PER }), cutAt),
      'broker takeovers': takeovers,
      'spooled by the old owner': spooled0,
    });
    expect(out.lost).toBe(0);
    expect(spooled0).toBeGreaterThan(0);
    expect(takeovers).toBe(1);
  }, 240_000);

  it('MQTT 3.1.1: SIGKILL of the owner → taken over without reason codes; 0 lost, 0 out of order', async () => {
    const name = 'grp-v4';
    const PER = 80;
    const set = await group(name, { env: { MQTT_VERSION: '4' } });
    await set.startAll();
    const first = await owner(set);
    const log0 = logSize();
    let killedAt = 0;
    await publish(name, PER, 3000, 6000, () => {
      killedAt = Date.now();
      void set.kill9(first);
    });
    await owner(set, 30_000, first);
    await settled(set, name, BADGES * PER);
    const out = await readBack('MQTT 3.1.1, SIGKILL of the owner', name, BADGES * PER, PER, {
      'takeover ms': takeoverMs(await kafka.readTopic(name, { expected: BADGES * PER }), killedAt),
      'broker takeovers': takeoversInLog(`${name}-bridge`, log0),
    });
    expect(out.lost).toBe(0);
    expect(out.outOfOrder).toBe(0);
    expect(takeoverMs(out.records, killedAt)).toBeLessThan(10_000);
  }, 180_000);

  it('3 replicas, 6 sessions in a shared group: SIGKILL of one → its sessions are resumed by the others and nothing waits for it; 0 lost', async () => {
    const name = 'grp-six';
    const PER = 80;
    const set = await group(name, { replicas: 3, env: { MQTT_SESSIONS: '6' } });
    await set.startAll();
    const before = await spread(set, 6, 2);
    const victim = before.get(0)![0]!;
    let killedAt = 0;
    await publish(name, PER, 3000, 8000, () => {
      killedAt = Date.now();
      void set.kill9(victim);
    });
    const after = await spread(set, 6, 3);
    const resumedMs = Date.now() - killedAt;
    // The dead replica never comes back: everything must reach Kafka through the other two.
    await settled(set, name, BADGES * PER);
    const out = await readBack('3 replicas x 6 sessions, one SIGKILLed and not restarted', name, BADGES * PER, PER, {
      'takeover ms': takeoverMs(await kafka.readTopic(name, { expected: BADGES * PER }), killedAt),
      'all 6 held again (checked after publishing) ms': resumedMs,
      'sessions per replica before': JSON.stringify([0, 1, 2].map((r) => [...before.values()].filter((x) => x[0] === r).length)),
      after: JSON.stringify([0, 1, 2].map((r) => [...after.values()].filter((x) => x[0] === r).length)),
    });
    expect(out.lost).toBe(0);
    expect([...after.values()].flat()).not.toContain(victim);
  }, 240_000);

  it('Kafka down for everyone (30 s): the owner keeps its session and spools; no takeover after Kafka returns; 0 lost, 0 out of order', async () => {
    const name = 'grp-kafka-down';
    const PER = 80;
    const set = await group(name);
    await set.startAll();
    const first = await owner(set);
    const log0 = logSize();
    let down: Promise<void> | undefined;
    await publish(name, PER, 2000, 5000, () => {
      down = kafka.stop().then(() => sleep(30_000)).then(() => kafka.start());
    });
    await down;
    await settled(set, name, BADGES * PER, 120_000);
    const still = await owner(set, 10_000);
    const spooled = (await set.counters(first)).spooled;
    const takeovers = takeoversInLog(`${name}-bridge`, log0);
    const out = await readBack('Kafka down for everyone for 30 s', name, BADGES * PER, PER, { 'broker takeovers': takeovers, 'spooled by the owner': spooled, 'owner before/after': `#${first}/#${still}` });
    expect(out.lost).toBe(0);
    expect(out.outOfOrder).toBe(0);
    expect(spooled).toBeGreaterThan(0);
    expect(still).toBe(first);
    expect(takeovers).toBe(0);
  }, 240_000);

  it('a single replica turned into a group keeps its broker session: what was queued for its old client id reaches Kafka', async () => {
    const name = 'grp-migrate';
    const PER = 20;
    await kafka.createTopic(name, 6);
    // Before: one bridge, no group, the client id the chart gave pod 0.
    const old = new ReplicaSet({
      replicas: 1,
      clientIdPrefix: `${name}-pod-`,
      env: { MQTT_BROKER: '127.0.0.1', MQTT_PORT: String(mosq.port), MQTT_TOPIC: `${name}/badge/#`, KAFKA_BROKERS: `127.0.0.1:${kafka.port}`, KAFKA_TOPIC: name, KAFKA_WORKERS: '2' },
    });
    sets.push(old);
    await old.startAll();
    await old.stop(0);
    // Queued in the old session while nothing runs.
    await publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER / 2, topic: (id) => `${name}/badge/${id}/hb` });
    const set = new ReplicaSet({
      replicas: 2,
      clientIdPrefix: `${name}-pod-`,
      sharedClientId: `${name}-pod-0`,
      env: { ...old.replicas[0]!.env, MQTT_CLIENT_ID: '', BRIDGE_GROUP: name, MQTT_KEEPALIVE_S: '5' },
    });
    sets.push(set);
    await set.startAll();
    await owner(set);
    // And the rest, with the group running. Per-badge seqs continue after the queued half.
    await publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER / 2, topic: (id) => `${name}/badge/${id}/hb` });
    await settled(set, name, BADGES * PER);
    const records = await kafka.readTopic(name, { expected: BADGES * PER, timeoutMs: 60_000 });
    console.log(`[sessions] migration to a group: ${BADGES * PER} published (half queued for the old client id), ${records.length} records in Kafka`);
    expect(records.length).toBeGreaterThanOrEqual(BADGES * PER);
  }, 180_000);
});
