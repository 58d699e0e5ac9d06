// Proves the real-broker harness works end to end: mosquitto QoS1 round trip, Kafka topic
// creation, the bridge's Kafka client producing -> kcat read-back, and Kafka data surviving a
// stop/start.
import mqtt from 'mqtt';
import pino from 'pino';
import { createKafkaFactory } from '../../src/kafka/platformatic-client.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '@platformatic/kafka';
import { livePids, startKafka, startMosquitto, stopAll, type Kafka, type Mosquitto } from '../harness/index.js';

async function withAdminAt<T>(bootstrap: string, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = new Admin({ clientId: 'harness-path-admin', bootstrapBrokers: bootstrap.split(','), connectTimeout: 2000, requestTimeout: 5000, retries: 1 });
  try {
    return await fn(admin);
  } finally {
    await admin.close().catch(() => undefined);
  }
}

describe('real-broker harness', () => {
  let mosq: Mosquitto;
  let kafka: Kafka;

  beforeAll(async () => {
    [mosq, kafka] = await Promise.all([startMosquitto({ persistence: true }), startKafka({ clientPaths: ['a'] })]);
  }, 60_000);

  afterAll(async () => {
    await stopAll();
    expect(livePids()).toEqual([]);
  });

  it('mosquitto delivers a QoS1 message', async () => {
    const sub = await mqtt.connectAsync(mosq.url, { clientId: 'harness-sub', reconnectPeriod: 0 });
    const pub = await mqtt.connectAsync(mosq.url, { clientId: 'harness-pub', reconnectPeriod: 0 });
    try {
      await sub.subscribeAsync('harness/t', { qos: 1 });
      const received = new Promise<{ topic: string; payload: string; qos: number }>((resolve) => {
        sub.once('message', (topic, payload, packet) => resolve({ topic, payload: payload.toString(), qos: packet.qos }));
      });
      await pub.publishAsync('harness/t', 'hello', { qos: 1 });
      expect(await received).toEqual({ topic: 'harness/t', payload: 'hello', qos: 1 });
    } finally {
      await Promise.all([sub.endAsync(), pub.endAsync()]);
    }
  });

  it('mosquitto keeps a persistent session queue across restart', async () => {
    const opts = { clientId: 'harness-durable', clean: false, reconnectPeriod: 0 } as const;
    const sub = await mqtt.connectAsync(mosq.url, opts);
    await sub.subscribeAsync('harness/q', { qos: 1 });
    await sub.endAsync();
    const pub = await mqtt.connectAsync(mosq.url, { clientId: 'harness-pub2', reconnectPeriod: 0 });
    await pub.publishAsync('harness/q', 'queued', { qos: 1 });
    await pub.endAsync();

    const oldPid = mosq.pid;
    await mosq.restart();
    expect(mosq.pid).not.toBe(oldPid);

    const sub2 = mqtt.connect(mosq.url, opts);
    try {
      const msg = await new Promise<string>((resolve, reject) => {
        sub2.once('message', (_t, payload) => resolve(payload.toString()));
        sub2.once('error', reject);
      });
      expect(msg).toBe('queued');
    } finally {
      await sub2.endAsync();
    }
  });

  it('kafka: connect() sets the producer up ahead of its first send; with no Kafka it resolves and logs at debug only', async () => {
    await kafka.createTopic('harness-connect', 1);
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
    const cfg = { brokers: [kafka.bootstrap], clientId: 'harness-connect', workers: 1, lingerMs: 0, autoCreateTopics: false, batchMaxMessages: 100, replayBatchMaxMessages: 100, batchMaxBytes: 100_000, writeTimeoutMs: 10_000, deliveryTimeoutMs: 30_000, connectTimeoutMs: 2000, compression: 'none' as const };
    const notSetUp = () => lines.filter((l) => /not set up before its first write/.test(l.msg));
    const factory = createKafkaFactory(cfg, { logger });
    try {
      const c = factory.create('warm');
      await c.connect();
      expect(notSetUp()).toEqual([]);
      await c.send([{ topic: 'harness-connect', key: 'k', value: Buffer.from('v'), headers: {}, timestampMs: Date.now() }]);
    } finally {
      await factory.close();
    }
    expect((await kafka.readTopic('harness-connect', { expected: 1 })).map((r) => r.value)).toEqual(['v']);

    const dead = createKafkaFactory({ ...cfg, brokers: ['127.0.0.1:1'] }, { logger });
    try {
      await dead.create('warm').connect(); // resolves, does not throw
      expect(notSetUp()).toHaveLength(1);
      expect(notSetUp()[0]!.level).toBe(20); // debug: send() reports the fault
    } finally {
      await dead.close();
    }
  });

  it('kafka: produce with the bridge\'s client, read back with kcat, survive stop/start', async () => {
    await kafka.createTopic('harness-topic', 1);
    const factory = createKafkaFactory(
      { brokers: [kafka.bootstrap], clientId: 'harness-test', workers: 1, lingerMs: 0, autoCreateTopics: false, batchMaxMessages: 100, replayBatchMaxMessages: 100, batchMaxBytes: 100_000, writeTimeoutMs: 10_000, deliveryTimeoutMs: 30_000, connectTimeoutMs: 5000, compression: 'none' },
      { logger: pino({ level: 'silent' }) },
    );
    try {
      await factory
        .create('harness')
        .send([1, 2, 3].map((i) => ({ topic: 'harness-topic', key: `k${i}`, value: Buffer.from(`v${i}`), headers: { 'x-seq': String(i), 'x-src': 'test' }, timestampMs: Date.now() })));
    } finally {
      await factory.close();
    }

    const check = (records: Awaited<ReturnType<Kafka['readTopic']>>): void => {
      expect(records.map((r) => [r.partition, r.offset, r.key, r.value, r.headers])).toEqual([
        [0, 0, 'k1', 'v1', { 'x-seq': '1', 'x-src': 'test' }],
        [0, 1, 'k2', 'v2', { 'x-seq': '2', 'x-src': 'test' }],
        [0, 2, 'k3', 'v3', { 'x-seq': '3', 'x-src': 'test' }],
      ]);
      for (const r of records) {
        expect(r.topic).toBe('harness-topic');
        expect(r.timestamp).toBeGreaterThan(0);
      }
    };
    check(await kafka.readTopic('harness-topic', { expected: 3 }));
    expect(await kafka.endOffsets('harness-topic')).toEqual({ 0: 3 });

    const oldPid = kafka.pid;
    await kafka.stop();
    expect(kafka.running).toBe(false);
    await kafka.start();
    expect(kafka.pid).not.toBe(oldPid);
    check(await kafka.readTopic('harness-topic', { expected: 3 }));
    expect(await kafka.endOffsets('harness-topic')).toEqual({ 0: 3 });
  });

  it('kafka: a client path keeps clients behind its proxy, and goes silent and back on demand', async () => {
    await kafka.createTopic('harness-path', 1);
    const path = kafka.path('a');
    const proxyPort = path.proxies.get(1)!.port;
    // Metadata asked through the path names the proxy, so a client that follows it stays behind it.
    const md = await withAdminAt(path.bootstrap, (admin) => admin.metadata({ topics: ['harness-path'], forceUpdate: true }));
    expect([...md.brokers.values()].map((b) => b.port)).toEqual([proxyPort]);

    const cfg = { brokers: [path.bootstrap], clientId: 'harness-path', workers: 1, lingerMs: 0, autoCreateTopics: false, batchMaxMessages: 100, replayBatchMaxMessages: 100, batchMaxBytes: 100_000, writeTimeoutMs: 4000, deliveryTimeoutMs: 30_000, connectTimeoutMs: 1000, compression: 'none' as const };
    const factory = createKafkaFactory(cfg, { logger: pino({ level: 'silent' }) });
    try {
      const c = factory.create('path');
      const rec = (v: string) => [{ topic: 'harness-path', key: 'k', value: Buffer.from(v), headers: {}, timestampMs: Date.now() }];
      await c.send(rec('before'));
      path.blackhole();
      const t0 = Date.now();
      await expect(c.send(rec('during'))).rejects.toThrow();
      // Silent, not refused: the send waited for its timeout instead of failing at once.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
      // The direct listener is not affected.
      expect(await kafka.endOffsets('harness-path')).toEqual({ 0: 1 });
      path.heal();
      await c.send(rec('after'));
    } finally {
      await factory.close();
    }
    const values = (await kafka.readTopic('harness-path', { expected: 2 })).map((r) => r.value);
    expect(values[0]).toBe('before');
    expect(values).toContain('after');
  });
});
