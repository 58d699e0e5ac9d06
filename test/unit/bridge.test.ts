import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Bridge } from '../../src/bridge/bridge.js';
import { createDefaultMapping } from '../../src/bridge/mapping.js';
import { compileRoutes } from '../../src/bridge/routes/index.js';
import type { Transform } from '../../src/bridge/types.js';
import { recordBytes } from '../../src/bridge/records.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { fnv1a } from '../../src/kafka/hash.js';
import type { Replayer } from '../../src/kafka/replayer.js';
import type { KafkaClientFactory, KafkaProducerClient, OutRecord } from '../../src/kafka/types.js';
import type { InboundMessage, MqttSource, MqttState } from '../../src/mqtt/types.js';
import { Telemetry } from '../../src/observability/telemetry.js';
import { openSqliteSpool } from '../../src/spool/sqlite-spool.js';
import type { Spool } from '../../src/spool/types.js';
import { connectionError, FakeClient, metric, tooLarge } from './fakes.js';
import { DataType, encodePayload, metric as spMetric } from '../harness/sparkplug.js';

const logger = pino({ level: 'silent' });

// --- fakes -------------------------------------------------------------------------------

/** Shared record of what happened, across every fake. */
interface World {
  readonly events: string[];
  /** Records Kafka acknowledged, in acknowledgement order, across every client. */
  readonly delivered: OutRecord[];
}

class FakeFactory implements KafkaClientFactory {
  readonly clients = new Map<string, FakeClient>();
  constructor(private readonly world: World) {}
  create(name: string): KafkaProducerClient {
    const c = new FakeClient(name);
    c.onSend = () => this.world.events.push(`send:${name}`);
    // Kafka acknowledged: this is what consumers will see, in this order.
    c.onAck = (batch) => this.world.delivered.push(...batch);
    c.onClose = () => this.world.events.push(`client.close:${name}`);
    this.clients.set(name, c);
    return c;
  }
  async close(): Promise<void> {
    this.world.events.push('kafka.close');
  }
  workers(): FakeClient[] {
    return [...this.clients.values()].filter((c) => c.name.startsWith('worker-'));
  }
  all(): FakeClient[] {
    return [...this.clients.values()];
  }
  replay(): FakeClient {
    return this.clients.get('replay')!;
  }
}

class FakeSource implements MqttSource {
  state: MqttState = 'disconnected';
  readonly settled: number[] = [];
  paused = false;
  inFlight = 0;
  unacked = 0;
  inFlightBytes = 0;
  private openGate: (() => void) | undefined;
  /** When set, start() waits in 'connecting' until subscribe() is called. */
  holdSubscribe = false;
  /** Called on every settle(), to observe the rest of the bridge at that instant. */
  onSettle: ((seq: number) => void) | undefined;

  constructor(
    readonly deliver: (msg: InboundMessage) => void,
    private readonly world: World,
  ) {}

  async start(): Promise<void> {
    this.state = 'connecting';
    if (this.holdSubscribe) await new Promise<void>((r) => (this.openGate = r));
    this.state = 'subscribed';
  }
  subscribe(): void {
    this.openGate?.();
  }
  settle(seq: number): void {
    this.settled.push(seq);
    this.world.events.push(`settle:${seq}`);
    this.onSettle?.(seq);
  }
  pauseReason: MqttSource['pauseReason'] = undefined;
  pause(): void {
    this.paused = true;
    this.world.events.push('source.pause');
  }
  stopIntake(): void {
    this.paused = true;
    this.pauseReason = 'stopping';
    this.world.events.push('source.stopIntake');
  }
  resume(): void {
    this.paused = false;
  }
  leftForRedelivery = 0;
  async unsubscribeAll(): Promise<void> {
    this.world.events.push('source.unsubscribeAll');
  }
  /** The deadline close() was given. */
  closeDeadlineMs: number | undefined;
  async close(deadlineMs?: number): Promise<void> {
    this.state = 'closed';
    this.closeDeadlineMs = deadlineMs;
    this.world.events.push('source.close');
  }
}

// --- harness -----------------------------------------------------------------------------

const dirs: string[] = [];
const bridges: { bridge: Bridge; factory: FakeFactory }[] = [];

afterEach(async () => {
  vi.useRealTimers();
  for (const { bridge, factory } of bridges.splice(0)) {
    // Let Kafka answer so close() does not wait for its deadline.
    for (const c of factory.all()) {
      c.mode = 'ok';
      c.decide = undefined;
      c.script.length = 0;
      while (c.hung.length > 0) c.release();
    }
    await bridge.close();
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function harness(env: Record<string, string> = {}, transform?: Transform) {
  const dir = mkdtempSync(join(tmpdir(), 'bridge-test-'));
  dirs.push(dir);
  const config: Config = loadConfig(
    {
      MQTT_BROKER: 'localhost',
      MQTT_TOPIC: '#',
      KAFKA_BROKER: 'localhost',
      SPOOL_PATH: join(dir, 'spool.db'),
      HEALTH_PORT: '0',
      KAFKA_WORKERS: '2',
      // The replay timer never fires during a test; tests run the replayer explicitly.
      SPOOL_REPLAY_INTERVAL_MS: '600000',
      SPOOL_COMMIT_LINGER_MS: '0',
      SHUTDOWN_TIMEOUT_MS: '100',
      ...env,
    },
    { hostname: () => 'test-host' },
  );
  const world: World = { events: [], delivered: [] };
  const factory = new FakeFactory(world);
  const telemetry = new Telemetry(logger, { defaultMetrics: false });
  let spool: Spool | undefined;
  let source: FakeSource | undefined;
  const bridge = new Bridge({
    config,
    logger,
    telemetry,
    transform: transform ?? createDefaultMapping({
      topic: config.mapping.topic,
      separator: config.mapping.separator,
      format: config.mapping.format === 'envelope' ? 'envelope' : 'raw',
      subscriptions: config.mqtt.topics,
    }),
    kafka: factory,
    openSpool: (deps): Spool => {
      const real = openSqliteSpool(config.spool, {
        logger,
        ...deps,
        onCommitted: (es) => {
          world.events.push(`commit:${es.map((e) => e.seq).join(',')}`);
          deps.onCommitted(es);
        },
      });
      spool = {
        append: (es) => real.append(es),
        appendInDoubt: (es) => real.appendInDoubt(es),
        resolveInDoubt: (t, d) => real.resolveInDoubt(t, d),
        read: (a, l, m) => real.read(a, l, m),
        deleteRange: (a, b, m) => real.deleteRange(a, b, m),
        sentThrough: () => real.sentThrough(),
        markSent: (r) => real.markSent(r),
        deleteRows: (ids) => real.deleteRows(ids),
        expire: (n) => real.expire(n),
        flush: () => {
          world.events.push('spool.flush');
          real.flush();
        },
        stats: () => real.stats(),
        compact: () => real.compact(),
        takeHeld: () => real.takeHeld(),
        state: real.state,
        close: () => {
          world.events.push('spool.close');
          real.close();
        },
      };
      return spool;
    },
    createSource: (onMessage) => (source = new FakeSource(onMessage, world)),
  });
  bridges.push({ bridge, factory });
  let seq = 0;
  /** Delivers an MQTT message as the source would; returns it. */
  const receive = (topic: string, payload: Buffer | string, over: Partial<InboundMessage> = {}): InboundMessage => {
    const s = seq++;
    const msg: InboundMessage = {
      seq: s,
      id: `inst-${s.toString(36)}`,
      topic,
      payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload),
      qos: 1,
      retain: false,
      dup: false,
      receivedAtMs: 1_700_000_000_000 + s,
      ...over,
    };
    source!.deliver(msg);
    return msg;
  };
  const replayer = (): Replayer => (bridge as unknown as { replayer: Replayer }).replayer;
  return { bridge, config, factory, world, telemetry, receive, replayer, spool: () => spool!, source: () => source! };
}

/** Waits (macrotask turns, bounded by wall time) until `cond` holds. */
async function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

const sentRecords = (f: FakeFactory): OutRecord[] => f.all().flatMap((c) => c.batches.flat());
const hungAnywhere = (f: FakeFactory): number => f.all().reduce((n, c) => n + c.hung.length, 0);
const releaseAll = (f: FakeFactory): void => {
  for (const c of f.all()) while (c.hung.length > 0) c.release();
};

// --- tests -------------------------------------------------------------------------------

describe('bridge: settling (PUBACK) only once durable', () => {
  it('settles a QoS 1 message only after Kafka acknowledged its record, not before', async () => {
    const h = harness();
    for (const c of h.factory.workers()) c.mode = 'hang';
    const m = h.receive('sensors/a/temp', '21.5');
    await until(() => hungAnywhere(h.factory) === 1, 'the produce request');
    const rec = sentRecords(h.factory)[0]!;
    expect(rec).toMatchObject({ topic: 'sensors_a_temp', key: 'sensors/a/temp' });
    expect(rec.value.toString()).toBe('21.5');
    expect(h.source().settled).toEqual([]);

    releaseAll(h.factory);
    await until(() => h.source().settled.length > 0, 'settle');
    expect(h.source().settled).toEqual([m.seq]);
    expect(h.spool().stats()).toMatchObject({ rows: 0, pending: 0 });
  });

  it('with Kafka failing, settles the message only after the spool commit that holds it', async () => {
    const h = harness({ SPOOL_COMMIT_LINGER_MS: '1000' });
    for (const c of h.factory.workers()) c.mode = connectionError();
    const m = h.receive('sensors/a/temp', '21.5');
    await until(() => h.spool().stats().pending === 1, 'the record pending in the spool');
    expect(h.source().settled).toEqual([]); // failed at Kafka, not yet committed: not durable

    const rowsAtSettle: string[][] = [];
    h.source().onSettle = () => rowsAtSettle.push(h.spool().read(0, 10, 1e9).map((r) => r.id));
    h.spool().flush();
    expect(rowsAtSettle).toEqual([[m.id]]); // the row was committed (readable) when the message was settled
    expect(h.source().settled).toEqual([m.seq]);
    const events = h.world.events;
    expect(events.indexOf(`commit:${m.seq}`)).toBeGreaterThan(-1);
    expect(events.indexOf(`commit:${m.seq}`)).toBeLessThan(events.indexOf(`settle:${m.seq}`));
    const rows = h.spool().read(0, 10, 1e9);
    expect(rows.map((r) => r.id)).toEqual([m.id]);
    expect(rows[0]!.record.value.toString()).toBe('21.5');
    expect(h.world.delivered).toEqual([]);
  });

  it('settles a QoS 0 message too once durable (it holds a place in the PUBACK order)', async () => {
    const h = harness();
    const m = h.receive('sensors/a', 'x', { qos: 0 });
    await until(() => h.source().settled.length > 0, 'settle');
    expect(h.source().settled).toEqual([m.seq]);
  });
});

describe('bridge: dead letters', () => {
  it('dead-letters a message whose MQTT topic yields no legal Kafka topic, with dlq.reason and the original bytes, settling it only once that DLQ record is written', async () => {
    const h = harness();
    for (const c of h.factory.workers()) c.mode = 'hang';
    const payload = Buffer.from([0xff, 0x00, 0xfe, 0x41]);
    // '..' maps to '..', a name Kafka reserves; kafkaTopicFromMqtt returns undefined for it.
    const m = h.receive('..', payload);
    await until(() => hungAnywhere(h.factory) === 1, 'the DLQ produce request');
    const rec = sentRecords(h.factory)[0]!;
    expect(rec.topic).toBe('mqtt-dead-letter');
    expect(rec.key).toBe('..');
    expect(Buffer.compare(rec.value, payload)).toBe(0);
    expect(rec.headers).toMatchObject({ 'dlq.reason': 'bad_topic', 'dlq.route': 'default', 'mqtt.topic': '..', 'mqtt.message_id': m.id });
    expect(rec.headers['dlq.original_bytes']).toBeUndefined();
    expect(h.source().settled).toEqual([]);
    expect(await metric(h.telemetry, 'dead_letter_total', { reason: 'bad_topic' })).toBe(1);

    releaseAll(h.factory);
    await until(() => h.source().settled.length > 0, 'settle');
    expect(h.source().settled).toEqual([m.seq]);
    expect(h.world.delivered.map((r) => r.topic)).toEqual(['mqtt-dead-letter']);
  });

  it('uses DLQ_TOPIC for dead letters', async () => {
    const h = harness({ DLQ_TOPIC: 'my-dlq' });
    h.receive('..', 'x');
    await until(() => h.world.delivered.length === 1, 'the DLQ record');
    expect(h.world.delivered[0]!.topic).toBe('my-dlq');
  });

  it('dead-letters a record larger than KAFKA_MAX_MESSAGE_BYTES as too_large, its value cut to fit with dlq.original_bytes', async () => {
    const h = harness({ KAFKA_MAX_MESSAGE_BYTES: '1024' });
    for (const c of h.factory.workers()) c.mode = 'hang';
    const payload = Buffer.alloc(5000);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
    const m = h.receive('sensors/cam/frame', payload);
    await until(() => hungAnywhere(h.factory) === 1, 'the DLQ produce request');
    const rec = sentRecords(h.factory)[0]!;
    expect(rec.topic).toBe('mqtt-dead-letter');
    expect(rec.headers['dlq.reason']).toBe('too_large');
    expect(rec.headers['dlq.original_bytes']).toBe('5000');
    expect(rec.value.length).toBeGreaterThan(0);
    expect(rec.value.length).toBeLessThan(5000);
    expect(Buffer.compare(rec.value, payload.subarray(0, rec.value.length))).toBe(0); // a prefix of the original bytes
    expect(recordBytes(rec)).toBeLessThanOrEqual(1024);
    expect(h.source().settled).toEqual([]);
    expect(await metric(h.telemetry, 'dead_letter_total', { reason: 'too_large' })).toBe(1);

    releaseAll(h.factory);
    await until(() => h.source().settled.length > 0, 'settle');
    expect(h.source().settled).toEqual([m.seq]);
  });

  it('dead-letters a record Kafka itself refuses as too large (rejected_by_kafka) and settles it once the DLQ record is written', async () => {
    const h = harness();
    for (const c of h.factory.workers()) c.decide = (b) => (b.some((r) => r.topic !== 'mqtt-dead-letter') ? tooLarge() : 'ok');
    const m = h.receive('sensors/a', 'payload');
    await until(() => h.source().settled.length > 0, 'settle');
    expect(h.source().settled).toEqual([m.seq]);
    expect(h.world.delivered).toHaveLength(1);
    expect(h.world.delivered[0]).toMatchObject({ topic: 'mqtt-dead-letter', headers: { 'dlq.reason': 'rejected_by_kafka', 'mqtt.message_id': m.id } });
  });

  it('dead-letters a spooled record Kafka refuses as too large during replay, like the direct path does', async () => {
    const h = harness();
    for (const c of h.factory.workers()) c.mode = connectionError();
    const m = h.receive('sensors/a', 'payload');
    await until(() => h.spool().stats().rows === 1, 'the spooled row');
    for (const c of h.factory.all()) {
      c.mode = 'ok';
      c.decide = (b) => (b.some((r) => r.topic !== 'mqtt-dead-letter') ? tooLarge() : 'ok');
    }
    await h.replayer().runOnce();
    expect(h.spool().stats().rows).toBe(0);
    await until(() => h.world.delivered.length > 0, 'a dead letter', 200);
    expect(h.world.delivered[0]).toMatchObject({ topic: 'mqtt-dead-letter', headers: { 'dlq.reason': 'rejected_by_kafka', 'mqtt.message_id': m.id } });
  });

  it('keeps a refused spooled record in the spool when its dead letter cannot be written yet (Kafka gone again), and dead-letters it on the next run', async () => {
    const h = harness();
    for (const c of h.factory.workers()) c.mode = connectionError();
    const m = h.receive('sensors/a', 'payload');
    await until(() => h.spool().stats().rows === 1, 'the spooled row');
    let dlqUp = false;
    for (const c of h.factory.all()) {
      c.mode = 'ok';
      c.decide = (b) => (b.some((r) => r.topic !== 'mqtt-dead-letter') ? tooLarge() : dlqUp ? 'ok' : connectionError());
    }
    await h.replayer().runOnce();
    expect(h.spool().stats().rows).toBe(1);
    expect(h.world.delivered).toEqual([]);
    dlqUp = true;
    await h.replayer().runOnce();
    expect(h.spool().stats().rows).toBe(0);
    await until(() => h.world.delivered.length > 0, 'a dead letter', 200);
    expect(h.world.delivered[0]).toMatchObject({ topic: 'mqtt-dead-letter', headers: { 'dlq.reason': 'rejected_by_kafka', 'mqtt.message_id': m.id } });
  });
});

describe('bridge: record format', () => {
  it('puts the standard mqtt.* headers and the MQTT 5 user properties on every record; user properties never override ours', async () => {
    const h = harness();
    const m = h.receive('badges/b-17/scan', '{"door":3}', {
      retain: true,
      dup: true,
      userProperties: { site: 'hall-a', tags: ['x', 'y'], 'mqtt.topic': 'spoofed' },
    });
    await until(() => h.world.delivered.length === 1, 'the record');
    const rec = h.world.delivered[0]!;
    expect(rec.topic).toBe('badges_b-17_scan');
    expect(rec.key).toBe('badges/b-17/scan');
    expect(rec.timestampMs).toBe(m.receivedAtMs);
    expect(rec.headers).toEqual({
      site: 'hall-a',
      tags: 'x,y',
      'mqtt.topic': 'badges/b-17/scan',
      'mqtt.qos': '1',
      'mqtt.retain': 'true',
      'mqtt.dup': 'true',
      'mqtt.received_at': String(m.receivedAtMs),
      'mqtt.message_id': m.id,
    });
  });

  it('writes to KAFKA_TOPIC when set, keyed by the MQTT topic', async () => {
    const h = harness({ KAFKA_TOPIC: 'all-events' });
    h.receive('a/b', '1', { qos: 0 });
    await until(() => h.world.delivered.length === 1, 'the record');
    expect(h.world.delivered[0]).toMatchObject({ topic: 'all-events', key: 'a/b', headers: { 'mqtt.qos': '0', 'mqtt.retain': 'false', 'mqtt.dup': 'false' } });
  });
});

describe('bridge: Sparkplug state', () => {
  it('hands the spool\'s state store to the transform: a BIRTH is on disk before its record is sent, and later DATA resolves from it', async () => {
    const routes = compileRoutes({ routes: [{ name: 'spb', match: 'spBv1.0/#', topic: 'sparkplug', format: 'sparkplug' }] }, 'inline', { separator: '_', maxMessageBytes: 1_000_000 });
    const h = harness({}, routes);
    await h.bridge.start();
    const onDisk: (string | undefined)[] = [];
    for (const c of [...h.factory.workers()]) c.onSend = () => onDisk.push(h.spool().state.get('sparkplug/g/e1'));
    h.receive('spBv1.0/g/NBIRTH/e1', encodePayload({ seq: '0', metrics: [spMetric({ name: 'bdSeq', datatype: DataType.Int64 }, 0), spMetric({ name: 'speed', alias: 7, datatype: DataType.Float }, 1.5)] }));
    h.receive('spBv1.0/g/NDATA/e1', encodePayload({ seq: '1', metrics: [{ alias: '7', float_value: 2.5 }] }));
    await until(() => h.source().settled.length === 2, 'both settled');
    expect(onDisk.length).toBeGreaterThan(0);
    expect(onDisk.every((v) => v !== undefined && JSON.parse(v).kind === 'NBIRTH')).toBe(true);
    const data = sentRecords(h.factory).find((r) => r.headers['sparkplug.message_type'] === 'NDATA')!;
    expect(data.key).toBe('g/e1');
    expect(JSON.parse(data.value.toString()).metrics).toMatchObject([{ name: 'speed', alias: 7, value: 2.5 }]);
    expect(await metric(h.telemetry, 'sparkplug_messages_total', { group: 'g' })).toBe(2);
  });
});

describe('bridge: per-key order', () => {
  it('hands each key\'s records to Kafka in receive order, across batching, an outage, the spool and replay', async () => {
    const h = harness({ KAFKA_WORKERS: '2', KAFKA_BATCH_MAX_MESSAGES: '3' });
    const topics = ['site/1', 'site/2', 'site/3', 'site/4', 'site/5'];
    const received: InboundMessage[] = [];
    const burst = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const k = received.length;
        received.push(h.receive(topics[(k * 3 + (k >> 2)) % topics.length]!, `m${k}`));
      }
    };
    const workers = h.factory.workers();
    expect(workers.map((c) => c.name).sort()).toEqual(['worker-0', 'worker-1']);
    workers.sort((x, y) => x.name.localeCompare(y.name));
    // Both workers serve some of these keys.
    expect(new Set(topics.map((t) => fnv1a(t) % 2))).toEqual(new Set([0, 1]));

    // 1. Kafka slow: requests hang while more arrive, then answer.
    for (const c of workers) c.mode = 'hang';
    burst(12);
    await until(() => hungAnywhere(h.factory) > 0, 'requests');
    burst(12);
    await until(() => {
      releaseAll(h.factory); // answer each request as it comes
      return h.source().settled.length === 24;
    }, 'first 24 settled');

    // 2. Worker 0 loses Kafka: its records go to the spool; worker 1 keeps writing.
    workers[0]!.mode = connectionError();
    workers[1]!.mode = 'ok';
    burst(15);
    await until(() => h.source().settled.length === 39, 'the outage burst settled (Kafka or spool)');
    expect(h.bridge.ready().detail.spooling).toBe(true);
    burst(10); // more while spooling: behind the spooled ones
    await until(() => h.source().settled.length === 49, 'spooling burst settled');
    expect(h.spool().stats().rows).toBeGreaterThan(0);

    // 3. Kafka back: replay drains the spool and switches the worker back to direct.
    workers[0]!.mode = 'ok';
    await h.replayer().runOnce();
    expect(h.spool().stats().rows).toBe(0);
    expect(h.bridge.ready().detail.spooling).toBe(false);
    burst(10);
    await until(() => h.source().settled.length === 59, 'everything settled');

    // Every message was delivered exactly once (no failures after a record reached Kafka), and
    // each key's records reached Kafka in receive order.
    const delivered = h.world.delivered.map((r) => r.headers['mqtt.message_id']!);
    expect([...delivered].sort()).toEqual(received.map((m) => m.id).sort());
    for (const t of topics) {
      const want = received.filter((m) => m.topic === t).map((m) => m.id);
      const got = h.world.delivered.filter((r) => r.key === t).map((r) => r.headers['mqtt.message_id']);
      expect(got, `order of key ${t}`).toEqual(want);
    }
    expect(h.factory.replay().batches.length).toBeGreaterThan(0);
  });
});

describe('bridge: messages queued for a removed filter (MQTT_REMOVED_FILTER_POLICY)', () => {
  it('dead_letter (default): dead-letters them with reason unsubscribed, counts them, settles once the dead letter is written', async () => {
    const h = harness();
    for (const c of h.factory.workers()) c.mode = 'hang';
    const stale = h.receive('acc/a/x', 'old', { removedFilter: 'acc/a/#' });
    const wanted = h.receive('acc/b/x', 'new');
    await until(() => hungAnywhere(h.factory) >= 1 && sentRecords(h.factory).length === 2, 'both sent');
    const recs = sentRecords(h.factory);
    const dead = recs.find((r) => r.headers['mqtt.message_id'] === stale.id)!;
    expect(dead.topic).toBe('mqtt-dead-letter');
    expect(dead.value.toString()).toBe('old');
    expect(dead.headers).toMatchObject({ 'dlq.reason': 'unsubscribed', 'dlq.route': 'default', 'mqtt.topic': 'acc/a/x' });
    expect(dead.headers['dlq.detail']).toContain("'acc/a/#'");
    expect(recs.find((r) => r.headers['mqtt.message_id'] === wanted.id)!.topic).toBe('acc_b_x');
    expect(h.source().settled).toEqual([]);
    releaseAll(h.factory);
    await until(() => h.source().settled.length === 2, 'settled');
    expect(await metric(h.telemetry, 'dead_letter_total', { reason: 'unsubscribed' })).toBe(1);
    expect(await metric(h.telemetry, 'mqtt_removed_filter_messages_total', { policy: 'dead_letter' })).toBe(1);
  });

  it('forward: writes them like any other message, and counts them', async () => {
    const h = harness({ MQTT_REMOVED_FILTER_POLICY: 'forward' });
    const stale = h.receive('acc/a/x', 'old', { removedFilter: 'acc/a/#' });
    await until(() => h.source().settled.length === 1, 'settled');
    expect(h.world.delivered.map((r) => [r.topic, r.headers['mqtt.message_id']])).toEqual([['acc_a_x', stale.id]]);
    expect(await metric(h.telemetry, 'dead_letter_total')).toBe(0);
    expect(await metric(h.telemetry, 'mqtt_removed_filter_messages_total', { policy: 'forward' })).toBe(1);
  });

  it('logs no line per dead letter of reason unsubscribed (a backlog can be large; the source logs it once)', () => {
    const lines: string[] = [];
    const t = new Telemetry(pino({ level: 'debug' }, { write: (l: string) => void lines.push(l) }), { defaultMetrics: false });
    for (let i = 0; i < 100; i++) t.deadLettered('unsubscribed', { route: 'default', mqttTopic: 'acc/a/x', detail: 'd', id: String(i) });
    expect(lines).toEqual([]);
    t.deadLettered('invalid_json', { route: 'default', mqttTopic: 'acc/a/x', detail: 'd', id: 'x' });
    expect(lines).toHaveLength(1);
  });
});

describe('bridge: ready()', () => {
  it('says why intake is paused: the source\'s reason, or spool_blocked while the spool holds commits back', async () => {
    const h = harness({ SPOOL_MAX_BYTES: '1024', SPOOL_FULL_POLICY: 'block' });
    await h.bridge.start();
    expect(h.bridge.ready().detail).toMatchObject({ intakePaused: null });
    h.source().pauseReason = 'in_flight_bound';
    expect(h.bridge.ready()).toMatchObject({ ok: true, detail: { intakePaused: 'in_flight_bound' } });
    h.source().pauseReason = 'mqtt_write_blocked';
    expect(h.bridge.ready().detail).toMatchObject({ intakePaused: 'mqtt_write_blocked' });

    for (const c of h.factory.workers()) c.mode = connectionError();
    h.receive('sensors/a', Buffer.alloc(600, 1));
    await until(() => h.spool().stats().rows === 1, 'the first record spooled');
    h.receive('sensors/a', Buffer.alloc(600, 2)); // held back: the spool blocks
    await until(() => h.spool().stats().blocked, 'the spool blocked');
    h.source().pauseReason = 'in_flight_bound';
    expect(h.bridge.ready()).toMatchObject({ ok: false, detail: { intakePaused: 'spool_blocked', spoolAccepting: false } });
    h.source().pauseReason = 'in_flight_bytes_bound';
    expect(h.bridge.ready().detail).toMatchObject({ intakePaused: 'spool_blocked' });
  });

  it('is not ready before start() nor until the MQTT source is subscribed', async () => {
    const h = harness();
    expect(h.bridge.ready().ok).toBe(false);
    h.source().holdSubscribe = true;
    const started = h.bridge.start();
    expect(h.source().state).toBe('connecting');
    expect(h.bridge.ready()).toMatchObject({ ok: false, detail: { mqtt: 'connecting' } });
    h.source().subscribe();
    await started;
    expect(h.bridge.ready()).toMatchObject({ ok: true, detail: { mqtt: 'subscribed', kafkaWritable: true, spooling: false, spoolAccepting: true } });
  });

  it('stays ready while spooling as long as the spool accepts, and is not ready once the spool is blocked', async () => {
    const h = harness({ SPOOL_MAX_BYTES: '1024', SPOOL_FULL_POLICY: 'block' });
    await h.bridge.start();
    for (const c of h.factory.workers()) c.mode = connectionError();
    h.receive('sensors/a', Buffer.alloc(600, 1));
    await until(() => h.spool().stats().rows === 1, 'the first record spooled');
    expect(h.bridge.ready()).toMatchObject({ ok: true, detail: { spooling: true, kafkaWritable: false, spoolAccepting: true, spoolRows: 1 } });

    h.receive('sensors/a', Buffer.alloc(600, 2)); // does not fit in SPOOL_MAX_BYTES: held back
    await until(() => h.spool().stats().blocked, 'the spool blocked');
    expect(h.bridge.ready()).toMatchObject({ ok: false, detail: { spooling: true, kafkaWritable: false, spoolAccepting: false } });
    expect(h.source().settled).toEqual([0]); // the held-back record is not acknowledged
  });

  it('is not ready once close() has begun', async () => {
    const h = harness();
    await h.bridge.start();
    expect(h.bridge.ready().ok).toBe(true);
    const closing = h.bridge.close();
    expect(h.bridge.ready().ok).toBe(false);
    await closing;
    expect(h.bridge.ready().ok).toBe(false);
  });
});

describe('bridge: close()', () => {
  it('runs its steps in order: stop intake, map and write what is queued, close writers, flush the spool, disconnect MQTT, close the spool, close Kafka', async () => {
    const h = harness();
    await h.bridge.start();
    const m = h.receive('sensors/a', 'last words'); // queued for the transform loop, not yet mapped
    expect(sentRecords(h.factory)).toEqual([]);
    await h.bridge.close();
    const w = sentRecords(h.factory);
    expect(w.map((r) => r.headers['mqtt.message_id'])).toEqual([m.id]);
    const ev = h.world.events.filter((e) => !e.startsWith('client.close:replay'));
    const worker = h.factory.workers().find((c) => c.batches.length > 0)!.name;
    expect(ev).toEqual([
      'source.stopIntake',
      `send:${worker}`,
      `settle:${m.seq}`,
      'client.close:worker-0',
      'client.close:worker-1',
      'spool.flush',
      'source.close',
      'spool.close',
      'kafka.close',
    ]);
  });

  it('leaves records unacknowledged when a Kafka write still hangs at the deadline, and still disconnects', async () => {
    const h = harness({ SHUTDOWN_TIMEOUT_MS: '100', KAFKA_WORKERS: '1' });
    await h.bridge.start();
    h.factory.workers()[0]!.mode = 'hang';
    const a = h.receive('sensors/a', '1');
    await until(() => hungAnywhere(h.factory) === 1, 'in flight');
    const b = h.receive('sensors/a', '2');
    await until(() => (h.bridge as unknown as { pool: { queued: number } }).pool.queued === 1, 'queued');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const closing = h.bridge.close(); // deadline: now + max(SHUTDOWN_TIMEOUT_MS - 2000, 500) ms
    await vi.advanceTimersByTimeAsync(499);
    expect(h.world.events).not.toContain('source.close');
    expect(h.source().settled).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    const ev = h.world.events;
    // a is still in its produce request; b is queued behind it on the same key. Neither is
    // acknowledged or spooled: the broker redelivers both, in order, to the next session.
    expect(h.source().settled).toEqual([]);
    expect(ev).not.toContain(`commit:${b.seq}`);
    expect(ev).toContain('source.close');
    expect(ev.indexOf('source.close')).toBeLessThan(ev.indexOf('spool.close'));
    expect(a.seq).toBeLessThan(b.seq);
  });

  it('gives the MQTT step a deadline just short of SHUTDOWN_TIMEOUT_MS, to confirm the last PUBACKs before disconnecting', async () => {
    const h = harness({ SHUTDOWN_TIMEOUT_MS: '10000' });
    await h.bridge.start();
    const t0 = Date.now();
    await h.bridge.close();
    const d = h.source().closeDeadlineMs!;
    expect(d).toBeGreaterThanOrEqual(t0 + 9500);
    expect(d).toBeLessThanOrEqual(Date.now() + 9500);
  });

  it('is idempotent: a second call returns the same promise and runs no step twice', async () => {
    const h = harness();
    await h.bridge.start();
    const first = h.bridge.close();
    const second = h.bridge.close();
    expect(second).toBe(first);
    await first;
    expect(h.bridge.close()).toBe(first);
    await h.bridge.close();
    const count = (e: string): number => h.world.events.filter((x) => x === e).length;
    expect(count('source.stopIntake')).toBe(1);
    expect(count('source.close')).toBe(1);
    expect(count('spool.close')).toBe(1);
    expect(count('kafka.close')).toBe(1);
  });
});
