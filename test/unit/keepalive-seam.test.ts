import { createRequire } from 'node:module';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { installKeepaliveSeam } from '../../src/mqtt/keepalive-seam.js';
import { FakeBroker } from './fake-broker.js';

/**
 * Pins the private MQTT.js keepalive behaviour the keepalive seam relies on (mqtt 5.16.0,
 * version pinned in package.json; see test/unit/puback-seam.test.ts). If an upgrade changes how
 * keepalive timeouts are raised, or starts reading PINGRESPs while a message callback is held,
 * these tests fail and the seam has to be revisited.
 */
const require = createRequire(import.meta.url);
type Timer = { set(cb: () => void, ms: number): number; clear(id: number): void };
const KeepaliveManager = (require('mqtt/lib/KeepaliveManager') as { default: new (client: unknown, variant: Timer) => { reschedule(): void; destroy(): void } }).default;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const clients: MqttClient[] = [];
const brokers: FakeBroker[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.end(true);
  for (const b of brokers.splice(0)) await b.close();
});

/** A real MQTT.js client against the fake broker, keepalive 1 s, holding handleMessage's callback when told to. */
async function connected(opts: { seam?: boolean } = {}) {
  const broker = await FakeBroker.start();
  brokers.push(broker);
  const client = mqtt.connect(broker.url, { keepalive: 1, reconnectPeriod: 0, clean: false, clientId: 'ka', manualConnect: true, protocolVersion: 5 });
  clients.push(client);
  let hold = false;
  const held: (() => void)[] = [];
  const handled: string[] = [];
  (client as unknown as { handleMessage: (p: IPublishPacket, cb: () => void) => void }).handleMessage = (p, cb) => {
    handled.push(p.topic);
    if (hold) held.push(cb);
    else cb();
  };
  const seam = opts.seam ? installKeepaliveSeam(client, () => held.length > 0) : undefined;
  const closes: number[] = [];
  client.on('close', () => closes.push(Date.now()));
  client.on('error', () => undefined);
  client.connect();
  await new Promise<void>((r) => client.once('connect', () => r()));
  return {
    broker,
    client,
    seam,
    handled,
    closes,
    setHold: (h: boolean) => (hold = h),
    releaseAll: () => {
      hold = false;
      for (const cb of held.splice(0)) cb();
    },
  };
}

describe('keepalive seam (mqtt version pinned)', () => {
  it('MQTT.js: the keepalive manager pings on its 2nd tick (1 × keepalive) and times out on its 3rd (1.5 ×) unless rescheduled', () => {
    const timers: (() => void)[] = [];
    const intervals: number[] = [];
    const calls: string[] = [];
    const fakeClient = { keepalive: 10, log: () => undefined, sendPing: () => calls.push('ping'), onKeepaliveTimeout: () => calls.push('timeout') };
    const km = new KeepaliveManager(fakeClient, {
      set: (cb, ms) => (intervals.push(ms), timers.push(cb)),
      clear: () => undefined,
    });
    expect(intervals).toEqual([5000]); // ticks every keepalive / 2
    const tickLatest = () => timers[timers.length - 1]!();
    tickLatest();
    expect(calls).toEqual([]);
    tickLatest();
    expect(calls).toEqual(['ping']);
    tickLatest();
    expect(calls).toEqual(['ping', 'timeout']);
    km.reschedule(); // what a PINGRESP (or an ack) does: the count starts over
    tickLatest();
    tickLatest();
    expect(calls).toEqual(['ping', 'timeout', 'ping']);
    km.destroy();
  });

  it('MQTT.js: while a message callback is held no PINGRESP is processed, and the client drops a healthy connection after 1.5 × keepalive', async () => {
    const t = await connected();
    t.setHold(true);
    t.broker.conn.publish('a/1', 'x');
    const t0 = Date.now();
    await sleep(2600);
    // The broker answered every PINGREQ; the client did not read the answers and gave up.
    expect(t.broker.packets('pingreq').length).toBeGreaterThanOrEqual(1);
    expect(t.closes.length).toBeGreaterThanOrEqual(1);
    expect(t.closes[0]! - t0).toBeLessThan(2600);
    t.releaseAll();
  });

  it('with the seam: intake held for 3 × keepalive keeps the connection, PINGREQs go out at least once per keepalive, and the backlog is processed afterwards', async () => {
    const t = await connected({ seam: true });
    t.setHold(true);
    t.broker.conn.publish('a/1', 'x');
    t.broker.conn.publish('a/2', 'y');
    const t0 = Date.now();
    await sleep(3200);
    expect(t.closes).toEqual([]);
    expect(t.client.connected).toBe(true);
    expect(t.broker.conns.length).toBe(1);
    expect(t.seam!.extended).toBeGreaterThanOrEqual(1);
    // The broker heard from us at least once per keepalive (its own limit is 1.5 ×).
    const pings = t.broker.received.filter((r) => r.packet.cmd === 'pingreq' && r.atMs >= t0).map((r) => r.atMs);
    expect(pings.length).toBeGreaterThanOrEqual(2);
    const gaps = [pings[0]! - t0, ...pings.slice(1).map((p, i) => p - pings[i]!)];
    expect(Math.max(...gaps)).toBeLessThan(1400);
    expect(t.handled).toEqual(['a/1']);
    t.releaseAll();
    await sleep(100);
    expect(t.handled).toEqual(['a/1', 'a/2']);
    await sleep(1600); // the queued PINGRESPs were read: no timeout once reading again
    expect(t.closes).toEqual([]);
  });

  it('with the seam: a broker that stops answering while we read is still detected (connection dropped after 1.5 × keepalive)', async () => {
    const t = await connected({ seam: true });
    t.broker.answerPings = false;
    const t0 = Date.now();
    await sleep(2600);
    expect(t.closes.length).toBe(1);
    expect(t.closes[0]! - t0).toBeLessThan(2600);
    expect(t.seam!.extended).toBe(0);
  });

  it('refuses a client without the private hooks', () => {
    expect(() => installKeepaliveSeam({} as never, () => false)).toThrowError(/pinned mqtt version/);
  });
});
