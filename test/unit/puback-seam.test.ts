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
  const c = client as unknown as { connected: boolean; _writePacket: (p: Record<string, unknown>, cb?: () => void) => void };
  c.connected = true;
  c._writePacket = (p, cb) => {
    written.push(p);
    cb?.();
  };
  return { client, written };
}

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

  it('with the seam, handleMessage calling back lets reading go on but writes no PUBACK', () => {
    const { client, written } = fakeConnectedClient();
    const seam = installPubackSeam(client);
    const c = client as unknown as { handleMessage: (p: IPublishPacket, cb: () => void) => void };
    c.handleMessage = (_p, cb) => cb();
    const done: number[] = [];
    handlePublish(client, publish(1), () => done.push(1));
    handlePublish(client, publish(2), () => done.push(2));
    expect(done).toEqual([1, 2]); // MQTT.js may process the next packet
    expect(written.filter((p) => p.cmd === 'puback')).toEqual([]);
    seam.sendPuback(1);
    seam.sendPuback(2);
    expect(written.map((p) => [p.cmd, p.messageId])).toEqual([
      ['puback', 1],
      ['puback', 2],
    ]);
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
