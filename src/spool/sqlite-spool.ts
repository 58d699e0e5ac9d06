/**
 * # The SQLite spool
 *
 * Holds records that could not be written to Kafka, durably, in receive order, until replay
 * delivers them.
 *
 * ## Format
 * One better-sqlite3 connection (the only writer), WAL journal, `synchronous=FULL` (a commit
 * survives power loss, not only a process crash), `auto_vacuum=INCREMENTAL` set before the
 * first table exists so freed pages can be returned to the file system after a drain,
 * `locking_mode=EXCLUSIVE` before the first access (no -shm file: the WAL index lives in the
 * process). Beside it: `-wal`, and `-reserve` (SPOOL_RESERVE_BYTES of reserved space).
 *
 *     meta(k TEXT PRIMARY KEY, v TEXT)            -- schema_version, replay_sent_through
 *     state(k TEXT PRIMARY KEY, v TEXT)           -- StateStore: subscriptions, Sparkplug BIRTHs
 *     records(row_id INTEGER PRIMARY KEY AUTOINCREMENT,
 *             msg_id TEXT, key_hash INTEGER, topic TEXT, key TEXT NULL,
 *             value BLOB, headers TEXT (JSON object of strings),
 *             received_at INTEGER (ms), bytes INTEGER)
 *
 * ## Invariants
 * 1. row_id order is append order, and append order per key is receive order (the writer
 *    appends a key's records in the order it received them). AUTOINCREMENT guarantees ids
 *    are never reused, even after the table was emptied, so replay's "row_id > last" cursor
 *    never skips a row.
 * 2. A record is acknowledged (onCommitted → PUBACK) only after the transaction that inserted
 *    it committed. A failed transaction (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY) rolls back;
 *    its entries stay pending and are retried; nothing in it is acknowledged.
 * 3. A row is deleted only after Kafka acknowledged it (deleteRange), or by an explicit,
 *    counted policy (drop_oldest, max age).
 * 4. Memory does not grow with the spool: pending entries are bounded by the bridge's
 *    in-flight bound, and replay reads pages.
 *
 * ## Crash at each step
 * - before commit: nothing was acknowledged; the broker redelivers (persistent session).
 * - after commit, before PUBACK: the row is replayed; the broker also redelivers → a duplicate
 *   with a different message id but the `mqtt.dup` header set.
 * - after Kafka ack, before delete: the row is at or below the replay mark (below), so the
 *   next process reads the tail of its partition back first and deletes it instead of sending
 *   it again. Only if Kafka cannot be read back then is it replayed (a duplicate with the same
 *   message id, logged).
 * - during delete or vacuum: SQLite's WAL makes it all-or-nothing.
 *
 * ## Replay without repeats (the replay mark)
 * meta `replay_sent_through` = R means: replay never handed a row above R to Kafka, in any
 * process. The replayer raises R past a page before sending it; in steady state the next page's
 * mark is written in the same transaction as the previous page's delete, so it costs no fsync
 * of its own (a commit of its own only for the first pages of a replay run). After a restart the rows at or below R — at
 * most the page whose delete was pending, the page in flight and the one marked ahead — are
 * the only rows Kafka may have; the replayer reads the last max(2,000, 4 × n) records of each
 * of their partitions (at most 200,000 in all; src/kafka/log-check.ts) and deletes the rows
 * whose `mqtt.message_id` it finds. Why this and not recording producer ids and sequences:
 * Kafka de-duplicates only a retry from the same producer id and epoch, and a restarted
 * process cannot resume an idempotent (non-transactional) producer's id — InitProducerId gives
 * it a new one — so recorded sequences could not make Kafka drop the repeat; reading the
 * message ids back can. A new column was not needed: `meta` is a key-value table, and a spool
 * file written before the mark existed opens with R = 0 (nothing to check).
 *
 * ## Batches in doubt
 * A worker's batch Kafka has not answered within KAFKA_WRITE_TIMEOUT_MS is appended with
 * appendInDoubt(): committed and acknowledged like any record, but read() stops before its
 * rows (and so before everything behind them) until the producer that sent it, still retrying
 * with the same sequences, resolves it: delivered → its rows are deleted (entries not yet
 * committed are handed back to be settled as written); failed for good → the mark is dropped
 * and they replay in order. The marks live in memory only: after a restart their producer is
 * gone and the rows are ordinary rows.
 *
 * ## Group commit
 * append() buffers entries; one transaction commits everything buffered after
 * SPOOL_COMMIT_LINGER_MS (or at once when 1000 are waiting). At FULL sync a single-row commit
 * costs an fsync; grouping makes that cost per batch, not per message. While records are held
 * back (below), an append never forces a commit: the 1 s retry or the next delete does.
 *
 * ## Holding records back
 * A transaction is committed only if it fits: under SPOOL_MAX_BYTES (policy `block`; the drop
 * policies drop instead) and above the free-space watermark of the file system (always like
 * `block`, never a drop; see headroom.ts). What does not fit stays pending, unacknowledged, in
 * order; the MQTT source stops reading once MAX_IN_FLIGHT_MESSAGES are unsettled, so the broker
 * keeps the rest. `stats().heldBy` says why. A failed commit holds too (`write_error`) and is
 * retried every second.
 *
 * ## A full file system
 * The watermark keeps the spool from filling its file system itself. When something else fills
 * it, deleting replayed rows and vacuuming first checkpoint (the WAL then starts over in the
 * space it already has), then release the reserve file beside the spool; opening releases it
 * too. A delete that still fails throws BRIDGE_ERR_SPOOL_DELETE and changes nothing: the replayer
 * keeps the rows it delivered and does not send them again (replayer.ts).
 */
import Database from 'better-sqlite3';
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { BridgeError, describeError } from '../errors.js';
import type { Pending } from '../kafka/types.js';
import { FaultReporter } from '../observability/fault-reporter.js';
import { Headroom, diskCost, type StatFs } from './headroom.js';
import type { HoldReason, Spool, SpoolDeps, SpoolRow, SpoolStats, StateStore } from './types.js';

const SCHEMA_VERSION = '1';
const GROUP_MAX = 1000;
const RETRY_MS = 1000;

/** A batch whose delivery is in doubt: its entries not committed yet, and the row ids of those committed. */
interface InDoubt {
  readonly pending: Set<Pending>;
  first: number;
  last: number;
  rows: number;
}

interface Row {
  row_id: number;
  msg_id: string;
  key_hash: number;
  topic: string;
  key: string | null;
  value: Buffer;
  headers: string;
  received_at: number;
  bytes: number;
}

export interface SqliteSpoolOptions extends SpoolDeps {
  readonly logger: Logger;
  /** For tests: the size and free space of the spool's file system. Default: statfs. */
  readonly statfs?: StatFs;
  /** For tests: how long a fault must stay over before its end is logged (FaultReporter settleMs). */
  readonly faultSettleMs?: number;
}

/** Opens (or creates) the spool. Throws BRIDGE_ERR_SPOOL_OPEN with the way out when it cannot. */
export function openSqliteSpool(config: Config['spool'], opts: SqliteSpoolOptions): Spool {
  return new SqliteSpool(config, opts);
}

/**
 * Rows in a closed spool file (the bridge's connection holds an exclusive lock while open), or 0
 * when there is no file yet. Used after a drain for scale-down to check on disk that nothing is left.
 */
export function countSpoolRowsOnDisk(path: string): number {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 1000 });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'SQLITE_CANTOPEN') return 0;
    throw err;
  }
  try {
    const t = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'").get();
    return t === undefined ? 0 : (db.prepare('SELECT count(*) AS n FROM records').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** SQLITE_FULL, or an I/O error (on some file systems a full disk surfaces as SQLITE_IOERR_*). */
export function isDiskError(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && (code === 'SQLITE_FULL' || code.startsWith('SQLITE_IOERR'));
}

interface Opened {
  readonly db: Database.Database;
  readonly rows: number;
  readonly bytes: number;
}

/** Opens the database with the spool's settings; closes it again if any step fails. */
function openDatabase(path: string): Opened {
  // A short busy timeout: the only other holder of the lock would be a second bridge.
  const db = new Database(path, { timeout: 1000 });
  try {
    // EXCLUSIVE before the first access: in WAL mode the WAL index then lives in this process
    // instead of a memory-mapped -shm file (creating one on a full file system fails, and a
    // mapped page there can fault), and the first write below takes the lock for the life of
    // the connection, so a second process on the same file fails (SQLITE_BUSY) instead of
    // replaying the same rows twice.
    db.pragma('locking_mode = EXCLUSIVE');
    // auto_vacuum only takes effect before the first table is created.
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY, v TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS records (
        row_id INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id TEXT NOT NULL,
        key_hash INTEGER NOT NULL,
        topic TEXT NOT NULL,
        key TEXT,
        value BLOB NOT NULL,
        headers TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        bytes INTEGER NOT NULL
      );`);
    const version = db.prepare('SELECT v FROM meta WHERE k = ?').pluck().get('schema_version') as string | undefined;
    if (version === undefined) db.prepare('INSERT INTO meta (k, v) VALUES (?, ?)').run('schema_version', SCHEMA_VERSION);
    else db.prepare('UPDATE meta SET v = ? WHERE k = ?').run(version, 'schema_version');
    if (version !== undefined && version !== SCHEMA_VERSION) throw new Error(`spool schema version ${version} is not supported (expected ${SCHEMA_VERSION})`);
    const totals = db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM records').get() as { n: number; b: number };
    return { db, rows: totals.n, bytes: totals.b };
  } catch (err) {
    db.close();
    throw err;
  }
}

class SqliteSpool implements Spool {
  private readonly db: Database.Database;
  private readonly log: Logger;
  private readonly insert: Database.Statement;
  private readonly stmts: Record<'read' | 'deleteRange' | 'deleteReturning' | 'oldest', Database.Statement>;
  /** Inserts in one transaction; returns the row ids given to in-doubt entries (empty when none). */
  private readonly insertMany: (entries: readonly Pending[]) => [Pending, number][];
  private readonly headroom: Headroom;
  /** Commits failing (disk, I/O). */
  private readonly commitFault: FaultReporter;
  /** Records held back by the free-space watermark (a state, reported like a fault). */
  private readonly diskFault: FaultReporter;
  /** Records held back by SPOOL_MAX_BYTES under the block policy. */
  private readonly fullFault: FaultReporter;
  private pending: Pending[] = [];
  /** Batches whose delivery is in doubt (appendInDoubt), by token: read() stops before their rows. */
  private readonly doubt = new Map<number, InDoubt>();
  /** In-doubt entries not committed yet, and their token. */
  private readonly doubtOf = new Map<Pending, number>();
  private lastToken = 0;
  /** The replay mark (meta `replay_sent_through`): no row above it was ever handed to Kafka by replay. */
  private sentMark = 0;
  private readonly setMark: Database.Statement;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private rows = 0;
  private bytes = 0;
  private heldBy: HoldReason | undefined;
  private closed = false;
  readonly state: StateStore;

  constructor(
    private readonly config: Config['spool'],
    private readonly deps: SqliteSpoolOptions,
  ) {
    this.log = deps.logger.child({ component: 'spool' });
    const settleMs = deps.faultSettleMs;
    this.commitFault = new FaultReporter({
      logger: this.log,
      fault: 'spool_commit',
      level: 'error',
      settleMs,
      startMsg: 'spool commit failed; records held (not acknowledged) and retried every second; check free disk space',
      summaryMsg: 'spool commits still failing; records held (not acknowledged)',
      endMsg: 'spool commits succeed again',
    });
    this.diskFault = new FaultReporter({
      logger: this.log,
      fault: 'spool_disk_low',
      level: 'error',
      settleMs,
      startMsg: "spool file system below its free-space watermark: new records held back (not acknowledged; the broker keeps them) until there is room; replay goes on",
      summaryMsg: 'spool file system still below its free-space watermark',
      endMsg: 'spool file system has room again: taking records',
    });
    this.fullFault = new FaultReporter({
      logger: this.log,
      fault: 'spool_full',
      level: 'warn',
      settleMs,
      startMsg: 'spool reached SPOOL_MAX_BYTES: new records held back (SPOOL_FULL_POLICY=block; not acknowledged, the broker keeps them) until replay makes room',
      summaryMsg: 'spool still at SPOOL_MAX_BYTES',
      endMsg: 'spool below SPOOL_MAX_BYTES again: taking records',
    });
    this.headroom = new Headroom(
      { dir: dirname(config.path), reservePath: `${config.path}-reserve`, minFreeBytes: config.minFreeBytes, minFreePercent: config.minFreePercent, reserveBytes: config.reserveBytes },
      { statfs: deps.statfs },
    );
    let opened: Opened;
    try {
      mkdirSync(dirname(config.path), { recursive: true });
      opened = this.openWithRoom();
    } catch (err) {
      const space = this.headroom.space();
      const full = isDiskError(err)
        ? ` The spool's file system has ${space.freeBytes} bytes free: free some space on it or grow the volume (the bridge keeps a reserve file, ${config.path}-reserve, for this case unless SPOOL_RESERVE_BYTES=0).`
        : '';
      throw new BridgeError(
        'BRIDGE_ERR_SPOOL_OPEN',
        `cannot open spool ${config.path}: ${describeError(err)}. The file was left untouched.${full} ` +
          `If another bridge uses this file (SQLITE_BUSY), give each instance its own SPOOL_PATH. ` +
          `If it is corrupt, stop the bridge, move it aside (mv ${config.path} ${config.path}.broken) together with its -wal and -shm files, ` +
          `and start again with an empty spool; the records in the old file can still be read with sqlite3.`,
        { cause: err },
      );
    }
    this.db = opened.db;
    this.rows = opened.rows;
    this.bytes = opened.bytes;
    this.insert = this.db.prepare(
      'INSERT INTO records (msg_id, key_hash, topic, key, value, headers, received_at, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.stmts = {
      read: this.db.prepare('SELECT row_id, msg_id, key_hash, topic, key, value, headers, received_at, bytes FROM records WHERE row_id > ? ORDER BY row_id LIMIT ?'),
      deleteRange: this.db.prepare('DELETE FROM records WHERE row_id BETWEEN ? AND ?'),
      // One pass: the deleted rows' sizes come back with the delete (no counting scan first).
      deleteReturning: this.db.prepare('DELETE FROM records WHERE row_id BETWEEN ? AND ? RETURNING bytes').pluck(),
      oldest: this.db.prepare('SELECT received_at FROM records ORDER BY row_id LIMIT 1').pluck(),
    };
    this.insertMany = this.db.transaction((entries: readonly Pending[]) => {
      const track = this.doubtOf.size > 0;
      const doubtful: [Pending, number][] = [];
      for (const e of entries) {
        const r = e.record;
        const info = this.insert.run(e.id, e.keyHash, r.topic, r.key, r.value, JSON.stringify(r.headers), e.receivedAtMs, e.bytes);
        if (track && this.doubtOf.has(e)) doubtful.push([e, Number(info.lastInsertRowid)]);
      }
      return doubtful;
    });
    this.state = stateStore(this.db);
    this.setMark = this.db.prepare("INSERT INTO meta (k, v) VALUES ('replay_sent_through', ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v");
    this.sentMark = Number(this.db.prepare("SELECT v FROM meta WHERE k = 'replay_sent_through'").pluck().get() ?? 0);
    if (this.rows > 0) this.log.info({ rows: this.rows, bytes: this.bytes, path: config.path }, 'spool holds records from an earlier run; they are replayed first');
    this.startDiskWatch();
  }

  /** Opens the database; on a full file system releases the reserve file and tries once more. */
  private openWithRoom(): Opened {
    try {
      return openDatabase(this.config.path);
    } catch (err) {
      if (!isDiskError(err) || !this.headroom.releaseReserve()) throw err;
      this.log.warn({ err: describeError(err), reserveBytes: this.config.reserveBytes }, 'spool file system full: released the reserve file to open the spool');
      return openDatabase(this.config.path);
    }
  }

  /** At open: write the reserve if it is missing, say when the settings can never work, hold records if there is no room. */
  private startDiskWatch(): void {
    const space = this.headroom.space();
    const view = this.headroom.view(space);
    if (this.headroom.impossible(space)) {
      this.log.error(
        { sizeBytes: space.sizeBytes, minFreeBytes: view.minFreeBytes, reserveBytes: this.config.reserveBytes },
        'the free-space watermark (SPOOL_MIN_FREE_BYTES / SPOOL_MIN_FREE_PERCENT) plus SPOOL_RESERVE_BYTES do not fit in the spool file system: the spool can never take records',
      );
    }
    if (this.config.reserveBytes > 0 && !this.headroom.ensureReserve()) {
      this.log.warn({ freeBytes: space.freeBytes, reserveBytes: this.config.reserveBytes }, 'no room for the spool reserve file yet; records are held back until it can be written');
    }
    if (this.headroom.room(false) <= 0) this.hold('disk_low');
  }

  append(entries: readonly Pending[]): void {
    if (this.closed) throw new BridgeError('BRIDGE_ERR_CLOSED', 'spool closed');
    for (const e of entries) this.pending.push(e);
    // While records are held back, the retry timer (or a delete making room) commits: an
    // append must not force a commit then, or every batch of appends would retry at once.
    if (this.heldBy !== undefined) return;
    if (this.pending.length >= GROUP_MAX) this.commit();
    else this.timer ??= setTimeout(() => this.commit(), this.config.commitLingerMs);
  }

  /** Commits the pending entries that fit, applying the full policy to those that do not. */
  private commit(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0 || this.closed) return;
    const batch = this.admit();
    if (batch.length === 0) return;
    let doubtful: [Pending, number][];
    try {
      doubtful = this.insertMany(batch);
    } catch (err) {
      // Rolled back: put the batch back in front, acknowledge nothing, retry later.
      this.pending = batch.concat(this.pending);
      this.writeFailed(err, batch.length);
      return;
    }
    this.commitFault.ok();
    for (const [e, rowId] of doubtful) this.committedInDoubt(e, rowId);
    this.rows += batch.length;
    for (const e of batch) this.bytes += e.bytes;
    if (this.pending.length === 0 || this.heldBy === 'write_error') this.hold(undefined);
    this.deps.onCommitted(batch);
    if (this.pending.length > 0 && this.heldBy === undefined) this.timer ??= setTimeout(() => this.commit(), 0);
  }

  private writeFailed(err: unknown, records: number): void {
    this.deps.onWriteError(err);
    this.commitFault.fail(err, { fields: { records, pending: this.pending.length } });
    this.hold('write_error');
    this.scheduleRetry();
  }

  /**
   * Takes from `pending` what may be committed now: what leaves the file system above its
   * watermark (always like the block policy: what does not fit waits, in order), then what
   * SPOOL_MAX_BYTES and its policy allow.
   */
  private admit(): Pending[] {
    let take = this.pending.splice(0, GROUP_MAX);
    // Minus the WAL: its frames not yet checkpointed may still grow the database by as much.
    const room = this.headroom.room(this.heldBy === 'disk_low') - this.walBytes();
    let cost = 0;
    let n = 0;
    for (; n < take.length; n++) {
      const c = diskCost(take[n]!.bytes);
      if (cost + c > room) break;
      cost += c;
    }
    if (n < take.length) {
      this.pending = take.slice(n).concat(this.pending);
      take = take.slice(0, n);
      this.hold('disk_low');
      if (take.length === 0) return [];
    } else if (this.heldBy === 'disk_low') {
      // Everything waiting fits above the watermark plus its resume margin: take records again
      // now, not only once nothing is pending (under steady inflow that moment never comes).
      this.hold(undefined);
    }

    const max = this.config.maxBytes;
    let incoming = 0;
    for (const e of take) incoming += e.bytes;
    if (this.bytes + incoming <= max) return take;

    switch (this.config.fullPolicy) {
      case 'drop_oldest': {
        try {
          this.dropOldest(this.bytes + incoming - max);
        } catch (err) {
          this.pending = take.concat(this.pending);
          this.writeFailed(err, take.length);
          return [];
        }
        return take;
      }
      case 'drop_newest': {
        const fits: Pending[] = [];
        const dropped: Pending[] = [];
        let room = max - this.bytes;
        for (const e of take) {
          if (e.bytes <= room) {
            fits.push(e);
            room -= e.bytes;
          } else dropped.push(e);
        }
        if (dropped.length > 0) {
          this.forgetInDoubt(dropped);
          this.deps.onDroppedPending(dropped, 'spool_full_newest');
        }
        return fits;
      }
      case 'block': {
        const fits: Pending[] = [];
        let room = max - this.bytes;
        let i = 0;
        for (; i < take.length; i++) {
          const e = take[i]!;
          if (e.bytes > room) break;
          fits.push(e);
          room -= e.bytes;
        }
        // Order matters: what does not fit waits, and everything after it waits too.
        this.pending = take.slice(i).concat(this.pending);
        if (this.pending.length > 0 && this.heldBy !== 'disk_low') this.hold('max_bytes');
        return fits;
      }
    }
  }

  private dropOldest(needBytes: number): void {
    const select = this.db.prepare('SELECT row_id, topic, key, bytes FROM records WHERE row_id > ? ORDER BY row_id LIMIT 1000');
    const dropped: { topic: string; key: string | null }[] = [];
    let freed = 0;
    let last = -1;
    while (freed < needBytes) {
      const page = select.all(last) as Pick<Row, 'row_id' | 'topic' | 'key' | 'bytes'>[];
      if (page.length === 0) break;
      for (const r of page) {
        if (freed >= needBytes) break;
        freed += r.bytes;
        last = r.row_id;
        dropped.push({ topic: r.topic, key: r.key });
      }
    }
    if (last < 0) return;
    this.withRoom('delete', () => this.stmts.deleteRange.run(0, last));
    this.rows -= dropped.length;
    this.bytes -= freed;
    this.deps.onDroppedRows(dropped, 'spool_full_oldest');
  }

  /**
   * Runs a write that frees space (delete, vacuum). On a full file system: checkpoint, so the
   * WAL starts over in the space it already has, and try again; then release the reserve file
   * and try again; then throw BRIDGE_ERR_SPOOL_DELETE. A failed attempt rolled back: nothing
   * changed.
   */
  private withRoom<T>(what: 'delete' | 'vacuum', fn: () => T): T {
    const fail = (err: unknown): BridgeError =>
      err instanceof BridgeError ? err : new BridgeError('BRIDGE_ERR_SPOOL_DELETE', `cannot ${what} spool rows: ${describeError(err)}`, { cause: err });
    let first: unknown;
    try {
      return fn();
    } catch (err) {
      if (!isDiskError(err)) throw fail(err);
      first = err;
    }
    this.log.debug({ err: describeError(first), what }, 'spool file system full: checkpointing so the WAL starts over, then trying again');
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
      return fn();
    } catch (err) {
      if (!isDiskError(err)) throw fail(err);
    }
    if (!this.headroom.releaseReserve()) throw fail(first);
    this.log.warn({ err: describeError(first), reserveBytes: this.config.reserveBytes, what }, 'spool file system full: released the reserve file to delete replayed records; records are held back until it is written again');
    // Its space is for draining: no records go in until the reserve is back.
    this.hold('disk_low');
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // the retry below tells
    }
    try {
      return fn();
    } catch (err) {
      throw fail(err);
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.checkDisk();
      this.commit();
    }, RETRY_MS);
    this.retryTimer.unref();
  }

  /** While held for lack of space: write the reserve again once there is room, and take records again once the watermark allows. */
  private checkDisk(): void {
    if (this.closed) return;
    if (!this.headroom.reservePresent && this.headroom.ensureReserve()) {
      this.log.info({ reserveBytes: this.config.reserveBytes }, 'spool reserve file written again');
    }
    if (this.heldBy === 'disk_low' && this.pending.length === 0 && this.headroom.room(true) > 0) this.hold(undefined);
    if (this.heldBy === 'disk_low') this.scheduleRetry();
  }

  private hold(reason: HoldReason | undefined): void {
    const prev = this.heldBy;
    if (prev === reason) return;
    this.heldBy = reason;
    const fields = { rows: this.rows, bytes: this.bytes, pending: this.pending.length };
    if (prev === 'disk_low') this.diskFault.ok('default', { ...fields, ...this.headroom.view() });
    if (prev === 'max_bytes') this.fullFault.ok('default', fields);
    if (reason === 'disk_low') {
      this.diskFault.fail(undefined, { fields: { ...fields, ...this.headroom.view() } });
      this.scheduleRetry();
    }
    if (reason === 'max_bytes') this.fullFault.fail(undefined, { fields: { ...fields, maxBytes: this.config.maxBytes } });
  }

  appendInDoubt(entries: readonly Pending[]): number {
    if (this.closed) throw new BridgeError('BRIDGE_ERR_CLOSED', 'spool closed');
    const token = ++this.lastToken;
    this.doubt.set(token, { pending: new Set(entries), first: Infinity, last: -Infinity, rows: 0 });
    for (const e of entries) this.doubtOf.set(e, token);
    this.append(entries);
    return token;
  }

  resolveInDoubt(token: number, delivered: boolean): Pending[] {
    const d = this.doubt.get(token);
    if (!d) return [];
    this.doubt.delete(token);
    for (const e of d.pending) this.doubtOf.delete(e);
    if (!delivered) return [];
    // Kafka has them: what is not committed yet leaves the spool (never acknowledged from here).
    let taken: Pending[] = [];
    if (d.pending.size > 0) {
      taken = this.pending.filter((e) => d.pending.has(e));
      this.pending = this.pending.filter((e) => !d.pending.has(e));
    }
    // One appendInDoubt() call's entries are contiguous in `pending` (FIFO), so their rows are one range.
    if (d.rows > 0 && !this.closed) {
      try {
        this.deleteRange(d.first, d.last);
      } catch (err) {
        this.log.error(
          { err: describeError(err), firstRowId: d.first, lastRowId: d.last },
          'cannot delete spooled records Kafka has acknowledged (their delivery was in doubt); they will be replayed, as duplicates with the same message ids',
        );
      }
    }
    return taken;
  }

  private committedInDoubt(e: Pending, rowId: number): void {
    const token = this.doubtOf.get(e);
    if (token === undefined) return;
    this.doubtOf.delete(e);
    const d = this.doubt.get(token);
    if (!d) return;
    d.pending.delete(e);
    d.rows++;
    if (rowId < d.first) d.first = rowId;
    if (rowId > d.last) d.last = rowId;
  }

  /** Entries dropped before they were stored: no longer part of their in-doubt batch. */
  private forgetInDoubt(entries: readonly Pending[]): void {
    if (this.doubtOf.size === 0) return;
    for (const e of entries) {
      const token = this.doubtOf.get(e);
      if (token === undefined) continue;
      this.doubtOf.delete(e);
      this.doubt.get(token)?.pending.delete(e);
    }
  }

  /** The lowest row id of a batch in doubt: read() stops before it. */
  private doubtFloor(): number {
    let floor = Infinity;
    for (const d of this.doubt.values()) if (d.first < floor) floor = d.first;
    return floor;
  }

  read(afterRowId: number, limit: number, maxBytes: number): SpoolRow[] {
    const rows = this.stmts.read.all(afterRowId, limit) as Row[];
    const out: SpoolRow[] = [];
    const floor = this.doubt.size > 0 ? this.doubtFloor() : Infinity;
    let size = 0;
    for (const r of rows) {
      if (r.row_id >= floor) break;
      if (out.length > 0 && size + r.bytes > maxBytes) break;
      size += r.bytes;
      out.push({
        rowId: r.row_id,
        id: r.msg_id,
        keyHash: r.key_hash,
        receivedAtMs: r.received_at,
        bytes: r.bytes,
        record: { topic: r.topic, key: r.key, value: r.value, headers: JSON.parse(r.headers) as Record<string, string>, timestampMs: r.received_at },
      });
    }
    return out;
  }

  sentThrough(): number {
    return this.sentMark;
  }

  markSent(rowId: number): void {
    if (rowId <= this.sentMark) return;
    this.setMark.run(String(rowId));
    this.sentMark = rowId;
  }

  deleteRows(rowIds: readonly number[]): void {
    if (rowIds.length === 0) return;
    const del = this.db.prepare('DELETE FROM records WHERE row_id = ? RETURNING bytes').pluck();
    const sizes: number[] = [];
    this.withRoom('delete', () =>
      this.db.transaction(() => {
        sizes.length = 0;
        for (const id of rowIds) {
          const b = del.get(id) as number | undefined;
          if (b !== undefined) sizes.push(b);
        }
      })(),
    );
    let bytes = 0;
    for (const b of sizes) bytes += b;
    this.rows -= sizes.length;
    this.bytes -= bytes;
  }

  deleteRange(firstRowId: number, lastRowId: number, sentThrough?: number): void {
    const mark = sentThrough !== undefined && sentThrough > this.sentMark ? sentThrough : undefined;
    const sizes = this.withRoom('delete', () =>
      mark === undefined
        ? (this.stmts.deleteReturning.all(firstRowId, lastRowId) as number[])
        : this.db.transaction(() => {
            const out = this.stmts.deleteReturning.all(firstRowId, lastRowId) as number[];
            this.setMark.run(String(mark));
            return out;
          })(),
    );
    if (mark !== undefined) this.sentMark = mark;
    let bytes = 0;
    for (const b of sizes) bytes += b;
    this.rows -= sizes.length;
    this.bytes -= bytes;
    // Room was made under SPOOL_MAX_BYTES: records held back by the block policy may go in now.
    // (Deleted pages go to SQLite's free list, not the file system: a watermark hold waits for compact().)
    if (this.heldBy === 'max_bytes') this.commit();
  }

  takeHeld(): Pending[] {
    // In-doubt entries must not go to Kafka from here while their producer may still write them.
    if (this.rows > 0 || this.pending.length === 0 || this.doubtOf.size > 0) return [];
    const held = this.pending;
    this.pending = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.heldBy === 'max_bytes' || this.heldBy === 'write_error') this.hold(undefined);
    return held;
  }

  expire(nowMs: number): number {
    if (this.config.maxAgeMs <= 0 || this.rows === 0) return 0;
    const cutoff = nowMs - this.config.maxAgeMs;
    const old = this.db.prepare('SELECT row_id, topic, key, bytes FROM records WHERE received_at < ? ORDER BY row_id').all(cutoff) as Pick<Row, 'row_id' | 'topic' | 'key' | 'bytes'>[];
    if (old.length === 0) return 0;
    const del = this.db.prepare('DELETE FROM records WHERE row_id = ?');
    let bytes = 0;
    this.withRoom('delete', () =>
      this.db.transaction(() => {
        bytes = 0;
        for (const r of old) {
          del.run(r.row_id);
          bytes += r.bytes;
        }
      })(),
    );
    this.rows -= old.length;
    this.bytes -= bytes;
    this.deps.onDroppedRows(old.map((r) => ({ topic: r.topic, key: r.key })), 'spool_max_age');
    if (this.heldBy === 'max_bytes') this.commit();
    return old.length;
  }

  flush(): void {
    while (this.pending.length > 0 && !this.closed) {
      const before = this.pending.length;
      this.commit();
      if (this.pending.length >= before) break; // held back or failing: leave it to the broker's redelivery
    }
  }

  stats(): SpoolStats {
    const oldest = this.rows > 0 ? (this.stmts.oldest.get() as number | undefined) : undefined;
    let inDoubt = 0;
    for (const d of this.doubt.values()) inDoubt += d.rows + d.pending.size;
    return {
      rows: this.rows,
      bytes: this.bytes,
      inDoubt,
      oldestReceivedAtMs: oldest,
      pending: this.pending.length,
      blocked: this.heldBy !== undefined,
      heldBy: this.heldBy,
      fileBytes: this.fileBytes(),
      disk: this.headroom.view(),
    };
  }

  private walBytes(): number {
    try {
      return statSync(`${this.config.path}-wal`).size;
    } catch {
      return 0;
    }
  }

  private fileBytes(): number {
    let n = 0;
    for (const suffix of ['', '-wal']) {
      try {
        n += statSync(this.config.path + suffix).size;
      } catch {
        // -wal may not exist
      }
    }
    return n;
  }

  compact(): void {
    try {
      this.withRoom('vacuum', () => this.db.exec('PRAGMA incremental_vacuum'));
      // The vacuum's truncation of the file reaches the file system at the checkpoint.
      this.db.pragma(this.rows === 0 ? 'wal_checkpoint(TRUNCATE)' : 'wal_checkpoint(PASSIVE)');
    } catch (err) {
      // Tried again after the next drain; a file system that stays low is reported by the watermark.
      this.log.info({ err: describeError(err) }, 'spool compaction failed; will retry after the next drain');
    }
    // Space may have come back: write the reserve again, take records again.
    this.checkDisk();
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const f of [this.commitFault, this.diskFault, this.fullFault]) f.close();
    if (this.pending.length > 0) this.log.warn({ pending: this.pending.length }, 'closing spool with uncommitted records; they were not acknowledged and the broker redelivers them');
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // best effort
    }
    this.db.close();
  }
}

/** The StateStore over the `state` table; each statement commits on its own (autocommit). */
function stateStore(db: Database.Database): StateStore {
  const get = db.prepare('SELECT v FROM state WHERE k = ?').pluck();
  const set = db.prepare('INSERT INTO state (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v');
  const del = db.prepare('DELETE FROM state WHERE k = ?');
  // substr, not LIKE: '%' and '_' in keys need no escaping.
  const list = db.prepare('SELECT k, v FROM state WHERE substr(k, 1, ?) = ? ORDER BY k');
  return {
    get: (key) => get.get(key) as string | undefined,
    set: (key, value) => void set.run(key, value),
    delete: (key) => void del.run(key),
    list: (prefix) => (list.all(prefix.length, prefix) as { k: string; v: string }[]).map((r) => [r.k, r.v]),
  };
}
