import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { describeError } from '../errors.js';
import type { Spool, SpoolRow } from '../spool/types.js';
import { classifyKafkaError, refusedForGood } from './errors.js';
import type { KafkaProducerClient, WriteErrorKind } from './types.js';
import type { WriterTelemetry } from './writer-pool.js';

export interface ReplayTelemetry extends Pick<WriterTelemetry, 'written' | 'writeError'> {
  replayRun(result: 'drained' | 'failed' | 'partial' | 'idle'): void;
}

export interface ReplayerDeps {
  readonly logger: Logger;
  readonly telemetry: ReplayTelemetry;
  readonly client: KafkaProducerClient;
  readonly spool: Spool;
  /** The spool is empty and nothing is pending: switch every worker back to the direct path. */
  readonly onDrained: () => void;
  /** True when some worker is on the spooling path (then a run is due even if the spool looks empty). */
  readonly spooling: () => boolean;
  /** A spooled record Kafka refuses for good (too large): dead-letter it; the row is then deleted. */
  readonly onRejected: (row: SpoolRow, kind: WriteErrorKind) => Promise<void>;
}

/**
 * Replays the spool every SPOOL_REPLAY_INTERVAL_MS: probe Kafka, then send pages in row order
 * (one produce request in flight), deleting each page only after Kafka acknowledged it. Row
 * order is receive order per key, so keys stay in order; new records of spooling workers are
 * appended behind and drained in the same run. Runs never overlap.
 */
export class Replayer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private outage = false;
  /** Last time the timer fired: the liveness check uses it to tell the loop is alive. */
  lastTickMs = Date.now();
  private readonly log: Logger;

  constructor(
    private readonly config: { spool: Config['spool']; kafka: Config['kafka'] },
    private readonly deps: ReplayerDeps,
  ) {
    this.log = deps.logger.child({ component: 'replay' });
  }

  /** Starts the timer; runs once at once when the spool is not empty. */
  start(): void {
    this.timer = setInterval(() => {
      this.lastTickMs = Date.now();
      void this.runOnce();
    }, this.config.spool.replayIntervalMs);
    this.timer.unref();
    if (this.deps.spool.stats().rows > 0 || this.deps.spooling()) void this.runOnce();
  }

  /** One replay run (shared when one is already under way). */
  runOnce(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    // A spool error (disk full, I/O) ends the run as failed; the next interval tries again.
    this.running ??= this.run()
      .catch((err: unknown) => this.fail(err, this.safeRows()))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async run(): Promise<void> {
    const spool = this.deps.spool;
    spool.expire(Date.now());
    const before = spool.stats();
    if (before.rows === 0 && before.pending === 0) {
      if (this.deps.spooling()) this.deps.onDrained();
      this.deps.telemetry.replayRun('idle');
      return;
    }
    try {
      await this.deps.client.probe();
    } catch (err) {
      this.fail(err, before.rows);
      return;
    }
    const started = Date.now();
    let cursor = 0;
    let replayed = 0;
    while (!this.stopped) {
      const rows = spool.read(cursor, this.config.kafka.batchMaxMessages, this.config.kafka.batchMaxBytes);
      if (rows.length === 0) {
        const s = spool.stats();
        if (s.pending > 0 && !s.blocked) {
          spool.flush();
          continue;
        }
        if (s.pending === 0) {
          // Same tick as the check: no spooling worker can append in between.
          this.deps.onDrained();
          spool.compact();
          this.finish(replayed, started, 'drained');
        } else this.finish(replayed, started, 'partial');
        return;
      }
      try {
        await this.send(rows);
      } catch (err) {
        this.fail(err, spool.stats().rows);
        return;
      }
      spool.deleteRange(rows[0]!.rowId, rows[rows.length - 1]!.rowId);
      cursor = rows[rows.length - 1]!.rowId;
      replayed += rows.length;
    }
  }

  private async send(rows: SpoolRow[]): Promise<void> {
    const t0 = performance.now();
    try {
      await this.deps.client.send(rows.map((r) => r.record));
    } catch (err) {
      const kind = classifyKafkaError(err);
      this.deps.telemetry.writeError(kind, 'replay');
      if (!refusedForGood(kind)) throw err;
      if (rows.length === 1) {
        await this.deps.onRejected(rows[0]!, kind);
        return;
      }
      const mid = rows.length >> 1;
      await this.send(rows.slice(0, mid));
      await this.send(rows.slice(mid));
      return;
    }
    let bytes = 0;
    for (const r of rows) bytes += r.bytes;
    this.deps.telemetry.written(rows.length, bytes, performance.now() - t0, 'replay');
  }

  private safeRows(): number {
    try {
      return this.deps.spool.stats().rows;
    } catch {
      return -1;
    }
  }

  private fail(err: unknown, rows: number): void {
    if (!this.outage) {
      this.outage = true;
      this.log.warn({ err: describeError(err), spooledRows: rows, retryInMs: this.config.spool.replayIntervalMs }, 'Kafka not writable; records stay in the spool');
    } else this.log.debug({ err: describeError(err) }, 'replay attempt failed');
    this.deps.telemetry.replayRun('failed');
  }

  private finish(replayed: number, started: number, result: 'drained' | 'partial'): void {
    this.outage = false;
    const ms = Date.now() - started;
    if (replayed > 0) {
      this.log.info({ replayed, ms, ratePerS: Math.round((replayed * 1000) / Math.max(ms, 1)), result }, 'replay run finished');
    }
    this.deps.telemetry.replayRun(result);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
