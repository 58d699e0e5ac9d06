import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startBlackholeProxy, type BlackholeProxy } from '../harness/blackhole-proxy.js';

/** The harness proxy that makes a network path go silent (used by the Kafka/MQTT fault tests). */
describe('black-hole proxy', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0)) await c();
  });

  async function echo(): Promise<{ port: number; connections: () => number }> {
    let n = 0;
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      n++;
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.pipe(s);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    });
    return { port: (server.address() as net.AddressInfo).port, connections: () => n };
  }

  async function client(proxy: BlackholeProxy): Promise<{ socket: net.Socket; received: () => string; closed: () => boolean }> {
    const socket = net.connect({ port: proxy.port, host: '127.0.0.1' });
    let data = '';
    let closed = false;
    socket.on('data', (b) => (data += b.toString()));
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    await new Promise<void>((r) => socket.once('connect', () => r()));
    cleanup.push(() => void socket.destroy());
    return { socket, received: () => data, closed: () => closed };
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('forwards while open, holds everything silently while black-holed, and delivers it in order after heal', async () => {
    const target = await echo();
    const proxy = await startBlackholeProxy({ targetPort: target.port });
    cleanup.push(() => proxy.close());
    const c = await client(proxy);
    c.socket.write('a');
    await sleep(50);
    expect(c.received()).toBe('a');
    proxy.blackhole();
    c.socket.write('b');
    c.socket.write('c');
    await sleep(200);
    expect(c.received()).toBe('a');
    expect(c.closed()).toBe(false);
    // A connection opened while silent is accepted but not connected to the target.
    const late = await client(proxy);
    late.socket.write('x');
    await sleep(100);
    expect(target.connections()).toBe(1);
    expect(late.received()).toBe('');
    proxy.heal();
    await sleep(100);
    expect(c.received()).toBe('abc');
    expect(late.received()).toBe('x');
    expect(target.connections()).toBe(2);
  });

  it('refuse() resets open connections and new ones', async () => {
    const target = await echo();
    const proxy = await startBlackholeProxy({ targetPort: target.port });
    cleanup.push(() => proxy.close());
    const c = await client(proxy);
    proxy.refuse();
    await sleep(50);
    expect(c.closed()).toBe(true);
    const refused = net.connect({ port: proxy.port, host: '127.0.0.1' });
    const outcome = await new Promise<string>((r) => {
      refused.on('data', () => r('data'));
      refused.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'));
      refused.on('close', () => r('closed'));
    });
    expect(['ECONNRESET', 'closed']).toContain(outcome);
    proxy.heal();
    const again = await client(proxy);
    again.socket.write('z');
    await sleep(50);
    expect(again.received()).toBe('z');
  });
});
