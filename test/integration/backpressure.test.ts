import fs from 'node:fs';
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

/**
 * Back-pressure without disconnects (issue 9): intake paused — at the in-flight bound with Kafka
 * frozen, or with the spool blocked while Kafka is down — for 3 × the MQTT keepalive, against
 * real Mosquitto. The connection must stay up the whole time (keepalive answered, no reconnect),
 * /healthz fast, /readyz saying why intake is paused; then everything drains, nothing lost.
 */
const KEEPALIVE_S = 5;
const BADGES = 100;
const PER_BADGE = 30; // 3,000 messages, 6 × MAX_IN_FLIGHT_MESSAGES

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  // 'log_type all' adds PINGREQ lines to the broker's log: proof the keepalive went on.
  [mosq, kafka] = await Promise.all([startMosquitto({ extraConfig: ['log_type all'] }), startKafka()]);
  await kafka.createTopic('bp-inflight', 4);
  await kafka.createTopic('bp-spool', 4);
  await kafka.createTopic('bp-ra-healthy', 4);
  await kafka.createTopic('bp-ra-frozen', 4);
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function bridge(clientId: string, over: Record<string, string>): Promise<BridgeProcess> {
  const dir = makeTempDir(`${clientId}-`);
  const b = await startBridgeProcess({
    logDir: dir,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_TOPIC: 'cackalacky/badge/egress/#',
      MQTT_CLIENT_ID: clientId,
      MQTT_KEEPALIVE_S: String(KEEPALIVE_S),
      MAX_IN_FLIGHT_MESSAGES: '500',
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_TOPIC: clientId,
      SPOOL_PATH: `${dir}/spool.db`,
      ...over,
    },
  });
  bridges.push(b);
  return b;
}

/** Mosquitto log lines about one client, from byte `from` on. */
function brokerLines(clientId: string, from = 0): string[] {
  const text = fs.readFileSync(mosq.logFile).subarray(from).toString('utf8');
  return text.split('\n').filter((l) => l.includes(clientId));
}

/**
 * Holds for 3 × keepalive + 1 s while intake is paused, probing /healthz and /readyz every 250 ms;
 * returns what was seen.
 */
async function holdPaused(b: BridgeProcess, clientId: string, reason: string) {
  await b.waitFor(`intake paused (${reason})`, async () => (await b.readyz()).body.intakePaused === reason, 60_000);
  const reconnectsBefore = await b.metric('mqtt_kafka_mqtt_reconnects_total');
  const logFrom = fs.statSync(mosq.logFile).size;
  const healthMs: number[] = [];
  const reasons = new Set<unknown>();
  const mqttStates = new Set<unknown>();
  const end = Date.now() + 3 * KEEPALIVE_S * 1000 + 1000;
  while (Date.now() < end) {
    const t0 = performance.now();
    const h = await fetch(`http://127.0.0.1:${b.httpPort}/healthz`);
    await h.arrayBuffer();
    healthMs.push(performance.now() - t0);
    expect(h.status).toBe(200);
    const r = await b.readyz();
    reasons.add(r.body.intakePaused);
    mqttStates.add(r.body.mqtt);
    await sleep(250);
  }
  const window = brokerLines(clientId, logFrom);
  return {
    reconnects: (await b.metric('mqtt_kafka_mqtt_reconnects_total')) - reconnectsBefore,
    healthMaxMs: Math.round(Math.max(...healthMs)),
    healthProbes: healthMs.length,
    reasons: [...reasons],
    mqttStates: [...mqttStates],
    pingreqs: window.filter((l) => /Received PINGREQ/.test(l)).length,
    disconnects: window.filter((l) => /disconnect|closed its connection|exceeded timeout|New client connected/i.test(l)),
  };
}

async function drainedAndChecked(b: BridgeProcess, clientId: string, published: number, perBadge = PER_BADGE) {
  await b.waitFor('drained', async () => (await b.metric('mqtt_kafka_unacked_messages')) === 0 && (await b.metric('mqtt_kafka_spool_rows')) === 0, 120_000);
  const records = await kafka.readTopic(clientId, { expected: published, timeoutMs: 60_000 });
  const check = checkBadges(records, BADGES, perBadge);
  const connects = brokerLines(clientId).filter((l) => /New client connected/.test(l)).length;
  const bridgeLog = fs.readFileSync(b.logFile, 'utf8').split('\n');
  return {
    records: records.length,
    lost: check.missing.length,
    duplicates: check.duplicates,
    outOfOrder: check.outOfOrder.length,
    connects,
    reconnectsTotal: await b.metric('mqtt_kafka_mqtt_reconnects_total'),
    unreachableLines: bridgeLog.filter((l) => /MQTT broker unreachable|Keepalive timeout|subscribe failed/.test(l)).length,
  };
}

describe('back-pressure without disconnects', () => {
  it('at the in-flight bound (Kafka frozen) for 3 × keepalive: no disconnect, no reconnect, /readyz says in_flight_bound, then all drains', async () => {
    const id = 'bp-inflight';
    // Writes hang rather than fail while Kafka is frozen: nothing spools, the in-flight bound holds intake.
    const b = await bridge(id, { KAFKA_WRITE_TIMEOUT_MS: '120000' });
    process.kill(kafka.pid!, 'SIGSTOP');
    let held;
    let published = 0;
    try {
      const publishing = publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE });
      held = await holdPaused(b, id, 'in_flight_bound');
      process.kill(kafka.pid!, 'SIGCONT');
      published = await publishing;
    } finally {
      process.kill(kafka.pid!, 'SIGCONT');
    }
    const result = await drainedAndChecked(b, id, published);
    console.log(`in-flight bound: ${JSON.stringify({ published, ...held, ...result })}`);
    expect(held.reasons).toEqual(['in_flight_bound']);
    expect(held.mqttStates).toEqual(['subscribed']);
    expect(held.reconnects).toBe(0);
    expect(held.disconnects).toEqual([]);
    expect(held.pingreqs).toBeGreaterThanOrEqual(2);
    expect(held.healthMaxMs).toBeLessThan(500);
    expect(result).toMatchObject({ records: published, lost: 0, duplicates: 0, outOfOrder: 0, connects: 1, reconnectsTotal: 0, unreachableLines: 0 });
    await b.proc.stop('SIGTERM');
  });

  it('with the spool blocked (full, Kafka down) for 3 × keepalive: no disconnect, no reconnect, /readyz says spool_blocked, then all drains', async () => {
    const id = 'bp-spool';
    const b = await bridge(id, { SPOOL_MAX_BYTES: '65536', SPOOL_FULL_POLICY: 'block', KAFKA_WRITE_TIMEOUT_MS: '2000', SPOOL_REPLAY_INTERVAL_MS: '1000' });
    await kafka.stop();
    let held;
    let published = 0;
    try {
      const publishing = publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE });
      held = await holdPaused(b, id, 'spool_blocked');
      await kafka.start();
      published = await publishing;
    } finally {
      await kafka.start();
    }
    const result = await drainedAndChecked(b, id, published);
    console.log(`spool blocked: ${JSON.stringify({ published, ...held, ...result })}`);
    expect(held.reasons).toEqual(['spool_blocked']);
    expect(held.mqttStates).toEqual(['subscribed']);
    expect(held.reconnects).toBe(0);
    expect(held.disconnects).toEqual([]);
    expect(held.pingreqs).toBeGreaterThanOrEqual(2);
    expect(held.healthMaxMs).toBeLessThan(500);
    expect(result).toMatchObject({ records: published, lost: 0, duplicates: 0, outOfOrder: 0, connects: 1, reconnectsTotal: 0, unreachableLines: 0 });
    await b.proc.stop('SIGTERM');
  });
});

/**
 * The read-ahead bound (READ_AHEAD_MESSAGES): while Kafka answers, no more than that many messages
 * are in flight; when Kafka freezes, intake pauses there first, then reads on to
 * MAX_IN_FLIGHT_MESSAGES once the oldest has waited READ_AHEAD_MAX_AGE_MS. Nothing lost,
 * duplicated or reordered either way.
 */
describe('the read-ahead bound against real Mosquitto and Kafka', () => {
  const READ_AHEAD = 100;
  const MAX_AGE_MS = 3000;

  /** Samples mqtt_kafka_in_flight_messages every 50 ms until `done` settles; returns the largest. */
  async function maxInFlightWhile(b: BridgeProcess, done: Promise<unknown>): Promise<{ max: number; samples: number }> {
    let finished = false;
    void done.finally(() => (finished = true));
    let max = 0;
    let samples = 0;
    while (!finished) {
      max = Math.max(max, await b.metric('mqtt_kafka_in_flight_messages'));
      samples++;
      await sleep(50);
    }
    return { max, samples };
  }

  it('Kafka answering: in flight never above READ_AHEAD_MESSAGES; all written in order', async () => {
    const id = 'bp-ra-healthy';
    const b = await bridge(id, { READ_AHEAD_MESSAGES: String(READ_AHEAD), READ_AHEAD_MAX_AGE_MS: String(MAX_AGE_MS) });
    const perBadge = 200; // 20,000 messages at full speed
    const publishing = publishBadges({ url: mosq.url, badges: BADGES, perBadge });
    const sampled = await maxInFlightWhile(b, publishing);
    const published = await publishing;
    const result = await drainedAndChecked(b, id, published, perBadge);
    console.log(`read-ahead, Kafka answering: ${JSON.stringify({ published, ...sampled, ...result })}`);
    expect(sampled.samples).toBeGreaterThan(10);
    expect(sampled.max).toBeLessThanOrEqual(READ_AHEAD);
    expect(result).toMatchObject({ records: published, lost: 0, duplicates: 0, outOfOrder: 0, connects: 1, reconnectsTotal: 0 });
    await b.proc.stop('SIGTERM');
  });

  it('Kafka frozen: intake pauses at READ_AHEAD_MESSAGES, reads on to MAX_IN_FLIGHT_MESSAGES after READ_AHEAD_MAX_AGE_MS, then all drains', async () => {
    const id = 'bp-ra-frozen';
    const b = await bridge(id, { READ_AHEAD_MESSAGES: String(READ_AHEAD), READ_AHEAD_MAX_AGE_MS: String(MAX_AGE_MS), KAFKA_WRITE_TIMEOUT_MS: '120000' });
    process.kill(kafka.pid!, 'SIGSTOP');
    let published = 0;
    let atReadAhead = 0;
    let readAheadMs = 0;
    let atBound = 0;
    try {
      const publishing = publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE });
      await b.waitFor('intake paused (read_ahead_bound)', async () => (await b.readyz()).body.intakePaused === 'read_ahead_bound', 30_000);
      const t0 = Date.now();
      atReadAhead = await b.metric('mqtt_kafka_in_flight_messages');
      await b.waitFor('intake paused (in_flight_bound)', async () => (await b.readyz()).body.intakePaused === 'in_flight_bound', 30_000);
      readAheadMs = Date.now() - t0;
      atBound = await b.metric('mqtt_kafka_in_flight_messages');
      process.kill(kafka.pid!, 'SIGCONT');
      published = await publishing;
    } finally {
      process.kill(kafka.pid!, 'SIGCONT');
    }
    const result = await drainedAndChecked(b, id, published);
    console.log(`read-ahead, Kafka frozen: ${JSON.stringify({ published, atReadAhead, readAheadMs, atBound, ...result })}`);
    expect(atReadAhead).toBe(READ_AHEAD);
    // Paused there until the oldest message was MAX_AGE_MS old (it arrived just before the pause).
    expect(readAheadMs).toBeGreaterThanOrEqual(MAX_AGE_MS - 1000);
    expect(readAheadMs).toBeLessThan(MAX_AGE_MS + 5000);
    expect(atBound).toBe(500);
    expect(result).toMatchObject({ records: published, lost: 0, duplicates: 0, outOfOrder: 0, connects: 1, reconnectsTotal: 0, unreachableLines: 0 });
    await b.proc.stop('SIGTERM');
  });
});
