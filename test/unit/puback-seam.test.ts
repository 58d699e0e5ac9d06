import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import mqtt, { type IPublishPacket } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { installPubackSeam } from '../../src/mqtt/puback-seam.js';

/**
 * Pins the private MQTT.js behaviour the bridge's PUBACK seam relies on (DESIGN §4). If an
 * upgrade of `mqtt` changes how a QoS 1 PUBLISH is acknowledged, these tests fail before any
 * message could be acknowledged too early.
 */
const require = createRequire(import.meta.url);
const handlePublish = (require('mqtt/lib/handlers/publish') as { default: (c: unknown, p: IPublishPacket, done: () => void) => void }).default;

function fakeConnectedClient() {
  const client = mqtt.connect('mqtt://127.0.0.1:1', { manualConnect: true, protocolVersion: 5 });
  const written: Record<string, unknown>[] = [];
  const raw: Buffer[] = [];
  let full = false;
  const drains: (() => void)[] = [];
  const c = client as unknown as { connected: boolean; stream: unknown; _writePacket: (p: Record<string, unknown>, cb?: () => void) => void };
  c.connected = true;
  // MQTT.js writes packets through _writePacket; the seam writes raw PUBACK bytes to the stream.
  c._writePacket = (p, cb) => {
    written.push(p);
    cb?.();
  };
  c.stream = {
    write: (b: Buffer) => (raw.push(Buffer.from(b)), !full),
    once: (_ev: string, cb: () => void) => drains.push(cb),
  };
  return { client, written, raw, setFull: (f: boolean) => (full = f), drain: () => drains.splice(0).forEach((d) => d()) };
}

const tick = () => new Promise((r) => process.nextTick(r));

const publish = (messageId: number): IPublishPacket => ({
  cmd: 'publish',
  qos: 1,
  dup: false,
  retain: false,
  topic: 'badge/1',
  payload: Buffer.from('x'),
  messageId,
});

describe('PUBACK seam (mqtt version pinned)', () => {
  it('pins the exact mqtt version in package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
    const installed = (JSON.parse(readFileSync(require.resolve('mqtt/package.json'), 'utf8')) as { version: string }).version;
    expect(pkg.dependencies.mqtt).toMatch(/^\d+\.\d+\.\d+$/);
    expect(installed).toBe(pkg.dependencies.mqtt);
  });

  it('without the seam, MQTT.js writes the PUBACK as soon as handleMessage calls back', () => {
    const { client, written } = fakeConnectedClient();
    const c = client as unknown as { handleMessage: (p: IPublishPacket, cb: () => void) => void };
    let held: (() => void) | undefined;
    c.handleMessage = (_p, cb) => (held = cb);
    handlePublish(client, publish(7), () => undefined);
    expect(written).toEqual([]);
    held!();
    expect(written).toEqual([expect.objectContaining({ cmd: 'puback', messageId: 7 })]);
  });

  it('with the seam, handleMessage calling back lets reading go on but writes no PUBACK', async () => {
    const { client, written, raw } = fakeConnectedClient();
    const seam = installPubackSeam(client);
    const c = client as unknown as { handleMessage: (p: IPublishPacket, cb: () => void) => void };
    c.handleMessage = (_p, cb) => cb();
    const done: number[] = [];
    handlePublish(client, publish(1), () => done.push(1));
    handlePublish(client, publish(2), () => done.push(2));
    expect(done).toEqual([1, 2]); // MQTT.js may process the next packet
    expect(written.filter((p) => p.cmd === 'puback')).toEqual([]);
    await tick();
    expect(raw).toEqual([]);
    seam.sendPuback(1);
    seam.sendPuback(0x1234);
    await tick();
    // One write for both, in order: PUBACK (0x40), remaining length 2, packet id.
    expect(raw).toEqual([Buffer.from([0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x12, 0x34])]);
  });

  it('writes PUBACK bytes that MQTT.js itself parses as PUBACKs (3.1.1 and 5)', async () => {
    const mqttPacket = require('mqtt-packet') as { parser: (o: { protocolVersion: number }) => { on: (e: string, f: (p: { cmd: string; messageId: number }) => void) => void; parse: (b: Buffer) => void } };
    for (const protocolVersion of [4, 5]) {
      const { client, raw } = fakeConnectedClient();
      const seam = installPubackSeam(client);
      seam.sendPuback(7);
      seam.sendPuback(65535);
      await tick();
      const parsed: { cmd: string; messageId: number }[] = [];
      const p = mqttPacket.parser({ protocolVersion });
      p.on('packet', (x) => parsed.push({ cmd: x.cmd, messageId: x.messageId }));
      p.parse(Buffer.concat(raw));
      expect(parsed).toEqual([
        { cmd: 'puback', messageId: 7 },
        { cmd: 'puback', messageId: 65535 },
      ]);
    }
  });

  it('reports blocked while the socket buffer is full, and calls back when it drains', async () => {
    const { client, setFull, drain } = fakeConnectedClient();
    let unblocked = 0;
    const seam = installPubackSeam(client, () => unblocked++);
    setFull(true);
    seam.sendPuback(1);
    await tick();
    expect(seam.blocked).toBe(true);
    setFull(false);
    drain();
    expect(seam.blocked).toBe(false);
    expect(unblocked).toBe(1);
  });

  it('does not carry a full socket over to the next connection (its drain never comes)', async () => {
    const { client, setFull } = fakeConnectedClient();
    const seam = installPubackSeam(client);
    setFull(true);
    seam.sendPuback(1);
    await tick();
    expect(seam.blocked).toBe(true);
    (client as unknown as { stream: unknown }).stream = { write: () => true, once: () => undefined };
    expect(seam.blocked).toBe(false);
  });

  it('drops PUBACKs queued for a connection that has since been replaced', async () => {
    const { client, raw } = fakeConnectedClient();
    const seam = installPubackSeam(client);
    seam.sendPuback(1);
    (client as unknown as { stream: unknown }).stream = { write: () => true, once: () => undefined };
    await tick();
    expect(raw).toEqual([]);
  });

  it('leaves every other outgoing packet alone', () => {
    const { client, written } = fakeConnectedClient();
    installPubackSeam(client);
    (client as unknown as { _sendPacket: (p: object, cb?: () => void) => void })._sendPacket({ cmd: 'pingreq' });
    expect(written.map((p) => p.cmd)).toEqual(['pingreq']);
  });

  it('refuses a client without the private hooks', () => {
    expect(() => installPubackSeam({} as never)).toThrowError(/pinned mqtt version/);
  });
});

describe('PUBACK seam: graceful stop', () => {
  it('flush() writes the queued PUBACKs at once (not on the next tick) and resolves once the socket took them', async () => {
    const { client, raw } = fakeConnectedClient();
    const callbacks: (() => void)[] = [];
    (client as unknown as { stream: unknown }).stream = {
      write: (b: Buffer, cb?: () => void) => (raw.push(Buffer.from(b)), cb && callbacks.push(cb), true),
      once: () => undefined,
    };
    const seam = installPubackSeam(client);
    seam.sendPuback(1);
    seam.sendPuback(2);
    let flushed = false;
    const f = seam.flush().then(() => (flushed = true));
    expect(raw).toEqual([Buffer.from([0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x02])]); // synchronously
    await tick();
    expect(flushed).toBe(false); // the socket has not called back yet
    callbacks.splice(0).forEach((cb) => cb());
    await f;
    expect(flushed).toBe(true);
    await tick();
    expect(raw).toHaveLength(1); // the next-tick flush finds nothing left
    await seam.flush(); // nothing queued: resolves at once
  });

  it('writes nothing after stop() (a PUBACK after DISCONNECT is ignored by the broker)', async () => {
    const { client, raw } = fakeConnectedClient();
    const seam = installPubackSeam(client);
    seam.sendPuback(1);
    seam.stop();
    seam.sendPuback(2);
    await tick();
    await seam.flush();
    expect(raw).toEqual([]);
  });
});
