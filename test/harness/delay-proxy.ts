import net from 'node:net';
import { freePort } from './ports.js';

/**
 * A TCP proxy on 127.0.0.1 that adds latency: every chunk is forwarded `delayMs` after it
 * arrived, in order, per direction. Put it between the bridge and Kafka to make the Kafka write
 * path slow without touching either (start Kafka with `advertised.listeners` pointing at the
 * proxy, so clients that follow metadata keep going through it). The delays can be changed
 * while connections are open.
 */
export interface DelayProxy {
  readonly port: number;
  /** Added to data flowing from clients to the target (requests). */
  upstreamDelayMs: number;
  /** Added to data flowing from the target back to clients (responses). */
  downstreamDelayMs: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

export interface DelayProxyOptions {
  targetPort: number;
  targetHost?: string;
  /** Listen port; a free one if omitted. */
  port?: number;
  upstreamDelayMs?: number;
  downstreamDelayMs?: number;
}

/** Bytes queued in one direction before the proxy stops reading from that side. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

export async function startDelayProxy(opts: DelayProxyOptions): Promise<DelayProxy> {
  const port = opts.port ?? (await freePort());
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const proxy: DelayProxy = {
    port,
    upstreamDelayMs: opts.upstreamDelayMs ?? 0,
    downstreamDelayMs: opts.downstreamDelayMs ?? 0,
    get accepted() {
      return accepted;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = net.createServer((client) => {
    accepted++;
    const target = net.connect({ port: opts.targetPort, host: opts.targetHost ?? '127.0.0.1' });
    for (const s of [client, target]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        target.destroy();
      });
    }
    delayedPipe(client, target, () => proxy.upstreamDelayMs);
    delayedPipe(target, client, () => proxy.downstreamDelayMs);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return proxy;
}

/** Forwards `from` → `to`, each chunk `delay()` ms after it arrived, in arrival order; ends `to` after the last chunk. */
function delayedPipe(from: net.Socket, to: net.Socket, delay: () => number): void {
  const queue: { due: number; chunk: Buffer }[] = [];
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const pump = (): void => {
    timer = undefined;
    const now = Date.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { chunk } = queue.shift()!;
      queued -= chunk.length;
      if (!to.destroyed) to.write(chunk);
    }
    if (queued < MAX_QUEUED_BYTES && from.isPaused()) from.resume();
    if (queue.length > 0) timer = setTimeout(pump, queue[0]!.due - now);
    else if (ended && !to.destroyed) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    const d = delay();
    if (d <= 0 && queue.length === 0) {
      if (!to.destroyed) to.write(chunk);
      return;
    }
    queue.push({ due: Date.now() + d, chunk });
    queued += chunk.length;
    if (queued >= MAX_QUEUED_BYTES) from.pause();
    timer ??= setTimeout(pump, Math.max(d, 0));
  });
  from.on('end', () => {
    ended = true;
    if (queue.length === 0 && !to.destroyed) to.end();
  });
}
