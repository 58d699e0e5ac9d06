import { readFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from './ports.js';
import { ManagedProcess, makeTempDir, repoRoot, tailFile } from './process.js';

export interface BridgeProcessOptions {
  /** Environment for the bridge (MQTT_BROKER, KAFKA_BROKER, …). HEALTH_PORT and SPOOL_PATH default to a free port and a temp dir. */
  env: Record<string, string>;
  logDir?: string;
  /** Wait for /readyz to answer 200 (default true). */
  waitReady?: boolean;
  /** Extra Node options before the script, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/p']. */
  nodeArgs?: string[];
}

/** One JSON line of the bridge's log (pino, level as its label). */
export interface BridgeLogLine {
  level: string;
  msg: string;
  fault?: string;
  [k: string]: unknown;
}

/** The bridge running as its own process (`node --import tsx src/cli.ts`), so tests can SIGKILL it. */
export interface BridgeProcess {
  readonly proc: ManagedProcess;
  readonly httpPort: number;
  readonly env: Record<string, string>;
  readonly logFile: string;
  /** Parsed /metrics: `name{labels}` → value. */
  metrics(): Promise<Map<string, number>>;
  /** Sum of a metric over all its label sets. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  readyz(): Promise<{ status: number; body: Record<string, unknown> }>;
  waitReady(timeoutMs?: number): Promise<void>;
  /** Polls until `pred` holds (or throws with the log tail). */
  waitFor(what: string, pred: () => Promise<boolean>, timeoutMs?: number): Promise<void>;
  /** The log's JSON lines so far (a line still being written, or cut by a kill, is left out). */
  logLines(): BridgeLogLine[];
}

export async function startBridgeProcess(opts: BridgeProcessOptions): Promise<BridgeProcess> {
  const logDir = opts.logDir ?? makeTempDir('bridge-');
  const httpPort = opts.env.HEALTH_PORT ? Number(opts.env.HEALTH_PORT) : await freePort();
  const env: Record<string, string> = {
    SPOOL_PATH: path.join(logDir, 'spool.db'),
    LOG_LEVEL: 'info',
    ...opts.env,
    HEALTH_PORT: String(httpPort),
    HEALTH_HOST: '127.0.0.1',
  };
  const logFile = path.join(logDir, 'bridge.log');
  // BRIDGE_DIST=1 runs the compiled build (what the image ships; `npm run build` first), else the sources through tsx.
  // The same V8 heap sizes as `npm start` and the image (see README "Memory").
  const heap = `--max-old-space-size=${process.env.BRIDGE_MAX_OLD_SPACE_MB ?? '160'}`;
  const semiMb = process.env.BRIDGE_SEMI_SPACE_MB ?? '16';
  const semi = [`--max-semi-space-size=${semiMb}`, `--min-semi-space-size=${semiMb}`];
  // Also as in the image: V8 does not decide to allocate in-flight messages' objects in the old generation.
  const gc = process.env.BRIDGE_PRETENURING === '1' ? [] : ['--no-allocation-site-pretenuring'];
  // BRIDGE_NODE_FLAGS replaces those defaults entirely (space-separated; bench/memory.ts compares flag sets).
  const flags = process.env.BRIDGE_NODE_FLAGS !== undefined ? process.env.BRIDGE_NODE_FLAGS.split(' ').filter(Boolean) : [heap, ...semi, ...gc];
  const node = [...flags, ...(opts.nodeArgs ?? [])];
  const args = process.env.BRIDGE_DIST === '1' ? [...node, path.join(repoRoot, 'dist', 'cli.js')] : [...node, '--import', 'tsx', path.join(repoRoot, 'src', 'cli.ts')];
  const proc = ManagedProcess.spawn(process.execPath, args, {
    name: 'bridge',
    logFile,
    cwd: repoRoot,
    // Only what the test sets, plus PATH/HOME: the developer's own MQTT_*/KAFKA_* must not leak in.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
  });
  const base = `http://127.0.0.1:${httpPort}`;
  const b: BridgeProcess = {
    proc,
    httpPort,
    env,
    logFile,
    async metrics() {
      const text = await (await fetch(`${base}/metrics`)).text();
      return parseMetrics(text);
    },
    async metric(name, labels = {}) {
      const text = await (await fetch(`${base}/metrics`)).text();
      // A labelled metric with no series yet prints only its # HELP / # TYPE lines: 0 then. A name
      // the bridge does not export at all is an error, not 0 (a misspelt name must fail the test).
      if (!declares(text, name)) throw new Error(`the bridge exports no metric ${name}`);
      const m = parseMetrics(text);
      let sum = 0;
      for (const [k, v] of m) {
        const [n, l = ''] = k.split('{');
        if (n !== name) continue;
        if (Object.entries(labels).every(([lk, lv]) => l.includes(`${lk}="${lv}"`))) sum += v;
      }
      return sum;
    },
    logLines() {
      const out: BridgeLogLine[] = [];
      for (const line of readFileSync(logFile, 'utf8').split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          out.push(JSON.parse(line) as BridgeLogLine);
        } catch {
          // a partial last line
        }
      }
      return out;
    },
    async readyz() {
      const r = await fetch(`${base}/readyz`);
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    },
    async waitReady(timeoutMs = 30_000) {
      await b.waitFor('bridge ready', async () => (await b.readyz()).status === 200, timeoutMs);
    },
    async waitFor(what, pred, timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      let last: unknown;
      while (Date.now() < end) {
        if (!proc.running) throw new Error(`bridge exited while waiting for ${what}\n${tailFile(logFile)}`);
        try {
          if (await pred()) return;
        } catch (err) {
          last = err;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`timed out waiting for ${what} (${String(last ?? '')})\n${tailFile(logFile)}`);
    },
  };
  if (opts.waitReady !== false) await b.waitReady();
  return b;
}

/** True when the exposition declares `name` (`# TYPE name …`), or it is a histogram's _bucket/_sum/_count. */
function declares(text: string, name: string): boolean {
  const family = (n: string) => text.includes(`\n# TYPE ${n} `) || text.startsWith(`# TYPE ${n} `);
  if (family(name)) return true;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  return m !== null && family(m[1]!);
}

/** Parses the Prometheus text format into `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
