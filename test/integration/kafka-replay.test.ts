import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBadges, makeTempDir, publishBadges, startBridgeProcess, startKafka, startMosquitto, type BridgeProcess, type Kafka, type Mosquitto } from '../harness/index.js';

/**
 * Replay against a real Kafka (one broker, started once for the file).
 *
 * Replay without repeats: 100,000 QoS 1 messages spooled while Kafka is down, then the bridge is
 * SIGKILLed twice while it replays them. Each kill lands while a page Kafka acknowledged may
 * still wait for its delete; after each restart the bridge reads the tail of the partitions back
 * for the rows at or below its replay mark and sends only what Kafka does not have. Read back
 * with kcat: 0 missing, 0 out of order per badge, 0 duplicates.
 *
 * A missing topic (auto-creation off): the write fails as `topic_missing`, the log and /readyz
 * say what to do, records are spooled, and they drain once the topic is created.
 */
const BADGES = 500;
const PER_BADGE = 200;
const TOTAL = BADGES * PER_BADGE;

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  await kafka.createTopic('replay-kills', 4);
}, 120_000);

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

describe('replay after a crash', () => {
  it('sends nothing twice when the bridge is SIGKILLed twice while it replays 100,000 spooled records', async () => {
    const dir = makeTempDir('replay-kills-');
    const env = {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_TOPIC: 'replaykills/#',
      MQTT_CLIENT_ID: 'replay-kills',
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_TOPIC: 'replay-kills',
      KAFKA_WRITE_TIMEOUT_MS: '3000',
      KAFKA_CONNECT_TIMEOUT_MS: '2000',
      SPOOL_REPLAY_INTERVAL_MS: '1000',
      SPOOL_PATH: `${dir}/spool.db`,
    };
    const start = async (): Promise<BridgeProcess> => {
      const b = await startBridgeProcess({ logDir: dir, env });
      bridges.push(b);
      return b;
    };
    await kafka.stop();
    let b = await start();
    const published = await publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE, topic: (id) => `replaykills/${id}` });
    expect(published).toBe(TOTAL);
    await b.waitFor('everything spooled', async () => (await b.metric('mqtt_kafka_spool_rows')) === TOTAL && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 120_000);
    await kafka.start();

    const found: number[] = [];
    const rowsAtKill: number[] = [];
    for (let kill = 0; kill < 2; kill++) {
      await b.waitFor('replay under way', async () => (await b.metric('mqtt_kafka_spool_records_replayed_total')) >= 5_000, 60_000);
      rowsAtKill.push(await b.metric('mqtt_kafka_spool_rows'));
      b.proc.kill9();
      await b.proc.waitExit();
      b = await start();
    }
    await b.waitFor('spool drained', async () => (await b.metric('mqtt_kafka_spool_rows')) === 0, 120_000);
    // One log file for the three processes (appended).
    for (const l of b.logLines()) if (typeof l.alreadyInKafka === 'number') found.push(l.alreadyInKafka);
    const records = await kafka.readTopic('replay-kills', { expected: TOTAL, timeoutMs: 90_000 });
    const check = checkBadges(records, BADGES, PER_BADGE);
    console.log(
      `[replay kills] published ${published}, read ${records.length}, distinct ${check.distinct}, missing ${check.missing.length}, ` +
        `out of order ${check.outOfOrder.length}, duplicates ${check.duplicates}; spool rows at the kills ${rowsAtKill.join(', ')}; ` +
        `rows found already in Kafka after each restart ${found.join(', ') || 'none'}`,
    );
    expect(rowsAtKill.every((n) => n > 0 && n < TOTAL)).toBe(true);
    expect(check.missing).toEqual([]);
    expect(check.outOfOrder).toEqual([]);
    expect(check.splitPartitions).toEqual([]);
    expect(check.duplicates).toBe(0);
    expect(check.distinct).toBe(TOTAL);
    await b.proc.stop('SIGTERM');
  }, 300_000);
});

describe('a topic that does not exist', () => {
  it('is topic_missing, says what to do in the log and /readyz, spools, and drains once the topic is created', async () => {
    const dir = makeTempDir('topic-missing-');
    const b = await startBridgeProcess({
      logDir: dir,
      waitReady: false,
      env: {
        MQTT_BROKER: '127.0.0.1',
        MQTT_PORT: String(mosq.port),
        MQTT_TOPIC: 'latetopic/#',
        MQTT_CLIENT_ID: 'topic-missing',
        KAFKA_BROKER: '127.0.0.1',
        KAFKA_PORT: String(kafka.port),
        KAFKA_TOPIC: 'late-topic',
        KAFKA_WRITE_TIMEOUT_MS: '3000',
        SPOOL_REPLAY_INTERVAL_MS: '1000',
        SPOOL_PATH: `${dir}/spool.db`,
      },
    });
    bridges.push(b);
    await b.waitFor('subscribed', async () => (await b.readyz()).body.mqtt === 'subscribed', 30_000);
    const badges = 100;
    const perBadge = 50;
    const published = await publishBadges({ url: mosq.url, badges, perBadge, topic: (id) => `latetopic/${id}` });
    await b.waitFor('all spooled', async () => (await b.metric('mqtt_kafka_spool_rows')) === published && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 60_000);
    const kinds = await b.metric('mqtt_kafka_write_errors_total', { kind: 'topic_missing' });
    const unknown = await b.metric('mqtt_kafka_write_errors_total', { kind: 'unknown' });
    const line = b.logLines().find((l) => l.kind === 'topic_missing' && typeof l.msg === 'string' && l.msg.includes('create the topic'));
    const ready = await b.readyz();
    const problem = String(ready.body.kafkaProblem);
    expect(kinds).toBeGreaterThan(0);
    expect(unknown).toBe(0);
    expect(String(line?.msg)).toMatch(/late-topic does not exist and KAFKA_AUTO_CREATE_TOPICS is off/);
    expect(ready.status).toBe(503);
    expect(problem).toMatch(/create the topic \(or set KAFKA_AUTO_CREATE_TOPICS=true\)/);
    const created = Date.now();
    await kafka.createTopic('late-topic', 4);
    await b.waitFor('drained', async () => (await b.metric('mqtt_kafka_spool_rows')) === 0 && (await b.metric('mqtt_kafka_write_path_workers', { path: 'spooling' })) === 0, 60_000);
    const drainedMs = Date.now() - created;
    const records = await kafka.readTopic('late-topic', { expected: published, timeoutMs: 60_000 });
    const check = checkBadges(records, badges, perBadge);
    await b.waitFor('ready again', async () => (await b.readyz()).status === 200, 30_000);
    console.log(
      `[topic missing] published ${published}, spooled ${await b.metric('mqtt_kafka_spool_records_spooled_total')}, topic_missing errors ${kinds}, ` +
        `drained ${drainedMs} ms after the topic was created, read ${records.length}, missing ${check.missing.length}, duplicates ${check.duplicates}, out of order ${check.outOfOrder.length}`,
    );
    expect(check.missing).toEqual([]);
    expect(check.outOfOrder).toEqual([]);
    expect(check.duplicates).toBe(0);
    await b.proc.stop('SIGTERM');
  }, 180_000);
});
