/**
 * `npx tsx bench/failover.ts`: what a session group (BRIDGE_GROUP) costs and buys. Starts its
 * own Mosquitto and Kafka on loopback and runs the bridges as separate processes.
 *
 * 1. Takeover: 2 replicas, 1 session, QoS 1 messages from 500 badges at FAILOVER_RATE msg/s
 *    (default 1,000) while the owner is SIGKILLed FAILOVER_KILLS times (default 10), each time
 *    restarted once the other replica holds the session. Takeover = from the kill to the first
 *    record the new owner wrote (Kafka timestamp: the bridge stamps records with their MQTT
 *    receive time). Prints min / median / p90 / max, and lost / duplicates over the whole run.
 * 2. Throughput: FAILOVER_MESSAGES (default 60,000) QoS 1 messages published as fast as one
 *    publisher goes, through 1 replica holding 6 sessions and through 3 replicas × 6 sessions
 *    (2 each); from the first publish to the last record in Kafka.
 *
 * Prints a table and the same figures as JSON.
 */
import mqtt from 'mqtt';
import { badgeId, checkBadges, groupEnv, publishBadges, ReplicaSet, startKafka, startMosquitto, waitUntil, type Kafka, type Mosquitto, type ReadRecord } from '../test/harness/index.js';

const BADGES = 500;
const KILLS = Number(process.env.FAILOVER_KILLS ?? 10);
const RATE = Number(process.env.FAILOVER_RATE ?? 1000);
const MESSAGES = Number(process.env.FAILOVER_MESSAGES ?? 60_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function group(mosq: Mosquitto, kafka: Kafka, name: string, replicas: number, env: Record<string, string> = {}): ReplicaSet {
  return new ReplicaSet({
    replicas,
    clientIdPrefix: `${name}-`,
    sharedClientId: `${name}-bridge`,
    env: {
      ...groupEnv(name, mosq.port, `127.0.0.1:${kafka.port}`),
      SPOOL_REPLAY_INTERVAL_MS: '1000',
      BRIDGE_GROUP: name,
      LOG_LEVEL: 'warn',
      ...env,
    },
  });
}

async function allHeld(set: ReplicaSet, sessions: number): Promise<void> {
  await waitUntil(
    `${sessions} sessions held`,
    async () => {
      for (let s = 0; s < sessions; s++) if ((await set.holdersOf(s)).length !== 1) return false;
      return true;
    },
    60_000,
  );
}

const total = async (kafka: Kafka, topic: string) => Object.values(await kafka.endOffsets(topic)).reduce((a, b) => a + b, 0);
const writerOf = (r: ReadRecord) => (r.headers['mqtt.message_id'] ?? '').split('-')[0]!;
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function takeovers(mosq: Mosquitto, kafka: Kafka) {
  const name = 'bench-failover';
  await kafka.createTopic(name, 6);
  const set = group(mosq, kafka, name, 2);
  await set.startAll();
  await set.sessionOwner();
  // A publisher that runs until told to stop, whole rounds of 500 badges.
  const client = await mqtt.connectAsync(mosq.url, { clientId: `bench-failover-pub-${process.pid}`, clean: true, reconnectPeriod: 500 });
  let n = 0;
  let stop = false;
  const started = Date.now();
  const inflight = new Set<Promise<unknown>>();
  const publisher = (async () => {
    while (!stop || n % BADGES !== 0) {
      const b = n % BADGES;
      const seq = Math.floor(n / BADGES);
      const id = badgeId(b);
      const p = client.publishAsync(`${name}/badge/${id}/hb`, JSON.stringify({ badge_id: id, seq, ts: Date.now() / 1000 }), { qos: 1 });
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      n++;
      if (inflight.size >= 200) await Promise.race(inflight);
      const wait = started + (n * 1000) / RATE - Date.now();
      if (wait > 1) await sleep(wait);
    }
    await Promise.all(inflight);
  })();
  const kills: number[] = [];
  for (let k = 0; k < KILLS; k++) {
    await sleep(2000);
    const victim = await set.sessionOwner();
    kills.push(Date.now());
    await set.kill9(victim);
    await set.sessionOwner({ not: victim });
    await set.start(victim);
    process.stdout.write(`kill ${k + 1}/${KILLS} done\n`);
  }
  await sleep(2000);
  stop = true;
  await publisher;
  await client.endAsync();
  await waitUntil('all records in Kafka', async () => (await total(kafka, name)) >= n, 120_000);
  const records = await kafka.readTopic(name, { expected: n, timeoutMs: 120_000 });
  const c = checkBadges(records, BADGES, n / BADGES);
  const ms = kills.map((at, i) => {
    const next = kills[i + 1] ?? Number.POSITIVE_INFINITY;
    const before = new Set(records.filter((r) => r.timestamp < at).map(writerOf));
    const after = records.filter((r) => r.timestamp >= at && r.timestamp < next && !before.has(writerOf(r))).map((r) => r.timestamp);
    return after.length === 0 ? Number.NaN : Math.min(...after) - at;
  });
  await set.stopAll();
  const sorted = ms.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return {
    kills: KILLS,
    rate: RATE,
    published: n,
    lost: c.missing.length,
    duplicates: c.duplicates,
    outOfOrder: c.orderViolations,
    takeoverMs: ms,
    min: sorted[0],
    median: pct(sorted, 50),
    p90: pct(sorted, 90),
    max: sorted[sorted.length - 1],
  };
}

async function throughput(mosq: Mosquitto, kafka: Kafka, replicas: number) {
  const name = `bench-tp-${replicas}`;
  await kafka.createTopic(name, 6);
  const set = group(mosq, kafka, name, replicas, { MQTT_SESSIONS: '6' });
  await set.startAll();
  await allHeld(set, 6);
  const per = Math.ceil(MESSAGES / BADGES);
  const t0 = Date.now();
  await publishBadges({ url: mosq.url, badges: BADGES, perBadge: per, topic: (id) => `${name}/badge/${id}/hb` });
  const published = Date.now();
  await waitUntil('all records in Kafka', async () => (await total(kafka, name)) >= BADGES * per, 180_000);
  const done = Date.now();
  await set.stopAll();
  return { replicas, sessions: 6, messages: BADGES * per, publishMsgPerS: Math.round((BADGES * per * 1000) / (published - t0)), endToEndMsgPerS: Math.round((BADGES * per * 1000) / (done - t0)) };
}

async function main(): Promise<void> {
  const [mosq, kafka] = await Promise.all([startMosquitto(), startKafka({ extraProps: { 'group.initial.rebalance.delay.ms': '0' } })]);
  try {
    const t = await takeovers(mosq, kafka);
    const one = await throughput(mosq, kafka, 1);
    const three = await throughput(mosq, kafka, 3);
    console.log('');
    console.log(`takeover after SIGKILL of the owner (2 replicas, 1 session, ${t.rate} msg/s), ${t.kills} kills:`);
    console.log(`  min ${t.min} ms, median ${t.median} ms, p90 ${t.p90} ms, max ${t.max} ms  (each: ${t.takeoverMs.join(', ')})`);
    console.log(`  ${t.published} published: lost ${t.lost}, duplicates ${t.duplicates}, out of order ${t.outOfOrder}`);
    console.log('throughput, 6 sessions, one publisher at full speed:');
    for (const r of [one, three]) console.log(`  ${r.replicas} replica(s): ${r.messages} messages, end to end ${r.endToEndMsgPerS} msg/s (published at ${r.publishMsgPerS} msg/s)`);
    console.log(JSON.stringify({ takeover: t, throughput: [one, three] }));
  } finally {
    await Promise.all([mosq.stop(), kafka.stop()]);
  }
}

await main();
