import type { OutRecord, Pending } from '../kafka/types.js';

/** One spooled record, as read back for replay. */
export interface SpoolRow {
  /** Row id: strictly increasing in insertion order (AUTOINCREMENT), never reused. */
  readonly rowId: number;
  readonly id: string;
  readonly keyHash: number;
  readonly record: OutRecord;
  readonly receivedAtMs: number;
  readonly bytes: number;
}

export interface SpoolStats {
  readonly rows: number;
  /** Sum of record bytes (value + key + topic + headers) held. */
  readonly bytes: number;
  /** Receive time of the oldest row, or undefined when empty. */
  readonly oldestReceivedAtMs: number | undefined;
  /** Records accepted by append() and not yet committed. */
  readonly pending: number;
  /** Records (rows and pending) whose delivery is in doubt (appendInDoubt), not replayed until it ends. */
  readonly inDoubt?: number;
  /** True while a full disk or SPOOL_MAX_BYTES (policy block) holds commits back. */
  readonly blocked: boolean;
  /** Size of the database file plus WAL, in bytes. */
  readonly fileBytes: number;
  /** Why the spool takes no records while `blocked` (undefined when it takes them). */
  readonly heldBy?: HoldReason | undefined;
  /** The spool's file system: free space, watermark, reserve (undefined for spools without one). */
  readonly disk?: DiskView | undefined;
}

/**
 * Why new records are held back (not committed, not acknowledged; the broker keeps the rest):
 * `max_bytes` SPOOL_MAX_BYTES reached under SPOOL_FULL_POLICY=block; `disk_low` the file
 * system is below its free-space watermark (or the reserve file is released); `write_error`
 * commits fail (I/O error, or a full file system the watermark did not foresee).
 */
export type HoldReason = 'max_bytes' | 'disk_low' | 'write_error';

/** The spool's file system as the spool sees it. */
export interface DiskView {
  /** Bytes available to an unprivileged user (statfs bavail × bsize). */
  readonly freeBytes: number;
  /** Size of the file system. */
  readonly sizeBytes: number;
  /** The free-space watermark in bytes: max(SPOOL_MIN_FREE_BYTES, SPOOL_MIN_FREE_PERCENT of sizeBytes). */
  readonly minFreeBytes: number;
  /** Size of the reserve file present (0 when released or SPOOL_RESERVE_BYTES=0). */
  readonly reserveBytes: number;
}

/** Why records were dropped (a metric label). */
export type DropReason = 'spool_full_oldest' | 'spool_full_newest' | 'spool_max_age' | 'rejected_by_kafka';

export interface SpoolDeps {
  /** Called after the transaction holding these entries committed (synchronous=FULL). */
  onCommitted(entries: readonly Pending[]): void;
  /** Called for entries dropped by the full policy before they were stored (drop_newest): settle them. */
  onDroppedPending(entries: readonly Pending[], reason: DropReason): void;
  /** Rows deleted by a policy (drop_oldest, max age); already acknowledged, now gone. */
  onDroppedRows(rows: readonly { topic: string; key: string | null }[], reason: DropReason): void;
  /** A commit failed (disk full, I/O error); it is retried, nothing was acknowledged. */
  onWriteError(err: unknown): void;
}

/**
 * Small durable state kept in the spool's database (same file, same `synchronous=FULL`), for
 * what the bridge must remember across restarts besides records: the MQTT filters it
 * subscribed, Sparkplug BIRTH certificates. Each write is its own committed transaction; it
 * throws (SQLITE_FULL, I/O) instead of pretending, so callers decide what a failed write means.
 * Keys are namespaced by the caller (`mqtt/…`, `sparkplug/…`); values are strings (JSON).
 */
export interface StateStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
  delete(key: string): void;
  /** Every key starting with `prefix`, in key order. */
  list(prefix: string): [key: string, value: string][];
}

/**
 * The durable spool. append() never fails: entries are committed in call order by group
 * commit, retried on disk errors, and held (back-pressure) while the spool is full under
 * the block policy.
 */
export interface Spool {
  append(entries: readonly Pending[]): void;
  /**
   * Appends a batch whose delivery is still being resolved by the producer that sent it (its
   * outcome is unknown: the request timed out, the leader moved). Stored and acknowledged like
   * any appended record, but read() stops before its rows until resolveInDoubt(): replaying them
   * from another producer while the first may still write them would write them twice. Returns
   * the token for resolveInDoubt(). The marks live in memory: after a restart the rows are
   * ordinary rows (their producer is gone).
   */
  appendInDoubt(entries: readonly Pending[]): number;
  /**
   * The delivery of `token` ended. `delivered`: Kafka has the records; their rows are deleted,
   * and entries not yet committed are removed from the spool and returned (never acknowledged:
   * the caller settles them as written). Not delivered: the rows become ordinary rows, replayed
   * in order. Returns [] then.
   */
  resolveInDoubt(token: number, delivered: boolean): Pending[];
  /**
   * Rows with rowId > afterRowId in rowId order, at most `limit` rows / about `maxBytes` bytes,
   * stopping before the first row whose delivery is in doubt (appendInDoubt).
   */
  read(afterRowId: number, limit: number, maxBytes: number): SpoolRow[];
  /**
   * Deletes rows firstRowId..lastRowId (inclusive) after Kafka acknowledged them. On a full file
   * system it makes room first (checkpoint, then the reserve file); throws BRIDGE_ERR_SPOOL_DELETE
   * when the rows could still not be deleted (they stay; nothing else changed).
   */
  deleteRange(firstRowId: number, lastRowId: number, sentThrough?: number): void;
  /**
   * The replay mark: no row above it has ever been handed to Kafka by replay (in this or an
   * earlier process). Kept in the spool's meta table; 0 when never set.
   */
  sentThrough(): number;
  /**
   * Raises the replay mark to `rowId`, committed (synchronous=FULL) before replay sends rows up
   * to it. deleteRange(…, sentThrough) raises it in the delete's own transaction instead.
   */
  markSent(rowId: number): void;
  /** Deletes these rows (found in Kafka after a restart); like deleteRange otherwise. */
  deleteRows(rowIds: readonly number[]): void;
  /**
   * Removes and returns the records held back (appended, not committed) — only when the spool
   * holds no rows, so they are the oldest records of their keys and the caller may write them
   * to Kafka directly. Returns [] while rows remain.
   */
  takeHeld(): Pending[];
  /** Drops rows older than SPOOL_MAX_AGE_MS (if set); returns how many. */
  expire(nowMs: number): number;
  /** Commits what is pending now (used at shutdown). */
  flush(): void;
  stats(): SpoolStats;
  /** Returns freed pages to the file system (incremental vacuum) and truncates the WAL. */
  compact(): void;
  /** Durable key-value state in the same database. */
  readonly state: StateStore;
  close(): void;
}
