import type { Logger } from 'pino';
import { describeError } from '../errors.js';

/** What one fault logs; every field has a default except the logger, the name and the messages. */
export interface FaultReporterOptions {
  /** The component's child logger ({component}). */
  readonly logger: Logger;
  /** Stable fault name, logged as `fault` on every line (e.g. `kafka_write`, `spool_commit`). */
  readonly fault: string;
  /** Message of the line logged when the fault starts (a fail() may give its own). */
  readonly startMsg: string;
  /** Message of the periodic summary while the fault lasts. */
  readonly summaryMsg: string;
  /** Message of the line logged when the fault ends. */
  readonly endMsg: string;
  /** Level of the start line (and of a changed-problem line). Default `error`. */
  readonly level?: 'warn' | 'error';
  /** At most one summary (and one changed-problem line) per this many ms. Default 60 000. */
  readonly summaryIntervalMs?: number;
  /**
   * The fault ends only after every source stayed healthy this long (default 5 000 ms): a
   * connection that drops again a second after it came back is one fault, not a start and an
   * end line per attempt.
   */
  readonly settleMs?: number;
  /** Called when the fault starts (true) and once it has ended (false): metrics. */
  readonly onChange?: (active: boolean) => void;
  /** Clock, for tests. Default Date.now. */
  readonly now?: () => number;
}

/** Optional details of one failure. */
export interface FaultDetail {
  /**
   * Who failed (a worker, the replayer). The fault lasts while any source that failed has not
   * recovered, so one healthy source cannot end a fault another still has. Default `default`.
   */
  readonly source?: string;
  /** Overrides the start message: an operator-facing explanation of this failure. */
  readonly msg?: string;
  /**
   * What went wrong, when the caller can tell problems apart (usually the same text as `msg`). A
   * failure with another problem than the last one logged gets its own line (at most one per
   * summary interval): the broker was unreachable, now it refuses the password.
   */
  readonly problem?: string;
  /** Overrides the start level for this failure (a misconfiguration is an error, an outage a warning). */
  readonly level?: 'warn' | 'error';
  /** Extra fields for the start line (counts, kinds; never a record's content). */
  readonly fields?: Record<string, unknown>;
}

/**
 * Logs a recurring fault without flooding: ONE line when it starts (at `level`), at most one
 * summary per `summaryIntervalMs` while it lasts (failure count, last error; `warn`), and ONE
 * line once it has ended (`info`, with the count and how long it lasted). Callers report every
 * failure and every recovery; the reporter decides what is worth a line, so no caller logs per
 * record or per retry.
 *
 * A failure with another `problem` than the last one logged (the broker was unreachable, now it
 * refuses the password) is news, not a retry: it gets its own line, at most one per summary
 * interval.
 */
export class FaultReporter {
  private readonly failing = new Set<string>();
  private open = false;
  private startedAt = 0;
  private recoveredAt = 0;
  private failures = 0;
  private failuresAtLastLine = 0;
  private lastLineAt = 0;
  private lastChangeLineAt = Number.NEGATIVE_INFINITY;
  private lastProblem: string | undefined;
  private lastErr = '';
  private endTimer: NodeJS.Timeout | undefined;
  private pendingEnd: Record<string, unknown> = {};
  private readonly interval: number;
  private readonly settle: number;
  private readonly now: () => number;

  constructor(private readonly opts: FaultReporterOptions) {
    this.interval = opts.summaryIntervalMs ?? 60_000;
    this.settle = opts.settleMs ?? 5_000;
    this.now = opts.now ?? Date.now;
  }

  /** True while some source is failing (not yet recovered). */
  get active(): boolean {
    return this.failing.size > 0;
  }

  /** Failures since the fault started (0 when none is open). */
  get count(): number {
    return this.failures;
  }

  /** The last error reported, as text ('' when none is open). */
  get lastError(): string {
    return this.lastErr;
  }

  /** Reports one failure of `detail.source`. */
  fail(err: unknown, detail: FaultDetail = {}): void {
    const now = this.now();
    const msg = detail.msg ?? this.opts.startMsg;
    const level = detail.level ?? this.opts.level ?? 'error';
    this.failing.add(detail.source ?? 'default');
    if (err !== undefined) this.lastErr = describeError(err);
    if (this.endTimer) {
      // Failed again before the recovery settled: the same fault goes on.
      clearTimeout(this.endTimer);
      this.endTimer = undefined;
    }
    if (!this.open) {
      this.open = true;
      this.startedAt = now;
      this.failures = 1;
      this.failuresAtLastLine = 1;
      this.lastLineAt = now;
      this.lastChangeLineAt = Number.NEGATIVE_INFINITY;
      this.lastProblem = detail.problem;
      this.opts.logger[level]({ fault: this.opts.fault, ...(this.lastErr ? { err: this.lastErr } : {}), ...detail.fields }, msg);
      this.opts.onChange?.(true);
      return;
    }
    this.failures++;
    // Every failure at debug (LOG_LEVEL=debug shows each one; never above debug, never per record).
    if (this.opts.logger.isLevelEnabled('debug')) this.opts.logger.debug({ fault: this.opts.fault, source: detail.source, err: this.lastErr, ...detail.fields }, 'fault goes on');
    if (detail.problem !== undefined && detail.problem !== this.lastProblem && now - this.lastChangeLineAt >= this.interval) {
      this.lastProblem = detail.problem;
      this.lastChangeLineAt = now;
      this.lastLineAt = now;
      this.failuresAtLastLine = this.failures;
      this.opts.logger[level]({ fault: this.opts.fault, ...(this.lastErr ? { err: this.lastErr } : {}), failures: this.failures, ...detail.fields }, msg);
      return;
    }
    if (now - this.lastLineAt >= this.interval) {
      this.opts.logger.warn(
        {
          fault: this.opts.fault,
          failures: this.failures,
          sinceLastLine: this.failures - this.failuresAtLastLine,
          activeForMs: now - this.startedAt,
          lastErr: this.lastErr,
          sources: [...this.failing].sort(),
        },
        this.opts.summaryMsg,
      );
      this.lastLineAt = now;
      this.failuresAtLastLine = this.failures;
    }
  }

  /** Reports that `source` works again; the fault ends once no source has failed for `settleMs`. */
  ok(source = 'default', fields: Record<string, unknown> = {}): void {
    if (!this.failing.delete(source) || this.failing.size > 0 || !this.open) return;
    this.recoveredAt = this.now();
    this.pendingEnd = fields;
    if (this.settle <= 0) {
      this.end();
      return;
    }
    this.endTimer = setTimeout(() => this.end(), this.settle);
    this.endTimer.unref();
  }

  /** Ends the fault whichever sources failed (the condition behind all of them is gone). */
  clear(fields: Record<string, unknown> = {}): void {
    const sources = [...this.failing];
    for (let i = 0; i < sources.length; i++) this.ok(sources[i], i === sources.length - 1 ? fields : {});
  }

  /** Stops the settle timer (at shutdown); no end line is logged for a fault still open. */
  close(): void {
    if (this.endTimer) clearTimeout(this.endTimer);
    this.endTimer = undefined;
  }

  private end(): void {
    this.endTimer = undefined;
    if (!this.open || this.failing.size > 0) return;
    this.opts.logger.info(
      { fault: this.opts.fault, failures: this.failures, durationMs: this.recoveredAt - this.startedAt, ...this.pendingEnd },
      this.opts.endMsg,
    );
    this.open = false;
    this.failures = 0;
    this.lastErr = '';
    this.lastProblem = undefined;
    this.pendingEnd = {};
    this.opts.onChange?.(false);
  }
}
