import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { FaultReporter } from '../observability/fault-reporter.js';
import type { Spool, SpoolRow } from '../spool/types.js';
import { classifyKafkaError, refusedForGood } from './errors.js';
import type { SentCheck } from './log-check.js';
import type { KafkaProducerClient, Pending, WriteErrorKind } from './types.js';
import { describeError } from '../errors.js';
import { kafkaWriteFault, type WriterTelemetry } from './writer-pool.js';

export interface ReplayTelemetry extends Pick<WriterTelemetry, 'written' | 'writeError'> {
  replayRun(result: 'drained' | 'failed' | 'partial' | 'idle'): void;
  /** Rows Kafka acknowledged could not be deleted from the spool. */
  spoolDeleteError(): void;
}

export interface ReplayerDeps {
  readonly logger: Logger;
  readonly telemetry: ReplayTelemetry;
  readonly client: KafkaProducerClient;
  readonly spool: Spool;
  /**
   * The spool is empty: switch every worker back to the direct path, writing `held` first —
   * records the spool held back without committing them (no room on its file system), in order.
   */
  readonly onDrained: (held: readonly Pending[]) => void;
  /** True when some worker is on the spooling path (then a run is due even if the spool looks empty). */
  readonly spooling: () => boolean;
  /** A spooled record Kafka refuses for good (too large): dead-letter it; the row is then deleted. */
  readonly onRejected: (row: SpoolRow, kind: WriteErrorKind) => Promise<void>;
  /** Kafka write failures, shared with the writer pool so an outage is one fault (default: the replayer's own). */
  readonly kafkaFault?: FaultReporter;
  /** For tests: how long the spool-delete fault must stay over before its end is logged. */
  readonly faultSettleMs?: number;
  /**
   * Finds which of the rows an earlier process may have sent are in Kafka already
   * (log-check.ts). Without it, such rows are sent again after a restart (duplicates with the
   * same message ids).
   */
  readonly sentCheck?: SentCheck;
}

/**
 * Replays the spool every SPOOL_REPLAY_INTERVAL_MS: probe Kafka, then send pages in row order
 * (KAFKA_REPLAY_BATCH_MAX_MESSAGES records or KAFKA_BATCH_MAX_BYTES, one produce request in
 * flight), deleting each page only after Kafka acknowledged it. Row
 * order is receive order per key, so keys stay in order; new records of spooling workers are
 * appended behind and drained in the same run. Runs never overlap.
 *
 * Progress is monotonic: the replayer remembers the last row id Kafka acknowledged and never
 * reads at or below it again (row ids only grow), so a page is sent once per process even when
 * its delete fails. A failed delete stops the run; the next runs first try that delete again
 * and send nothing before it succeeds.
 *
 * Across restarts: before a page is sent, the spool's replay mark (`replay_sent_through`) is
 * raised past it, committed — in the same transaction as the delete of the page before, so
 * this costs no fsync of its own. After a restart, rows at or below the mark may be in Kafka
 * already (acknowledged, delete not committed: at most the page whose delete was pending, the
 * page in flight and the one marked ahead). Before sending anything, the first run reads the
 * tail of their partitions back (log-check.ts) and deletes the rows whose message id is there;
 * the rest is replayed. If Kafka cannot be read for that, they are replayed (duplicates possible,
 * logged).
 */
export class Replayer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Last time the timer fired: the liveness check uses it to tell the loop is alive. */
  lastTickMs = Date.now();
  /** Highest row id Kafka acknowledged in this process: nothing at or below it is read again. */
  private delivered = 0;
  /** Rows Kafka acknowledged whose delete failed: deleted before anything else is sent. */
  private undeleted: { first: number; last: number } | undefined;
  /** Rows an earlier process may have sent were checked against Kafka (once per process). */
  private checked = false;
  private readonly log: Logger;
  private readonly kafkaFault: FaultReporter;
  private readonly spoolFault: FaultReporter;

  constructor(
    private readonly config: { spool: Config['spool']; kafka: Config['kafka'] },
    private readonly deps: ReplayerDeps,
  ) {
    this.log = deps.logger.child({ component: 'replay' });
    this.kafkaFault = deps.kafkaFault ?? kafkaWriteFault(deps.logger);
    this.spoolFault = new FaultReporter({
      logger: this.log,
      fault: 'spool_delete',
      level: 'error',
      settleMs: deps.faultSettleMs,
      startMsg: 'cannot delete replayed records from the spool; replay pauses until they are deleted and does not send them again (Kafka has them)',
      summaryMsg: 'replayed records still cannot be deleted from the spool',
      endMsg: 'replayed records deleted from the spool; replay goes on',
    });
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

  /** True while a replay run is under way. */
  get active(): boolean {
    return this.running !== undefined;
  }

  /** One replay run (shared when one is already under way). */
  runOnce(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    // A spool error (disk full, I/O) ends the run as failed; the next interval tries again.
    this.running ??= this.run()
      .catch((err: unknown) => this.spoolFailed(err, 'replay run failed on a spool error; the next run tries again'))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async run(): Promise<void> {
    const spool = this.deps.spool;
    if (!this.deleteDelivered()) return;
    try {
      spool.expire(Date.now());
    } catch (err) {
      this.spoolFailed(err);
      return;
    }
    const before = spool.stats();
    if (before.rows === 0 && before.pending === 0) {
      if (this.deps.spooling()) this.deps.onDrained([]);
      this.deps.telemetry.replayRun('idle');
      return;
    }
    try {
      await this.deps.client.probe();
    } catch (err) {
      this.kafkaFailed(err, before.rows);
      return;
    }
    if (!this.checked) {
      await this.checkSentBefore();
      this.checked = true;
    }
    const started = Date.now();
    let replayed = 0;
    const page = (after: number): SpoolRow[] => spool.read(after, this.config.kafka.replayBatchMaxMessages, this.config.kafka.batchMaxBytes);
    let rows = page(this.delivered);
    while (!this.stopped) {
      if (rows.length === 0) {
        if (!this.deleteDelivered()) return;
        if (this.commitPending()) {
          rows = page(this.delivered);
          continue;
        }
        const now = spool.stats();
        // Rows whose delivery is in doubt (a worker's producer is still resolving it) are not
        // read; the run is partial until that delivery deletes them or releases them for replay.
        if (now.rows === 0 && !(now.inDoubt ?? 0)) {
          // Give the file system its space back first: records held for lack of it may fit now.
          spool.compact();
          if (this.commitPending()) {
            rows = page(this.delivered);
            continue;
          }
          // Same tick as the check: no spooling worker can append in between. What the spool
          // still holds back goes to Kafka directly, ahead of everything after it.
          const held = spool.takeHeld();
          this.deps.onDrained(held);
          this.finish(replayed, started, 'drained', held.length);
        } else this.finish(replayed, started, 'partial', 0);
        return;
      }
      // Pipelined, one produce request in flight as always: while this page is on its way to
      // Kafka, the previous (acknowledged) page is deleted — an fsync at synchronous=FULL — and
      // the next page is read. Rows appended meanwhile get higher row ids, so the next page still
      // follows this one in row order.
      const first = rows[0]!.rowId;
      const last = rows[rows.length - 1]!.rowId;
      // Durable before the send: after a crash, rows above the mark were never sent.
      if (last > spool.sentThrough()) spool.markSent(last);
      const sending = this.send(rows);
      sending.catch(() => undefined);
      let next: SpoolRow[];
      let deletedPrevious: boolean;
      try {
        next = page(last);
        // The next page's mark rides in the delete's transaction (no fsync of its own).
        deletedPrevious = this.deleteDelivered(next.length > 0 ? next[next.length - 1]!.rowId : undefined);
        if (!deletedPrevious) next = [];
      } catch (err) {
        // The run ends on this spool error, but not while its request is out (one at a time);
        // if Kafka took the page, it is not sent again.
        if (await sending.then(() => true, () => false)) {
          this.delivered = last;
          this.undeleted = { first: this.undeleted?.first ?? first, last };
        }
        throw err;
      }
      try {
        await sending;
      } catch (err) {
        this.kafkaFailed(err, spool.stats().rows);
        return;
      }
      this.kafkaFault.ok('replay');
      this.delivered = last;
      replayed += rows.length;
      // Contiguous with a previous page whose delete failed: one range (rows appended since have
      // higher ids than `last`, so the range holds exactly the delivered pages).
      this.undeleted = { first: this.undeleted?.first ?? first, last };
      if (!deletedPrevious) return;
      rows = next;
    }
  }

  /** Commits records waiting for a spool commit; true when some were committed (replay them in this run). */
  private commitPending(): boolean {
    const spool = this.deps.spool;
    const before = spool.stats().pending;
    if (before === 0) return false;
    spool.flush();
    return spool.stats().pending < before;
  }

  /**
   * After a restart: rows at or below the replay mark may have been sent by the earlier process.
   * Those Kafka has are deleted; the rest are replayed as usual.
   */
  private async checkSentBefore(): Promise<void> {
    const spool = this.deps.spool;
    const mark = spool.sentThrough();
    const check = this.deps.sentCheck;
    if (!check || mark <= this.delivered) return;
    const maybe: SpoolRow[] = [];
    let after = this.delivered;
    // Bounded: the mark is never more than a few pages ahead of the oldest row.
    for (let i = 0; i < 20; i++) {
      const rows = spool.read(after, this.config.kafka.replayBatchMaxMessages, Number.MAX_SAFE_INTEGER);
      for (const r of rows) if (r.rowId <= mark) maybe.push(r);
      if (rows.length === 0 || rows[rows.length - 1]!.rowId >= mark) break;
      after = rows[rows.length - 1]!.rowId;
    }
    if (maybe.length === 0) return;
    const t0 = Date.now();
    let found: Set<string>;
    try {
      found = await check.inKafka(maybe.map((r) => ({ id: r.id, topic: r.record.topic, key: r.record.key })));
    } catch (err) {
      this.log.warn(
        { err: describeError(err), rows: maybe.length },
        'could not read Kafka back to see which spooled rows an earlier run had already sent; replaying them (some may be duplicates, same message ids)',
      );
      return;
    }
    const drop = maybe.filter((r) => found.has(r.id)).map((r) => r.rowId);
    spool.deleteRows(drop);
    this.log.info({ checked: maybe.length, alreadyInKafka: drop.length, ms: Date.now() - t0 }, 'spooled rows sent before the restart checked against Kafka; those it has are not sent again');
  }

  /** Deletes the rows Kafka acknowledged, if any wait; false (run failed) when that is still impossible. */
  private deleteDelivered(sentThrough?: number): boolean {
    const u = this.undeleted;
    if (!u) return true;
    try {
      this.deps.spool.deleteRange(u.first, u.last, sentThrough);
    } catch (err) {
      this.deps.telemetry.spoolDeleteError();
      this.spoolFailed(err, undefined, { firstRowId: u.first, lastRowId: u.last });
      return false;
    }
    this.undeleted = undefined;
    this.spoolFault.ok();
    return true;
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

  private kafkaFailed(err: unknown, rows: number): void {
    this.kafkaFault.fail(err, {
      source: 'replay',
      msg: 'Kafka not writable; records stay in the spool and replay tries again every SPOOL_REPLAY_INTERVAL_MS',
      fields: { path: 'replay', kind: classifyKafkaError(err), spooledRows: rows, retryInMs: this.config.spool.replayIntervalMs },
    });
    this.deps.telemetry.replayRun('failed');
  }

  private spoolFailed(err: unknown, msg?: string, fields: Record<string, unknown> = {}): void {
    this.spoolFault.fail(err, { msg, fields: { ...fields, retryInMs: this.config.spool.replayIntervalMs } });
    this.deps.telemetry.replayRun('failed');
  }

  private finish(replayed: number, started: number, result: 'drained' | 'partial', directly: number): void {
    this.kafkaFault.ok('replay');
    const ms = Date.now() - started;
    if (replayed > 0 || directly > 0) {
      this.log.info({ replayed, ms, ratePerS: Math.round((replayed * 1000) / Math.max(ms, 1)), result, ...(directly > 0 ? { heldToKafkaDirectly: directly } : {}) }, 'replay run finished');
    }
    this.deps.telemetry.replayRun(result);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.running) {
      // A send may keep retrying up to KAFKA_DELIVERY_TIMEOUT_MS: give it KAFKA_WRITE_TIMEOUT_MS,
      // then close the client (that cancels the retry; its rows stay in the spool).
      let timer: NodeJS.Timeout | undefined;
      const settled = await Promise.race([this.running.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.config.kafka.writeTimeoutMs)))]);
      clearTimeout(timer);
      if (!settled) await this.deps.client.close().catch(() => undefined);
    }
    await this.running;
    // Last chance for rows Kafka has but the spool still holds: after a restart they would be sent again.
    if (this.undeleted && this.deleteDelivered()) this.log.info('replayed records deleted at shutdown');
    this.spoolFault.close();
  }
}
