import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBadges,
  makeTempDir,
  publishBadges,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  type BadgeCheck,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
} from '../harness/index.js';

/**
 * The fault suite: Kafka outages, SIGKILLs of the bridge during an outage and during replay,
 * a Mosquitto restart, and a full spool under each policy. Each test publishes 20,000 QoS 1
 * messages from 500 badges with per-badge sequence numbers and reads the result back with an
 * independent consumer (kcat).
 */
const BADGES = 500;
const PER_BADGE = 40;
const TOTAL = BADGES * PER_BADGE;

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  for (const t of ['outage', 'kills', 'mosq-restart', 'full-block', 'full-oldest', 'full-newest']) await kafka.createTopic(t, 4);
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

async function bridge(over: Record<string, string>, dir: string, broker: Mosquitto = mosq): Promise<BridgeProcess> {
  const b = await startBridgeProcess({
    logDir: dir,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(broker.port),
      MQTT_TOPIC: 'cackalacky/badge/egress/#',
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_WRITE_TIMEOUT_MS: '3000',
      KAFKA_CONNECT_TIMEOUT_MS: '2000',
      SPOOL_PATH: `${dir}/spool.db`,
      ...over,
    },
  });
  bridges.push(b);
  return b;
}

async function readAndCheck(topic: string, expected: number): Promise<{ check: BadgeCheck; records: number }> {
  const records = await kafka.readTopic(topic, { expected, timeoutMs: 90_000 });
  const check = checkBadges(records, BADGES, PER_BADGE);
  expect(check.outOfOrder).toEqual([]);
  expect(check.splitPartitions).toEqual([]);
  return { check, records: records.length };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('spool: Kafka outages', () => {
  it('spools during a 15 s Kafka outage and replays within one interval after Kafka is back, complete and in order', async () => {
    const dir = makeTempDir('outage-');
    const b = await bridge({ MQTT_CLIENT_ID: 'faults-outage', KAFKA_TOPIC: 'outage', SPOOL_REPLAY_INTERVAL_MS: '10000' }, dir);
    let outage: Promise<number> | undefined;
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: PER_BADGE,
      ratePerS: 1000,
      onProgress: (n) => {
        if (n === 4000) {
          outage = (async () => {
            await kafka.stop();
            await sleep(15_000);
            await kafka.start();
            return Date.now();
          })();
        }
      },
    });
    const kafkaBackAt = await outage!;
    expect(await b.metric('mqtt_kafka_spool_records_spooled_total')).toBeGreaterThan(5_000);
    await b.waitFor('spool drained', async () => (await b.metric('mqtt_kafka_spool_rows')) === 0 && (await b.metric('mqtt_kafka_write_path_workers', { path: 'direct' })) === 4, 60_000);
    const drainedAfterMs = Date.now() - kafkaBackAt;
    console.log(`outage: spooled ${await b.metric('mqtt_kafka_spool_records_spooled_total')}, drained ${drainedAfterMs} ms after Kafka was back`);
    expect(drainedAfterMs).toBeLessThan(10_000 + 5_000);
    await b.waitFor('all acknowledged', async () => (await b.metric('mqtt_kafka_unacked_messages')) === 0);

    const { check, records } = await readAndCheck('outage', published);
    expect(check.missing).toEqual([]);
    console.log(`outage: ${records} records, ${check.duplicates} duplicates`);
    expect(await b.metric('mqtt_kafka_dropped_total')).toBe(0);
    await b.proc.stop('SIGTERM');
  });

  it('loses nothing PUBACKed when the bridge is SIGKILLed twice during an outage and once during replay', async () => {
    const dir = makeTempDir('kills-');
    const over = { MQTT_CLIENT_ID: 'faults-kills', KAFKA_TOPIC: 'kills', SPOOL_REPLAY_INTERVAL_MS: '2000', KAFKA_BATCH_MAX_MESSAGES: '100', KAFKA_REPLAY_BATCH_MAX_MESSAGES: '100' };
    let b = await bridge(over, dir);
    await kafka.stop();
    const restart = async () => {
      b.proc.kill9();
      await b.proc.waitExit();
      b = await bridge(over, dir);
    };
    let kills: Promise<void> = Promise.resolve();
    const published = await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: PER_BADGE,
      onProgress: (n) => {
        if (n === 6_000 || n === 13_000) kills = kills.then(restart);
      },
    });
    await kills;
    await b.waitFor('backlog spooled', async () => (await b.metric('mqtt_kafka_spool_rows')) >= 5_000 && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 60_000);
    await kafka.start();
    // Third kill: while replay is draining the spool.
    await b.waitFor('replay under way', async () => (await b.metric('mqtt_kafka_spool_records_replayed_total')) > 0, 60_000);
    expect(await b.metric('mqtt_kafka_spool_rows')).toBeGreaterThan(0);
    await restart();
    await b.waitFor('spool drained', async () => (await b.metric('mqtt_kafka_spool_rows')) === 0 && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 90_000);

    const { check, records } = await readAndCheck('kills', published);
    expect(check.missing).toEqual([]);
    console.log(`kills: ${records} records for ${published}, ${check.duplicates} duplicates`);
    await b.proc.stop('SIGTERM');
  });

  it('loses nothing when Mosquitto (with persistence) restarts during the stream', async () => {
    const dir = makeTempDir('mosq-');
    const broker = await startMosquitto({ persistence: true });
    try {
      const b = await bridge({ MQTT_CLIENT_ID: 'faults-mosq', KAFKA_TOPIC: 'mosq-restart', MQTT_RECONNECT_MS: '200' }, dir, broker);
      let restarted: Promise<void> | undefined;
      const published = await publishBadges({
        url: broker.url,
        badges: BADGES,
        perBadge: PER_BADGE,
        persistentSession: true,
        onProgress: (n) => {
          if (n === 8_000) restarted = broker.restart();
        },
      });
      await restarted;
      expect(published).toBe(TOTAL);
      await b.waitFor('reconnected and caught up', async () => (await b.metric('mqtt_kafka_unacked_messages')) === 0 && (await b.metric('mqtt_kafka_mqtt_reconnects_total')) >= 1, 60_000);
      const { check, records } = await readAndCheck('mosq-restart', published);
      expect(check.missing).toEqual([]);
      console.log(`mosquitto restart: ${records} records for ${published}, ${check.duplicates} duplicates`);
      await b.proc.stop('SIGTERM');
    } finally {
      await broker.stop();
    }
  });
});

describe('spool: full', () => {
  // About 2,000 records fit (each is ~330 bytes with headers): far fewer than are published.
  const MAX = String(700_000);

  async function fullRun(policy: 'block' | 'drop_oldest' | 'drop_newest', topic: string) {
    const dir = makeTempDir(`full-${policy}-`);
    const b = await bridge({ MQTT_CLIENT_ID: `faults-${topic}`, KAFKA_TOPIC: topic, SPOOL_MAX_BYTES: MAX, SPOOL_FULL_POLICY: policy, SPOOL_REPLAY_INTERVAL_MS: '2000', MAX_IN_FLIGHT_MESSAGES: '2000' }, dir);
    await kafka.stop();
    const publishing = publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE });
    if (policy === 'block') {
      // The spool fills, the in-flight bound is reached, reading stops: the broker keeps the rest.
      await b.waitFor('spool blocked and intake paused', async () => (await b.metric('mqtt_kafka_spool_blocked')) === 1 && (await b.metric('mqtt_kafka_intake_paused')) === 1, 60_000);
      expect((await b.readyz()).status).toBe(503);
    }
    if (policy !== 'block') await publishing;
    await b.waitFor('spool at its bound', async () => (await b.metric('mqtt_kafka_spool_bytes')) > Number(MAX) * 0.9, 60_000);
    await kafka.start();
    const published = await publishing;
    await b.waitFor('drained', async () => (await b.metric('mqtt_kafka_spool_rows')) === 0 && (await b.metric('mqtt_kafka_unacked_messages')) === 0 && (await b.metric('mqtt_kafka_in_flight_messages')) === 0, 120_000);
    const dropped = await b.metric('mqtt_kafka_dropped_total');
    const expected = published - dropped;
    const { check } = await readAndCheck(topic, expected);
    await b.proc.stop('SIGTERM');
    return { check, dropped, published };
  }

  it('block loses nothing: reading stops until replay makes room', async () => {
    const { check, dropped } = await fullRun('block', 'full-block');
    expect(dropped).toBe(0);
    expect(check.missing).toEqual([]);
  });

  it('drop_oldest drops exactly what its counter says, and only the oldest', async () => {
    const { check, dropped, published } = await fullRun('drop_oldest', 'full-oldest');
    expect(dropped).toBeGreaterThan(0);
    expect(check.missing.length).toBe(dropped);
    expect(check.distinct).toBe(published - dropped);
    // The survivors of each badge are a suffix of its sequence: the oldest went first.
    const maxMissing = Math.max(...check.missing.map((m) => Number(m.split('#')[1])));
    expect(maxMissing).toBeLessThan(PER_BADGE - 1);
  });

  it('drop_newest drops exactly what its counter says', async () => {
    const { check, dropped, published } = await fullRun('drop_newest', 'full-newest');
    expect(dropped).toBeGreaterThan(0);
    expect(check.missing.length).toBe(dropped);
    expect(check.distinct).toBe(published - dropped);
  });
});
