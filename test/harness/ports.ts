import net from 'node:net';

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it for a
 * listen on port 0; we close the listener before returning). Another process could grab
 * it before the caller binds, but on a test machine that is rare enough.
 */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port as number;
}

/**
 * Returns `count` distinct free ports. All listeners are held open until every port is
 * known, so the OS cannot hand out the same port twice (which two sequential
 * `freePort()` calls could, in principle).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** True if something accepts a TCP connection on host:port right now. */
export function canConnect(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (ok: boolean): void => {
      socket.removeAllListeners();
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Polls until host:port accepts TCP connections. `isAlive` lets the caller abort early when
 * the server process has already died (no point waiting out the timeout then).
 */
export async function waitForPort(
  port: number,
  opts: { host?: string; timeoutMs?: number; isAlive?: () => boolean } = {},
): Promise<void> {
  const host = opts.host ?? '127.0.0.1';
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  for (;;) {
    if (await canConnect(port, host)) return;
    if (opts.isAlive && !opts.isAlive()) throw new Error(`process exited before ${host}:${port} accepted connections`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${host}:${port} to accept connections`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
