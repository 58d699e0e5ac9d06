import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repo root, derived from this file's location (test/harness/process.ts). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** How a child process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnLoggedOptions {
  /** File that receives the child's stdout and stderr (appended, so restarts share one log). */
  logFile: string;
  /** Short name used in error messages. */
  name?: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

// Every child the harness started and that has not exited yet. Cleanup only ever signals
// these pids: never pkill/killall, which would hit other people's brokers on the machine.
const live = new Set<ManagedProcess>();

/** A child process started by the harness, with output going to a log file. */
export class ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  readonly pid: number;
  private readonly child: ChildProcess;
  private exitInfo: ExitInfo | undefined;
  private readonly exitPromise: Promise<ExitInfo>;

  private constructor(child: ChildProcess, name: string, logFile: string) {
    if (child.pid === undefined) throw new Error(`failed to spawn ${name}`);
    this.child = child;
    this.pid = child.pid;
    this.name = name;
    this.logFile = logFile;
    this.exitPromise = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        live.delete(this);
        resolve(this.exitInfo);
      });
    });
  }

  /** Spawns `command args` (no shell) with stdout+stderr appended to `opts.logFile`. */
  static spawn(command: string, args: readonly string[], opts: SpawnLoggedOptions): ManagedProcess {
    installExitHooks();
    fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
    const fd = fs.openSync(opts.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', fd, fd] });
    } finally {
      // The child has its own copy of the descriptor now.
      fs.closeSync(fd);
    }
    // Without an 'error' listener a failed spawn (ENOENT) would crash the test process.
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    if (child.pid === undefined) {
      throw new Error(`failed to spawn ${command}: ${spawnError?.message ?? 'no pid'}`);
    }
    const proc = new ManagedProcess(child, opts.name ?? path.basename(command), opts.logFile);
    live.add(proc);
    return proc;
  }

  /** True until the process has exited. */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Resolves when the process exits; rejects after `timeoutMs` if given. */
  waitExit(timeoutMs?: number): Promise<ExitInfo> {
    if (timeoutMs === undefined) return this.exitPromise;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.name} (pid ${this.pid}) did not exit within ${timeoutMs} ms`)),
        timeoutMs,
      );
      void this.exitPromise.then((info) => {
        clearTimeout(timer);
        resolve(info);
      });
    });
  }

  /** Sends `signal`, and SIGKILL if the process is still alive after `timeoutMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<ExitInfo> {
    if (!this.running) return this.exitPromise;
    this.signal(signal);
    try {
      return await this.waitExit(timeoutMs);
    } catch {
      this.signal('SIGKILL');
      return this.exitPromise;
    }
  }

  /** SIGKILL (a crash: no shutdown hooks run) and wait for the exit. */
  kill9(): Promise<ExitInfo> {
    this.signal('SIGKILL');
    return this.exitPromise;
  }

  /** Last `maxBytes` of the log file, for error messages. */
  logTail(maxBytes = 4000): string {
    return tailFile(this.logFile, maxBytes);
  }

  private signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      // Already gone (ESRCH): the 'exit' event is on its way.
    }
  }
}

/** Shorthand for {@link ManagedProcess.spawn}. */
export function spawnLogged(command: string, args: readonly string[], opts: SpawnLoggedOptions): ManagedProcess {
  return ManagedProcess.spawn(command, args, opts);
}

/** Stops (SIGTERM, then SIGKILL after `timeoutMs`) every process the harness started that is still running. */
export async function stopAll(timeoutMs = 15_000): Promise<void> {
  await Promise.all([...live].map((p) => p.stop('SIGTERM', timeoutMs)));
}

/** PIDs of the harness's children that are still running (for diagnostics and leak checks). */
export function livePids(): number[] {
  return [...live].map((p) => p.pid);
}

function killAllSync(): void {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

let hooksInstalled = false;
// Last line of defence when a test run dies without reaching afterAll: kill our children so a
// JVM or mosquitto does not outlive the test process. 'exit' handlers must be synchronous.
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAllSync();
      // Re-raise so the default action (exit) still happens, unless the host program has its
      // own handler for this signal (then that handler decides).
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

/** Creates a fresh directory under os.tmpdir() (e.g. makeTempDir('kafka-') -> /tmp/mqks-kafka-XXXXXX). */
export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `mqks-${prefix}`));
}

/** Last `maxBytes` of a file, or '' if it cannot be read. */
export function tailFile(file: string, maxBytes = 4000): string {
  try {
    const buf = fs.readFileSync(file);
    return buf.subarray(Math.max(0, buf.length - maxBytes)).toString('utf8');
  } catch {
    return '';
  }
}

/**
 * Finds an executable: `envVar` override first, then PATH, then the sbin dirs (mosquitto lives in
 * /usr/sbin, which a non-root PATH often lacks). Returns undefined if not found.
 */
export function findExecutable(name: string, envVar?: string): string | undefined {
  const override = envVar ? process.env[envVar] : undefined;
  if (override) return override;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

const installedScripts = new Set<string>();
/**
 * Runs scripts/<name> (an idempotent install script: installs only what is missing, quiet on
 * success) at most once per process. Synchronous on purpose: it runs before anything it installs
 * starts, and a first-time download can take a minute.
 */
export function runInstallScriptOnce(name: string): void {
  if (installedScripts.has(name)) return;
  const script = path.join(repoRoot, 'scripts', name);
  const res = spawnSync('bash', [script], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (res.status !== 0) {
    throw new Error(`${script} failed (exit ${res.status ?? res.signal}):\n${res.stdout}${res.stderr}`);
  }
  installedScripts.add(name);
}

/** scripts/install-brokers.sh: mosquitto and kcat via apt, the Kafka jars via Maven, only when missing. */
export function ensureBrokersInstalled(): void {
  runInstallScriptOnce('install-brokers.sh');
}
