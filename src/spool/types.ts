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
  /** True while a full disk or SPOOL_MAX_BYTES (policy block) holds commits back. */
  readonly blocked: boolean;
  /** Size of the database file plus WAL, in bytes. */
  readonly fileBytes: number;
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
  /** Rows with rowId > afterRowId in rowId order, at most `limit` rows / about `maxBytes` bytes. */
  read(afterRowId: number, limit: number, maxBytes: number): SpoolRow[];
  /** Deletes rows firstRowId..lastRowId (inclusive) after Kafka acknowledged them. */
  deleteRange(firstRowId: number, lastRowId: number): void;
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
