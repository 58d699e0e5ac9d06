import v8 from 'node:v8';
import vm from 'node:vm';
import type { Logger } from 'pino';

/**
 * Gives memory back to the system while the bridge is quiet (IDLE_MEMORY_RELEASE_MS).
 *
 * V8 keeps what a garbage collection frees: the pages of the young generation that start-up and
 * the last burst touched (2 × 16 MB with the image's semi-spaces), and the old generation's free
 * pages, stay resident until a collection that is asked to reduce the footprint. V8 runs one by
 * itself only under memory pressure, so a quiet bridge (a standby replica of a session group, a
 * site at night) kept the RSS of its last busy second. Measured with `bench/memory.ts`: idle RSS
 * 125.6 / 126.2 MB without, 96.6 / 97.0 MB with, for one collection of 54–70 ms (81–109 ms in the integration test, which runs from source).
 *
 * "Quiet": nothing received for the whole period and nothing in flight, queued, held or being
 * replayed at any check in it. The collection runs once per quiet period, then again every
 * `repeatMs` while the bridge stays quiet (idle work such as /metrics scrapes touches the young
 * generation again, about 2.4 MB a minute).
 */

/** A memory-reducing full collection of this process's heap (V8's "last resort" flavour). */
export type Collect = () => void;

/**
 * V8's `gc()` with the flavour that reduces the footprint, or undefined where it cannot be had.
 * Uses `globalThis.gc` when Node runs with --expose-gc; otherwise turns the flag on just long
 * enough to create one context that has the function (the flag only affects contexts created
 * while it is set), so the main context gets no global `gc`.
 */
export function memoryReducingCollect(): Collect | undefined {
  type GcFn = (opts: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;
  let gc = (globalThis as { gc?: GcFn }).gc;
  if (typeof gc !== 'function') {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('typeof gc === "function" ? gc : undefined') as GcFn | undefined;
    } catch {
      gc = undefined;
    } finally {
      v8.setFlagsFromString('--no-expose-gc');
    }
  }
  if (typeof gc !== 'function') return undefined;
  const fn = gc;
  return () => fn({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/** What the release watches: the bridge's activity. */
export interface Activity {
  /** When the last MQTT message was received (epoch ms; 0 = none yet). */
  lastMessageAtMs(): number;
  /** True while anything is in flight, queued, held, waiting for a spool commit or being replayed. */
  busy(): boolean;
}

export interface IdleReleaseOptions {
  /** Quiet time before a release; 0 turns the release off. */
  readonly afterMs: number;
  /** While still quiet, release again this often. */
  readonly repeatMs: number;
  readonly activity: Activity;
  readonly logger: Logger;
  /** Counted per release (mqtt_kafka_idle_memory_releases_total). */
  readonly onRelease?: (durationMs: number) => void;
  /** Injected in unit tests. */
  readonly collect?: Collect | undefined;
  readonly now?: () => number;
  /** Resident set size in bytes, for the log line. */
  readonly rss?: () => number;
}

export const IDLE_RELEASE_REPEAT_MS = 5 * 60_000;

export class IdleMemoryRelease {
  private readonly collect: Collect | undefined;
  private readonly now: () => number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  /** Start of the current quiet period candidate: the latest moment activity was seen. */
  private activeAtMs: number;
  private releasedAtMs: number | undefined;
  /** Releases so far (for tests and the log). */
  releases = 0;

  constructor(private readonly opts: IdleReleaseOptions) {
    this.now = opts.now ?? Date.now;
    this.log = opts.logger.child({ component: 'memory' });
    this.activeAtMs = this.now();
    this.collect = opts.afterMs > 0 ? ('collect' in opts ? opts.collect : memoryReducingCollect()) : undefined;
    if (opts.afterMs > 0 && this.collect === undefined) {
      this.log.warn('this Node cannot run a memory-reducing garbage collection (v8.setFlagsFromString refused --expose-gc): IDLE_MEMORY_RELEASE_MS has no effect');
    }
  }

  /** Whether releases will run (IDLE_MEMORY_RELEASE_MS > 0 and the collection is available). */
  get enabled(): boolean {
    return this.collect !== undefined;
  }

  /** Checks every quarter of the quiet time (between 250 ms and 5 s). */
  start(): void {
    if (!this.enabled || this.timer) return;
    const every = Math.min(5_000, Math.max(250, Math.floor(this.opts.afterMs / 4)));
    this.timer = setInterval(() => this.check(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One check (the timer's; called directly by unit tests). Returns true when it released. */
  check(): boolean {
    const collect = this.collect;
    if (collect === undefined) return false;
    const now = this.now();
    const a = this.opts.activity;
    if (a.busy()) {
      this.activeAtMs = now;
      return false;
    }
    const quietSince = Math.max(this.activeAtMs, a.lastMessageAtMs());
    if (now - quietSince < this.opts.afterMs) return false;
    // Once per quiet period, then every repeatMs while it lasts.
    if (this.releasedAtMs !== undefined && this.releasedAtMs >= quietSince && now - this.releasedAtMs < this.opts.repeatMs) return false;
    const rss = this.opts.rss ?? process.memoryUsage.rss;
    const before = rss();
    const t0 = performance.now();
    collect();
    const ms = performance.now() - t0;
    this.releasedAtMs = this.now();
    this.releases++;
    this.opts.onRelease?.(ms);
    this.log.debug({ durationMs: Math.round(ms), rssBeforeMb: mb(before), rssAfterMb: mb(rss()), quietMs: now - quietSince }, 'quiet: memory-reducing garbage collection ran');
    return true;
  }
}

function mb(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}
