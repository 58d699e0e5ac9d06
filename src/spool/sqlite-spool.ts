/**
 * # The SQLite spool
 *
 * Holds records that could not be written to Kafka, durably, in receive order, until replay
 * delivers them.
 *
 * ## Format
 * One better-sqlite3 connection (the only writer), WAL journal, `synchronous=FULL` (a commit
 * survives power loss, not only a process crash), `auto_vacuum=INCREMENTAL` set before the
 * first table exists so freed pages can be returned to the file system after a drain.
 *
 *     meta(k TEXT PRIMARY KEY, v TEXT)            -- schema_version
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
 * - after Kafka ack, before delete: the row is replayed again → a duplicate with the same
 *   message id (consumers drop it).
 * - during delete or vacuum: SQLite's WAL makes it all-or-nothing.
 *
 * ## Group commit
 * append() buffers entries; one transaction commits everything buffered after
 * SPOOL_COMMIT_LINGER_MS (or at once when 1000 are waiting). At FULL sync a single-row commit
 * costs an fsync; grouping makes that cost per batch, not per message.
 */
import Database from 'better-sqlite3';
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { BridgeError, describeError } from '../errors.js';
import type { Pending } from '../kafka/types.js';
import type { Spool, SpoolDeps, SpoolRow, SpoolStats, StateStore } from './types.js';

const SCHEMA_VERSION = '1';
const GROUP_MAX = 1000;
const RETRY_MS = 1000;

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
}

/** Opens (or creates) the spool. Throws BRIDGE_ERR_SPOOL_OPEN with the way out when it cannot. */
export function openSqliteSpool(config: Config['spool'], opts: SqliteSpoolOptions): Spool {
  return new SqliteSpool(config, opts);
}

class SqliteSpool implements Spool {
  private readonly db: Database.Database;
  private readonly log: Logger;
  private readonly insert: Database.Statement;
  private readonly stmts: Record<'read' | 'sumRange' | 'deleteRange' | 'oldest', Database.Statement>;
  private readonly insertMany: (entries: readonly Pending[]) => void;
  private pending: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private rows = 0;
  private bytes = 0;
  private blocked = false;
  private closed = false;
  readonly state: StateStore;

  constructor(
    private readonly config: Config['spool'],
    private readonly deps: SqliteSpoolOptions,
  ) {
    this.log = deps.logger.child({ component: 'spool' });
    try {
      mkdirSync(dirname(config.path), { recursive: true });
      // A short busy timeout: the only other holder of the lock would be a second bridge.
      this.db = new Database(config.path, { timeout: 1000 });
      // auto_vacuum only takes effect before the first table is created.
      this.db.pragma('auto_vacuum = INCREMENTAL');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      // One bridge per spool: with EXCLUSIVE locking the first write below takes the lock for
      // the life of the connection, so a second process on the same file fails here (SQLITE_BUSY)
      // instead of replaying the same rows twice.
      this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.exec(`
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
      const version = this.db.prepare('SELECT v FROM meta WHERE k = ?').pluck().get('schema_version') as string | undefined;
      if (version === undefined) this.db.prepare('INSERT INTO meta (k, v) VALUES (?, ?)').run('schema_version', SCHEMA_VERSION);
      else this.db.prepare('UPDATE meta SET v = ? WHERE k = ?').run(version, 'schema_version');
      if (version !== undefined && version !== SCHEMA_VERSION) throw new Error(`spool schema version ${version} is not supported (expected ${SCHEMA_VERSION})`);
      const totals = this.db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM records').get() as { n: number; b: number };
      this.rows = totals.n;
      this.bytes = totals.b;
    } catch (err) {
      throw new BridgeError(
        'BRIDGE_ERR_SPOOL_OPEN',
        `cannot open spool ${config.path}: ${describeError(err)}. The file was left untouched. ` +
          `If another bridge uses this file (SQLITE_BUSY), give each instance its own SPOOL_PATH. ` +
          `If it is corrupt, stop the bridge, move it aside (mv ${config.path} ${config.path}.broken) together with its -wal and -shm files, ` +
          `and start again with an empty spool; the records in the old file can still be read with sqlite3.`,
        { cause: err },
      );
    }
    this.insert = this.db.prepare(
      'INSERT INTO records (msg_id, key_hash, topic, key, value, headers, received_at, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.stmts = {
      read: this.db.prepare('SELECT row_id, msg_id, key_hash, topic, key, value, headers, received_at, bytes FROM records WHERE row_id > ? ORDER BY row_id LIMIT ?'),
      sumRange: this.db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM records WHERE row_id BETWEEN ? AND ?'),
      deleteRange: this.db.prepare('DELETE FROM records WHERE row_id BETWEEN ? AND ?'),
      oldest: this.db.prepare('SELECT received_at FROM records ORDER BY row_id LIMIT 1').pluck(),
    };
    this.insertMany = this.db.transaction((entries: readonly Pending[]) => {
      for (const e of entries) {
        const r = e.record;
        this.insert.run(e.id, e.keyHash, r.topic, r.key, r.value, JSON.stringify(r.headers), e.receivedAtMs, e.bytes);
      }
    });
    this.state = stateStore(this.db);
    if (this.rows > 0) this.log.info({ rows: this.rows, bytes: this.bytes, path: config.path }, 'spool holds records from an earlier run; they are replayed first');
  }

  append(entries: readonly Pending[]): void {
    if (this.closed) throw new BridgeError('BRIDGE_ERR_CLOSED', 'spool closed');
    for (const e of entries) this.pending.push(e);
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
    try {
      this.insertMany(batch);
    } catch (err) {
      // Rolled back: put the batch back in front, acknowledge nothing, retry later.
      this.pending = batch.concat(this.pending);
      this.setBlocked(true);
      this.deps.onWriteError(err);
      this.scheduleRetry();
      return;
    }
    this.rows += batch.length;
    for (const e of batch) this.bytes += e.bytes;
    if (this.pending.length === 0) this.setBlocked(false);
    this.deps.onCommitted(batch);
    if (this.pending.length > 0) this.timer ??= setTimeout(() => this.commit(), 0);
  }

  /** Takes from `pending` what may be committed now, honouring SPOOL_MAX_BYTES and the policy. */
  private admit(): Pending[] {
    const max = this.config.maxBytes;
    const take = this.pending.splice(0, GROUP_MAX);
    let incoming = 0;
    for (const e of take) incoming += e.bytes;
    if (this.bytes + incoming <= max) return take;

    switch (this.config.fullPolicy) {
      case 'drop_oldest': {
        this.dropOldest(this.bytes + incoming - max);
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
        if (dropped.length > 0) this.deps.onDroppedPending(dropped, 'spool_full_newest');
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
        if (this.pending.length > 0) this.setBlocked(true);
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
    this.deleteRangeInternal(0, last, freed, dropped.length);
    this.deps.onDroppedRows(dropped, 'spool_full_oldest');
  }

  private deleteRangeInternal(first: number, last: number, bytes: number, count: number): void {
    this.stmts.deleteRange.run(first, last);
    this.rows -= count;
    this.bytes -= bytes;
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.commit();
    }, RETRY_MS);
  }

  private setBlocked(b: boolean): void {
    if (this.blocked !== b) {
      this.blocked = b;
      this.log.warn({ rows: this.rows, bytes: this.bytes, pending: this.pending.length }, b ? 'spool blocked: holding new records back' : 'spool accepting again');
    }
  }

  read(afterRowId: number, limit: number, maxBytes: number): SpoolRow[] {
    const rows = this.stmts.read.all(afterRowId, limit) as Row[];
    const out: SpoolRow[] = [];
    let size = 0;
    for (const r of rows) {
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

  deleteRange(firstRowId: number, lastRowId: number): void {
    const t = this.stmts.sumRange.get(firstRowId, lastRowId) as { n: number; b: number };
    this.deleteRangeInternal(firstRowId, lastRowId, t.b, t.n);
    // Room was made: records held back by the block policy may go in now.
    if (this.pending.length > 0) this.commit();
  }

  expire(nowMs: number): number {
    if (this.config.maxAgeMs <= 0 || this.rows === 0) return 0;
    const cutoff = nowMs - this.config.maxAgeMs;
    const old = this.db.prepare('SELECT row_id, topic, key, bytes FROM records WHERE received_at < ? ORDER BY row_id').all(cutoff) as Pick<Row, 'row_id' | 'topic' | 'key' | 'bytes'>[];
    if (old.length === 0) return 0;
    const del = this.db.prepare('DELETE FROM records WHERE row_id = ?');
    let bytes = 0;
    this.db.transaction(() => {
      for (const r of old) {
        del.run(r.row_id);
        bytes += r.bytes;
      }
    })();
    this.rows -= old.length;
    this.bytes -= bytes;
    this.deps.onDroppedRows(old.map((r) => ({ topic: r.topic, key: r.key })), 'spool_max_age');
    return old.length;
  }

  flush(): void {
    while (this.pending.length > 0 && !this.closed) {
      const before = this.pending.length;
      this.commit();
      if (this.pending.length >= before) break; // blocked or failing: leave it to the broker's redelivery
    }
  }

  stats(): SpoolStats {
    const oldest = this.rows > 0 ? (this.stmts.oldest.get() as number | undefined) : undefined;
    return { rows: this.rows, bytes: this.bytes, oldestReceivedAtMs: oldest, pending: this.pending.length, blocked: this.blocked, fileBytes: this.fileBytes() };
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
      this.db.pragma('incremental_vacuum');
      if (this.rows === 0) this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'spool compaction failed; will retry');
    }
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
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
