import fs from 'node:fs';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, startBridgeProcess, startKafka, startMosquitto, type BridgeProcess, type Kafka, type Mosquitto, type ReadRecord } from '../harness/index.js';

/**
 * Subscriptions follow the configuration (issue 9), against real Mosquitto and Kafka: a bridge
 * started with MQTT_TOPIC=acc/a/#, stopped (SIGTERM), messages published to acc/a/x while it is
 * away, then restarted (same client id, same spool) with MQTT_TOPIC=acc/b/#. The persistent
 * session still holds acc/a/# and its queued messages: the bridge must unsubscribe it, apply
 * MQTT_REMOVED_FILTER_POLICY to exactly the queued ones, and receive nothing published to acc/a
 * after that.
 */
const BEFORE = 10; // acc/a/x while subscribed to it (wanted)
const QUEUED = 100; // acc/a/x while the bridge is stopped (queued for the old filter)
const AFTER = 100; // acc/a/x after the restart unsubscribed it (must never arrive)
const WANTED = 50; // acc/b/y after the restart

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto({ extraConfig: ['log_type subscribe', 'log_type unsubscribe'] }), startKafka()]);
  for (const t of ['acc-dl-data', 'acc-dl-dlq', 'acc-fw-data', 'acc-fw-dlq']) await kafka.createTopic(t, 1);
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

async function publish(topic: string, phase: string, n: number): Promise<void> {
  const c = await mqtt.connectAsync(mosq.url, { clientId: `acc-pub-${process.pid}-${Date.now()}` });
  for (let i = 0; i < n; i++) await c.publishAsync(topic, JSON.stringify({ phase, i }), { qos: 1 });
  await c.endAsync();
}

const body = (r: ReadRecord) => JSON.parse(r.value ?? '{}') as { phase: string; i: number };
const phases = (rs: readonly ReadRecord[]) => {
  const out: Record<string, number> = {};
  for (const r of rs) {
    const k = `${r.headers['mqtt.topic']}:${body(r).phase}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
};

async function changeSubscription(name: string, policy: 'dead_letter' | 'forward') {
  const dir = makeTempDir(`${name}-`);
  const env = (topic: string) => ({
    MQTT_BROKER: '127.0.0.1',
    MQTT_PORT: String(mosq.port),
    MQTT_TOPIC: topic,
    MQTT_CLIENT_ID: name,
    MQTT_REMOVED_FILTER_POLICY: policy,
    KAFKA_BROKER: '127.0.0.1',
    KAFKA_PORT: String(kafka.port),
    KAFKA_TOPIC: `${name}-data`,
    DLQ_TOPIC: `${name}-dlq`,
    SPOOL_PATH: `${dir}/spool.db`,
  });
  let b = await startBridgeProcess({ env: env('acc/a/#'), logDir: dir });
  bridges.push(b);
  await publish('acc/a/x', 'before', BEFORE);
  await b.waitFor('first records written', async () => (await b.metric('mqtt_kafka_records_written_total')) === BEFORE);
  expect((await b.proc.stop('SIGTERM')).code).toBe(0);

  await publish('acc/a/x', 'queued', QUEUED);
  const brokerLogFrom = fs.statSync(mosq.logFile).size;
  b = await startBridgeProcess({ env: env('acc/b/#'), logDir: dir });
  bridges.push(b);
  await b.waitFor('the removed filter unsubscribed', async () => fs.readFileSync(b.logFile, 'utf8').includes('unsubscribed filters no longer in the configuration'));
  await publish('acc/a/x', 'after', AFTER);
  await publish('acc/b/y', 'wanted', WANTED);
  // Mosquitto delivers one publisher's messages in order: once acc/b/y is through, any acc/a/x
  // 'after' message the broker still matched to us would have been delivered before it.
  await b.waitFor('everything written', async () => (await b.metric('mqtt_kafka_records_written_total')) >= QUEUED + WANTED && (await b.metric('mqtt_kafka_unacked_messages')) === 0);
  const received = await b.metric('mqtt_kafka_messages_received_total');
  const data = await kafka.readTopic(`${name}-data`, { expected: BEFORE + WANTED + (policy === 'forward' ? QUEUED : 0), timeoutMs: 30_000 });
  const dlq = await kafka.readTopic(`${name}-dlq`, { expected: policy === 'dead_letter' ? QUEUED : 0, timeoutMs: policy === 'dead_letter' ? 30_000 : 3000 });
  const bridgeLog = fs.readFileSync(b.logFile, 'utf8').split('\n');
  const brokerLog = fs.readFileSync(mosq.logFile).subarray(brokerLogFrom).toString('utf8').split('\n');
  const result = {
    received,
    data: phases(data),
    dlq: phases(dlq),
    dlqReasons: [...new Set(dlq.map((r) => r.headers['dlq.reason']))],
    changeLogLines: bridgeLog.filter((l) => l.includes('subscriptions changed since the last run')).length,
    warnOrWorse: bridgeLog.filter((l) => /"level":"(warn|error|fatal)"/.test(l)).length,
    // Mosquitto logs an UNSUBSCRIBE as '<client id> <filter>' (a SUBSCRIBE as '<client id> <qos> <filter>').
    brokerUnsubscribe: brokerLog.filter((l) => l.endsWith(`: ${name} acc/a/#`)),
    removedCounted: await b.metric('mqtt_kafka_mqtt_removed_filter_messages_total', { policy }),
  };
  console.log(`${name} (${policy}): ${JSON.stringify(result)}`);
  await b.proc.stop('SIGTERM');
  return result;
}

describe('subscriptions follow the configuration', () => {
  it('MQTT_REMOVED_FILTER_POLICY=dead_letter: the removed filter is unsubscribed; exactly the messages queued for it go to the DLQ (reason unsubscribed), none to the data topic, and nothing published to it later arrives', async () => {
    const r = await changeSubscription('acc-dl', 'dead_letter');
    expect(r.data).toEqual({ 'acc/a/x:before': BEFORE, 'acc/b/y:wanted': WANTED });
    expect(r.dlq).toEqual({ 'acc/a/x:queued': QUEUED });
    expect(r.dlqReasons).toEqual(['unsubscribed']);
    expect(r.received).toBe(QUEUED + WANTED); // not one 'after' message reached the bridge
    expect(r.removedCounted).toBe(QUEUED);
    expect(r.changeLogLines).toBe(1);
    expect(r.warnOrWorse).toBe(0); // no per-message warning for the dead letters
    expect(r.brokerUnsubscribe).toHaveLength(1);
  });

  it('MQTT_REMOVED_FILTER_POLICY=forward: the queued messages are written like any other, exactly once; nothing published later arrives', async () => {
    const r = await changeSubscription('acc-fw', 'forward');
    expect(r.data).toEqual({ 'acc/a/x:before': BEFORE, 'acc/a/x:queued': QUEUED, 'acc/b/y:wanted': WANTED });
    expect(r.dlq).toEqual({});
    expect(r.received).toBe(QUEUED + WANTED);
    expect(r.removedCounted).toBe(QUEUED);
    expect(r.changeLogLines).toBe(1);
    expect(r.brokerUnsubscribe).toHaveLength(1);
  });
});
