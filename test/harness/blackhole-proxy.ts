import net from 'node:net';
import { freePort } from './ports.js';

/**
 * A TCP proxy on 127.0.0.1 whose path can go silent, the way a network path does when a cable,
 * a switch or a firewall drops packets: `blackhole()` stops forwarding in both directions
 * without closing anything (no RST, no FIN; the peers' writes pile up as they would in TCP's
 * send buffers), and connections opened meanwhile are accepted but never answered (as after a
 * SYN that got through before the path died). `heal()` forwards everything held, in order, and
 * connects the held new connections: what TCP retransmission does when the path comes back
 * before either side timed out. Either side may give up meanwhile (its own timeouts); the proxy
 * then closes the other side of that connection.
 *
 * `refuse()` is the other failure: the path is up but nothing listens (connections reset).
 *
 * Put one in front of Mosquitto for a replica's MQTT path, or use the Kafka harness's
 * `clientPaths` (kafka.ts), which advertises a listener through one proxy per node so clients
 * that follow Kafka's metadata stay behind the proxy.
 */
export interface BlackholeProxy {
  readonly port: number;
  readonly state: 'open' | 'blackholed' | 'refusing';
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections currently open through the proxy. */
  readonly open: number;
  /** Stop forwarding, silently (nothing is closed or refused). */
  blackhole(): void;
  /** Reset every connection and refuse new ones until heal(). */
  refuse(): void;
  /** Forward again: held data flows, held connections are connected. */
  heal(): void;
  close(): Promise<void>;
}

export interface BlackholeProxyOptions {
  targetPort: number;
  targetHost?: string;
  /** Listen port; a free one if omitted. */
  port?: number;
}

/** Bytes held per direction while black-holed before the proxy stops reading that side (TCP would stop acking too). */
const MAX_HELD_BYTES = 8 * 1024 * 1024;

interface Pair {
  client: net.Socket;
  target: net.Socket | undefined;
  /** Data from the client not yet forwarded (before the target connected, or while black-holed). */
  up: Buffer[];
  upBytes: number;
  down: Buffer[];
  downBytes: number;
  clientEnded: boolean;
  targetEnded: boolean;
}

export async function startBlackholeProxy(opts: BlackholeProxyOptions): Promise<BlackholeProxy> {
  const port = opts.port ?? (await freePort());
  const pairs = new Set<Pair>();
  let state: BlackholeProxy['state'] = 'open';
  let accepted = 0;

  const destroy = (p: Pair): void => {
    p.client.destroy();
    p.target?.destroy();
    pairs.delete(p);
  };

  const flush = (p: Pair): void => {
    if (state !== 'open') return;
    if (p.target && !p.target.destroyed) {
      for (const b of p.up) p.target.write(b);
      p.up = [];
      p.upBytes = 0;
      if (p.clientEnded) p.target.end();
      if (p.client.isPaused()) p.client.resume();
    }
    if (!p.client.destroyed) {
      for (const b of p.down) p.client.write(b);
      p.down = [];
      p.downBytes = 0;
      if (p.targetEnded) p.client.end();
      if (p.target?.isPaused()) p.target.resume();
    }
  };

  const connectTarget = (p: Pair): void => {
    if (p.target) return;
    const t = net.connect({ port: opts.targetPort, host: opts.targetHost ?? '127.0.0.1' });
    p.target = t;
    t.setNoDelay(true);
    t.on('connect', () => flush(p));
    t.on('data', (chunk: Buffer) => {
      if (state === 'open' && p.down.length === 0 && !p.client.destroyed) {
        p.client.write(chunk);
        return;
      }
      p.down.push(chunk);
      p.downBytes += chunk.length;
      if (p.downBytes >= MAX_HELD_BYTES) t.pause();
    });
    t.on('end', () => {
      p.targetEnded = true;
      if (state === 'open' && p.down.length === 0) p.client.end();
    });
    t.on('error', () => destroy(p));
    t.on('close', () => {
      if (state === 'open') destroy(p);
    });
  };

  const server = net.createServer((client) => {
    if (state === 'refusing') {
      client.resetAndDestroy();
      return;
    }
    accepted++;
    client.setNoDelay(true);
    const p: Pair = { client, target: undefined, up: [], upBytes: 0, down: [], downBytes: 0, clientEnded: false, targetEnded: false };
    pairs.add(p);
    client.on('data', (chunk: Buffer) => {
      if (state === 'open' && p.target && !p.target.connecting && p.up.length === 0) {
        p.target.write(chunk);
        return;
      }
      p.up.push(chunk);
      p.upBytes += chunk.length;
      if (p.upBytes >= MAX_HELD_BYTES) client.pause();
    });
    client.on('end', () => {
      p.clientEnded = true;
      if (state === 'open' && p.target && p.up.length === 0) p.target.end();
    });
    client.on('error', () => destroy(p));
    // The client gave up (its own timeout): the target side of this connection goes too.
    client.on('close', () => destroy(p));
    if (state === 'open') connectTarget(p);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });

  return {
    port,
    get state() {
      return state;
    },
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    blackhole() {
      if (state === 'refusing') return;
      state = 'blackholed';
    },
    refuse() {
      state = 'refusing';
      for (const p of [...pairs]) {
        p.client.resetAndDestroy();
        p.target?.destroy();
        pairs.delete(p);
      }
    },
    heal() {
      state = 'open';
      for (const p of [...pairs]) {
        if (!p.target) connectTarget(p);
        else if (p.target.destroyed && !p.targetEnded) {
          // The target went away while the path was silent: what it sent before, then the reset.
          for (const b of p.down) p.client.write(b);
          p.client.end();
          pairs.delete(p);
        } else flush(p);
      }
    },
    async close() {
      for (const p of [...pairs]) destroy(p);
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
