import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { createMqttSource } from '../../src/mqtt/source.js';
import { subscriptionsKey } from '../../src/mqtt/subscriptions.js';
import type { InboundMessage, MqttSource } from '../../src/mqtt/types.js';
import { FakeBroker } from './fake-broker.js';
import { MemoryState } from './fakes.js';

/**
 * The MQTT source with the real MQTT.js client against a scriptable broker (test/unit/fake-broker.ts):
 * PUBACK ownership per connection, graceful stop, back-pressure without disconnects, and
 * subscriptions that follow the configuration.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sources: MqttSource[] = [];
const brokers: FakeBroker[] = [];

afterEach(async () => {
  for (const s of sources.splice(0)) await s.close(Date.now() + 500).catch(() => undefined);
  for (const b of brokers.splice(0)) await b.close();
});

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

function mqttConfig(url: string, over: Partial<Config['mqtt']> = {}): Config['mqtt'] {
  return {
    url,
    topics: ['sensors/#'],
    clientId: 'bridge-1',
    qos: 1,
    protocolVersion: 5,
    sessionExpiryS: 3600,
    keepaliveS: 60,
    reconnectMs: 100,
    maxInFlight: 1000,
    maxInFlightBytes: 1 << 26,
    readAheadMessages: 0,
    readAheadMaxAgeMs: 1000,
    removedFilterPolicy: 'dead_letter',
    ...over,
  };
}

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** Settles every delivered message until `n` have been delivered, then waits for their `n` PUBACKs. */
async function settleUntil(h: { delivered: InboundMessage[]; source: MqttSource }, broker: FakeBroker, n: number): Promise<void> {
  const settleAll = () => h.delivered.forEach((m) => h.source.settle(m.seq));
  while (h.delivered.length < n) {
    settleAll();
    await sleep(10);
  }
  settleAll();
  await until(() => broker.packets('puback').length === n, `${n} PUBACKs`);
}

function harness(broker: FakeBroker, over: Partial<Config['mqtt']> = {}, opts: { state?: MemoryState; settle?: 'now' | 'manual' } = {}) {
  const logs: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
        cb();
      },
    }),
  );
  const delivered: InboundMessage[] = [];
  const telemetry = { mqttState: () => undefined, mqttReconnect: () => reconnects++, mqttRedelivered: () => undefined };
  let reconnects = 0;
  let source: MqttSource;
  const state = opts.state ?? new MemoryState();
  source = createMqttSource(mqttConfig(broker.url, over), {
    logger,
    telemetry,
    state,
    onMessage: (m) => {
      delivered.push(m);
      if (opts.settle !== 'manual') source.settle(m.seq);
    },
  });
  sources.push(source);
  return { source, delivered, logs, state, reconnects: () => reconnects };
}

/** Packet commands the broker read on connection `conn`, in order, with PUBACK ids. */
const wire = (b: FakeBroker, conn: number): string[] =>
  b.received.filter((r) => r.conn === conn).map((r) => (r.packet.cmd === 'puback' ? `puback:${r.packet.messageId}` : r.packet.cmd));

describe('MQTT source: PUBACKs belong to the connection the PUBLISH came on', () => {
  it('acknowledges messages a present session delivers right behind the CONNACK (before MQTT.js emits connect)', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    broker.sessions.set('bridge-1', new Map([['sensors/#', 1]]));
    broker.onConnect = (c) => {
      for (let i = 0; i < 5; i++) c.publish(`sensors/${i}`, 'queued');
    };
    const h = harness(broker);
    await h.source.start();
    await until(() => broker.packets('puback').length === 5, '5 PUBACKs');
    expect(h.delivered.map((m) => m.topic)).toEqual(['sensors/0', 'sensors/1', 'sensors/2', 'sensors/3', 'sensors/4']);
    expect(broker.packets('puback').map((p) => p.messageId)).toEqual([1, 2, 3, 4, 5]);
    expect(h.source.unacked).toBe(0);
  });
});

describe('MQTT source: graceful stop', () => {
  it('writes every PUBACK released before close() ahead of DISCONNECT, with a PINGREQ barrier between', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker, {}, { settle: 'manual' });
    await h.source.start();
    for (let i = 0; i < 30; i++) broker.conn.publish(`sensors/${i}`, 'x');
    await until(() => h.delivered.length === 30, '30 delivered');
    // Settled in the same tick as close(): their PUBACKs are still queued in the seam.
    h.source.stopIntake();
    for (const m of h.delivered) h.source.settle(m.seq);
    await h.source.close(Date.now() + 3000);
    const w = wire(broker, 0);
    const ids = Array.from({ length: 30 }, (_, i) => `puback:${i + 1}`);
    const tail = w.slice(w.indexOf('puback:1'));
    expect(tail).toEqual([...ids, 'pingreq', 'disconnect']);
    expect(h.logs.filter((l) => /could not confirm/.test(l.msg))).toEqual([]);
  });

  it('hands no message over after stopIntake(), leaves them unacknowledged, and logs their count once (info)', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker);
    await h.source.start();
    broker.conn.publish('sensors/before', 'x');
    await until(() => h.delivered.length === 1, 'first delivered');
    h.source.stopIntake();
    for (let i = 0; i < 10; i++) broker.conn.publish(`sensors/late-${i}`, 'x');
    for (let i = 0; i < 3; i++) broker.conn.publish(`sensors/late-qos0-${i}`, 'x', 0);
    await sleep(100);
    await h.source.close(Date.now() + 3000);
    expect(h.delivered.map((m) => m.topic)).toEqual(['sensors/before']);
    // Only the first message was acknowledged; the late ones are left for redelivery.
    expect(broker.packets('puback').map((p) => p.messageId)).toEqual([1]);
    expect(h.source.leftForRedelivery).toBe(10);
    const late = h.logs.filter((l) => /after intake stopped/.test(l.msg));
    // QoS 0 is not redelivered: those are said to be gone, at warn, not counted as waiting.
    expect(late.map((l) => [l.level, l.messages, /QoS 0/.test(l.msg)])).toEqual([
      [30, 10, false],
      [40, 3, true],
    ]);
  });

  it('does not wait long for a broker that never answers the barrier PINGREQ, and says so', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker);
    await h.source.start();
    broker.answerPings = false;
    const t0 = Date.now();
    await h.source.close(Date.now() + 600);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(h.logs.filter((l) => /could not confirm/.test(l.msg))).toHaveLength(1);
    expect(wire(broker, 0).slice(-2)).toEqual(['pingreq', 'disconnect']);
  });
});

describe('MQTT source: back-pressure without disconnects', () => {
  it('holds intake at MAX_IN_FLIGHT_MESSAGES for 3 × keepalive without losing the connection, says why, then drains', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker, { keepaliveS: 1, maxInFlight: 3 }, { settle: 'manual' });
    await h.source.start();
    for (let i = 0; i < 10; i++) broker.conn.publish(`sensors/${i}`, 'x');
    await until(() => h.delivered.length === 3, 'the bound reached');
    expect(h.source.pauseReason).toBe('in_flight_bound');
    await sleep(3200);
    expect(h.delivered.length).toBe(3);
    expect(broker.conns.length).toBe(1);
    expect(h.reconnects()).toBe(0);
    expect(h.source.state).toBe('subscribed');
    expect(broker.packets('pingreq').length).toBeGreaterThanOrEqual(2);
    // Settle as they come: everything drains on the same connection.
    await settleUntil(h, broker, 10);
    expect(broker.packets('puback').map((p) => p.messageId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(h.source.pauseReason).toBeUndefined();
    expect(broker.conns.length).toBe(1);
    expect(h.logs.filter((l) => l.level >= 40)).toEqual([]);
  });
});

describe('MQTT source: the read-ahead bound (READ_AHEAD_MESSAGES)', () => {
  it('stops reading at READ_AHEAD_MESSAGES while Kafka keeps up, and reads on as soon as messages settle', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker, { maxInFlight: 20, readAheadMessages: 4, readAheadMaxAgeMs: 60_000 }, { settle: 'manual' });
    await h.source.start();
    for (let i = 0; i < 12; i++) broker.conn.publish(`sensors/${i}`, 'x');
    await until(() => h.delivered.length === 4, 'the read-ahead bound reached');
    await sleep(300);
    expect(h.delivered.length).toBe(4);
    expect(h.source.pauseReason).toBe('read_ahead_bound');
    // Two settle: two more are read, no more.
    h.source.settle(h.delivered[0]!.seq);
    h.source.settle(h.delivered[1]!.seq);
    await until(() => h.delivered.length === 6, 'two more read');
    await sleep(200);
    expect(h.delivered.length).toBe(6);
    await settleUntil(h, broker, 12);
    expect(broker.packets('puback').map((p) => p.messageId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(h.source.pauseReason).toBeUndefined();
  });

  it('lifts once the oldest message has waited READ_AHEAD_MAX_AGE_MS with nothing settling (Kafka silent): MAX_IN_FLIGHT_MESSAGES holds then', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker, { maxInFlight: 10, readAheadMessages: 3, readAheadMaxAgeMs: 400 }, { settle: 'manual' });
    await h.source.start();
    for (let i = 0; i < 15; i++) broker.conn.publish(`sensors/${i}`, 'x');
    await until(() => h.delivered.length === 3, 'the read-ahead bound reached');
    const t0 = Date.now();
    await sleep(150);
    expect(h.delivered.length).toBe(3);
    // Nothing settles: the timer alone lets intake read on, up to the in-flight bound.
    await until(() => h.delivered.length === 10, 'read on to MAX_IN_FLIGHT_MESSAGES', 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    await sleep(300);
    expect(h.delivered.length).toBe(10);
    expect(h.source.pauseReason).toBe('in_flight_bound');
    // Kafka answers again: everything drains, PUBACKs in order, on the same connection.
    await settleUntil(h, broker, 15);
    expect(broker.packets('puback').map((p) => p.messageId)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(broker.conns.length).toBe(1);
    expect(h.logs.filter((l) => l.level >= 40)).toEqual([]);
  });

  it('a hold at MAX_IN_FLIGHT_MESSAGES that settles down to the read-ahead bound is lifted by age when nothing more settles', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker, { maxInFlight: 6, readAheadMessages: 3, readAheadMaxAgeMs: 300 }, { settle: 'manual' });
    await h.source.start();
    for (let i = 0; i < 12; i++) broker.conn.publish(`sensors/${i}`, 'x');
    // The read-ahead lifts after 300 ms, then intake stops at 6.
    await until(() => h.delivered.length === 6, 'the in-flight bound reached', 3000);
    expect(h.source.pauseReason).toBe('in_flight_bound');
    // The three oldest settle, the first of them last (another partition's batch came back first):
    // 3 in flight, and the oldest left was read a moment ago, so the read-ahead bound holds now.
    // Nothing settles after that (Kafka silent): its age alone must let intake read on.
    for (const i of [2, 1, 0]) h.source.settle(h.delivered[i]!.seq);
    expect(h.source.pauseReason).toBe('read_ahead_bound');
    const t0 = Date.now();
    await sleep(100);
    expect(h.delivered.length).toBe(6);
    await until(() => h.delivered.length === 9, 'read on to the in-flight bound again', 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(h.source.pauseReason).toBe('in_flight_bound');
    await settleUntil(h, broker, 12);
  });

  it('is off with READ_AHEAD_MESSAGES=0: only MAX_IN_FLIGHT_MESSAGES holds', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const h = harness(broker, { maxInFlight: 8, readAheadMessages: 0, readAheadMaxAgeMs: 60_000 }, { settle: 'manual' });
    await h.source.start();
    for (let i = 0; i < 10; i++) broker.conn.publish(`sensors/${i}`, 'x');
    await until(() => h.delivered.length === 8, 'the in-flight bound reached');
    expect(h.source.pauseReason).toBe('in_flight_bound');
    for (const m of h.delivered) h.source.settle(m.seq);
    await until(() => h.delivered.length === 10, 'the rest');
  });
});

describe('MQTT source: unsubscribeAll (drain for scale-down)', () => {
  it('fails when the broker refuses a filter in its UNSUBACK (reason codes are no error to MQTT.js), and remembers only that filter', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    broker.refuseUnsubscribe.add('acc/b/#');
    const h = harness(broker, { topics: ['acc/a/#', 'acc/b/#'] });
    await h.source.start();
    await expect(h.source.unsubscribeAll()).rejects.toThrow(/refused to unsubscribe acc\/b\/# \(reason codes 0, 135\)/);
    expect([...broker.sessions.get('bridge-1')!.keys()]).toEqual(['acc/b/#']);
    expect(JSON.parse(h.state.get(subscriptionsKey('bridge-1'))!)).toEqual({ filters: { 'acc/b/#': 1 }, removed: [] });

    // Once the broker lets it go, a second call removes it and succeeds.
    broker.refuseUnsubscribe.clear();
    await h.source.unsubscribeAll();
    expect(broker.packets('unsubscribe').at(-1)).toMatchObject({ unsubscriptions: ['acc/a/#', 'acc/b/#'] });
    expect([...broker.sessions.get('bridge-1')!.keys()]).toEqual([]);
    expect(JSON.parse(h.state.get(subscriptionsKey('bridge-1'))!)).toEqual({ filters: {}, removed: [] });
  });
});

describe('MQTT source: subscriptions follow the configuration', () => {
  it('remembers what it subscribed; with a present session it unsubscribes removed filters after subscribing the configured ones', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const state = new MemoryState();
    const first = harness(broker, { topics: ['acc/a/#', 'acc/c/#'] }, { state });
    await first.source.start();
    expect(JSON.parse(state.get(subscriptionsKey('bridge-1'))!)).toEqual({ filters: { 'acc/a/#': 1, 'acc/c/#': 1 }, removed: [] });
    await first.source.close(Date.now() + 2000);

    const second = harness(broker, { topics: ['acc/b/#', 'acc/c/#'] }, { state });
    await second.source.start();
    await until(() => broker.packets('unsubscribe').length === 1, 'UNSUBSCRIBE');
    const w = wire(broker, 1);
    expect(w.indexOf('subscribe')).toBeLessThan(w.indexOf('unsubscribe'));
    expect(broker.packets('unsubscribe')[0]).toMatchObject({ unsubscriptions: ['acc/a/#'] });
    expect([...broker.sessions.get('bridge-1')!.keys()].sort()).toEqual(['acc/b/#', 'acc/c/#']);
    await until(() => JSON.parse(state.get(subscriptionsKey('bridge-1'))!).filters['acc/a/#'] === undefined, 'memory narrowed');
    expect(JSON.parse(state.get(subscriptionsKey('bridge-1'))!)).toEqual({ filters: { 'acc/b/#': 1, 'acc/c/#': 1 }, removed: ['acc/a/#'] });
    const changed = second.logs.filter((l) => /subscriptions changed/.test(l.msg));
    expect(changed).toHaveLength(1);
    expect(changed[0]).toMatchObject({ added: ['acc/b/#'], removed: ['acc/a/#'], policy: 'dead_letter' });
  });

  it('marks messages queued for a removed filter (arriving before and after the UNSUBACK), and no others', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const state = new MemoryState();
    state.set(subscriptionsKey('bridge-1'), JSON.stringify({ filters: { 'acc/a/#': 1, 'acc/b/#': 1 } }));
    broker.sessions.set('bridge-1', new Map([['acc/a/#', 1], ['acc/b/#', 1]]));
    broker.onConnect = (c) => {
      c.publish('acc/a/x', 'queued-1'); // right behind the CONNACK, before our UNSUBSCRIBE
      c.publish('acc/b/y', 'wanted');
      c.publish('acc/a/b/z', 'also wanted: acc/+/b/# is configured');
    };
    const h = harness(broker, { topics: ['acc/b/#', 'acc/+/b/#'] }, { state });
    await h.source.start();
    await until(() => broker.packets('unsubscribe').length === 1 && h.delivered.length === 3, 'unsubscribed');
    broker.conn.publish('acc/a/x', 'queued-2'); // was queued before the UNSUBACK, delivered after it
    await until(() => h.delivered.length === 4, 'fourth');
    expect(h.delivered.map((m) => [m.topic, m.removedFilter])).toEqual([
      ['acc/a/x', 'acc/a/#'],
      ['acc/b/y', undefined],
      ['acc/a/b/z', undefined],
      ['acc/a/x', 'acc/a/#'],
    ]);
    // Marked, not dropped: all four are PUBACKed once settled (the bridge applies the policy).
    await until(() => broker.packets('puback').length === 4, 'PUBACKs');
    expect(h.logs.filter((l) => /queued for a removed filter/.test(l.msg))).toHaveLength(1);
  });

  it('keeps marking a removed filter in later runs (its backlog may outlive a restart), until it is configured again', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const state = new MemoryState();
    state.set(subscriptionsKey('bridge-1'), JSON.stringify({ filters: { 'acc/b/#': 1 }, removed: ['acc/a/#'] }));
    broker.sessions.set('bridge-1', new Map([['acc/b/#', 1]]));
    broker.onConnect = (c) => c.publish('acc/a/x', 'left from before');
    const h = harness(broker, { topics: ['acc/b/#'] }, { state });
    await h.source.start();
    await until(() => h.delivered.length === 1, 'delivered');
    expect(h.delivered[0]!.removedFilter).toBe('acc/a/#');
    expect(broker.packets('unsubscribe')).toEqual([]);
    await h.source.close(Date.now() + 2000);

    broker.onConnect = (c) => c.publish('acc/a/x', 'wanted again');
    const again = harness(broker, { topics: ['acc/b/#', 'acc/a/#'] }, { state });
    await again.source.start();
    await until(() => again.delivered.length === 1, 'delivered');
    expect(again.delivered[0]!.removedFilter).toBeUndefined();
    expect(JSON.parse(state.get(subscriptionsKey('bridge-1'))!).removed).toEqual([]);
  });

  it('without a present session unsubscribes nothing and forgets the old filters', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const state = new MemoryState();
    state.set(subscriptionsKey('bridge-1'), JSON.stringify({ filters: { 'acc/a/#': 1 }, removed: ['old/#'] }));
    const h = harness(broker, { topics: ['acc/b/#'] }, { state });
    await h.source.start();
    expect(broker.packets('unsubscribe')).toEqual([]);
    expect(JSON.parse(state.get(subscriptionsKey('bridge-1'))!)).toEqual({ filters: { 'acc/b/#': 1 }, removed: [] });
  });

  it('is ready at once on a present session that already holds exactly the configured filters, even with its SUBACK stuck behind held messages', async () => {
    const broker = await FakeBroker.start();
    brokers.push(broker);
    const state = new MemoryState();
    state.set(subscriptionsKey('bridge-1'), JSON.stringify({ filters: { 'sensors/#': 1 }, removed: [] }));
    broker.sessions.set('bridge-1', new Map([['sensors/#', 1]]));
    broker.onConnect = (c) => {
      for (let i = 0; i < 5; i++) c.publish(`sensors/${i}`, 'backlog');
    };
    const h = harness(broker, { maxInFlight: 2 }, { state, settle: 'manual' });
    await h.source.start(); // resolves although the SUBACK cannot be read yet
    expect(h.source.state).toBe('subscribed');
    expect(h.delivered.length).toBe(2);
    expect(h.source.pauseReason).toBe('in_flight_bound');
  });
});
