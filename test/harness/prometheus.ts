import fs from 'node:fs';
import path from 'node:path';
import { freePort } from './ports.js';
import { findExecutable, makeTempDir, ManagedProcess, repoRoot, runInstallScriptOnce } from './process.js';

/**
 * A private Prometheus server (the Debian package `prometheus`, installed by
 * scripts/install-prometheus.sh) on a free loopback port, with a generated config that scrapes the
 * given targets and loads the given rule files, plus a small client for its HTTP API. Also finds
 * promtool, from the same package.
 */

export interface PrometheusOptions {
  /** Scrape targets (host:port), all in one job. */
  targets: readonly string[];
  /** The job label of the targets; default `mqtt-kafka-spool`. */
  job?: string;
  /** Scrape interval, and evaluation interval of the rules; default 1 s. */
  intervalS?: number;
  /** Rule files to load (Prometheus refuses to start when one is invalid). */
  ruleFiles?: readonly string[];
  /** Where prometheus.yml, prometheus.log and the TSDB go; defaults to $HARNESS_LOG_DIR or a temp dir. */
  logDir?: string;
}

/** A series of an instant query (vector) result. */
export interface InstantSample {
  metric: Record<string, string>;
  value: [number, string];
}
/** A series of a range query (matrix) result. */
export interface RangeSeries {
  metric: Record<string, string>;
  values: [number, string][];
}
/** An active (pending or firing) alert as /api/v1/alerts reports it. */
export interface ActiveAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
  value: string;
}
/** An alerting rule as /api/v1/rules reports it. */
export interface RuleState {
  name: string;
  type: 'alerting' | 'recording';
  state?: 'inactive' | 'pending' | 'firing';
  health: 'ok' | 'err' | 'unknown';
  lastError?: string;
  alerts?: ActiveAlert[];
}

/** A query Prometheus refused (bad_data: it does not parse) or failed to run. */
export class PrometheusApiError extends Error {
  override readonly name = 'PrometheusApiError';
  constructor(
    readonly errorType: string,
    readonly detail: string,
    readonly status: number,
  ) {
    super(`${errorType}: ${detail} (HTTP ${status})`);
  }
}

export interface Prometheus {
  readonly port: number;
  /** http://127.0.0.1:port */
  readonly url: string;
  readonly job: string;
  readonly logFile: string;
  readonly configFile: string;
  readonly running: boolean;
  /** GET /api/v1/<endpoint>: the `data` of a success, else a PrometheusApiError. */
  api<T>(endpoint: string, params?: Record<string, string | string[]>): Promise<T>;
  /** Instant query (at `timeS`, default now). */
  query(expr: string, timeS?: number): Promise<InstantSample[]>;
  /** Range query from `startS` to `endS` every `stepS`. */
  queryRange(expr: string, startS: number, endS: number, stepS?: number): Promise<RangeSeries[]>;
  alerts(): Promise<ActiveAlert[]>;
  /** Every alerting and recording rule with its state and health. */
  rules(): Promise<RuleState[]>;
  /** Polls `pred` every 250 ms until it holds; throws (with the log tail) after `timeoutMs`. */
  waitFor(what: string, pred: () => Promise<boolean>, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Runs scripts/install-prometheus.sh once per process (apt-get install prometheus when missing). */
export function ensurePrometheusInstalled(): void {
  runInstallScriptOnce('install-prometheus.sh');
}

function findOrInstall(name: string, envVar: string): string {
  let bin = findExecutable(name, envVar);
  if (!bin) {
    ensurePrometheusInstalled();
    bin = findExecutable(name, envVar);
  }
  if (!bin) throw new Error(`${name} not found after running scripts/install-prometheus.sh`);
  return bin;
}

/** promtool (PROMTOOL_BIN, PATH, or installed now). */
export function promtoolPath(): string {
  return findOrInstall('promtool', 'PROMTOOL_BIN');
}

/** Starts Prometheus and resolves once /-/ready answers 200 (rule files loaded, TSDB open). */
export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  const bin = findOrInstall('prometheus', 'PROMETHEUS_BIN');
  const port = await freePort();
  const logDir = opts.logDir ?? process.env.HARNESS_LOG_DIR ?? makeTempDir('prometheus-');
  fs.mkdirSync(logDir, { recursive: true });
  const configFile = path.join(logDir, `prometheus-${port}.yml`);
  const logFile = path.join(logDir, `prometheus-${port}.log`);
  const job = opts.job ?? 'mqtt-kafka-spool';
  const interval = `${opts.intervalS ?? 1}s`;
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    rule_files: opts.ruleFiles ?? [],
    scrape_configs: [{ job_name: job, static_configs: [{ targets: opts.targets }] }],
  };
  // JSON is YAML: no YAML library needed to write the config.
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2) + '\n');
  const server = new PrometheusServer(bin, port, job, configFile, logFile, makeTempDir('prometheus-tsdb-'));
  await server.start();
  return server;
}

class PrometheusServer implements Prometheus {
  private proc: ManagedProcess | undefined;

  constructor(
    private readonly bin: string,
    readonly port: number,
    readonly job: string,
    readonly configFile: string,
    readonly logFile: string,
    private readonly dataDir: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  async start(): Promise<void> {
    const proc = ManagedProcess.spawn(
      this.bin,
      [
        `--config.file=${this.configFile}`,
        `--storage.tsdb.path=${this.dataDir}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
      ],
      { logFile: this.logFile, name: `prometheus:${this.port}` },
    );
    this.proc = proc;
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!proc.running) throw new Error(`prometheus exited during startup:\n${proc.logTail()}`);
      try {
        if ((await fetch(`${this.url}/-/ready`)).status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await proc.stop('SIGKILL');
        throw new Error(`prometheus did not become ready in 30 s:\n${proc.logTail()}`);
      }
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    await this.proc?.stop('SIGTERM', 10_000);
  }

  async api<T>(endpoint: string, params: Record<string, string | string[]> = {}): Promise<T> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const x of Array.isArray(v) ? v : [v]) q.append(k, x);
    const res = await fetch(`${this.url}/api/v1/${endpoint}?${q.toString()}`);
    const body = (await res.json()) as { status: string; data?: T; errorType?: string; error?: string };
    if (body.status !== 'success') throw new PrometheusApiError(body.errorType ?? 'error', body.error ?? '', res.status);
    return body.data as T;
  }

  async query(expr: string, timeS?: number): Promise<InstantSample[]> {
    const data = await this.api<{ resultType: string; result: unknown }>('query', { query: expr, ...(timeS === undefined ? {} : { time: String(timeS) }) });
    if (data.resultType === 'scalar') {
      const [t, v] = data.result as [number, string];
      return [{ metric: {}, value: [t, v] }];
    }
    return data.result as InstantSample[];
  }

  async queryRange(expr: string, startS: number, endS: number, stepS = 1): Promise<RangeSeries[]> {
    const data = await this.api<{ result: RangeSeries[] }>('query_range', { query: expr, start: String(startS), end: String(endS), step: String(stepS) });
    return data.result;
  }

  async alerts(): Promise<ActiveAlert[]> {
    return (await this.api<{ alerts: ActiveAlert[] }>('alerts')).alerts;
  }

  async rules(): Promise<RuleState[]> {
    const data = await this.api<{ groups: { rules: RuleState[] }[] }>('rules');
    return data.groups.flatMap((g) => g.rules);
  }

  async waitFor(what: string, pred: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < end) {
      if (!this.running) throw new Error(`prometheus exited while waiting for ${what}\n${this.proc?.logTail() ?? ''}`);
      try {
        if (await pred()) return;
      } catch (err) {
        last = err;
      }
      await sleep(250);
    }
    throw new Error(`timed out waiting for ${what} (${String(last ?? '')})\n${this.proc?.logTail() ?? ''}`);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
