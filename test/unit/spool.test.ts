import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { BridgeError } from '../../src/errors.js';
import type { Pending } from '../../src/kafka/types.js';
import { openSqliteSpool } from '../../src/spool/sqlite-spool.js';
import type { DropReason, Spool } from '../../src/spool/types.js';

const logger = pino({ level: 'silent' });
const open: Spool[] = [];

function cfg(dir: string, over: Partial<Config['spool']> = {}): Config['spool'] {
  return { path: join(dir, 'spool.db'), replayIntervalMs: 1000, maxBytes: 1e9, maxAgeMs: 0, fullPolicy: 'block', commitLingerMs: 1, minFreeBytes: 0, minFreePercent: 0, reserveBytes: 0, ...over };
}

function entry(i: number, key = `k${i % 5}`, bytes = 100, receivedAtMs = Date.now()): Pending {
  return {
    record: { topic: 't', key, value: Buffer.from(`v${i}`), headers: { 'mqtt.message_id': `id-${i}` }, timestampMs: receivedAtMs },
    seq: i,
    id: `id-${i}`,
    keyHash: i % 5,
    receivedAtMs,
    bytes,
  };
}

function harness(dir: string, over: Partial<Config['spool']> = {}) {
  const committed: number[] = [];
  const droppedPending: { seq: number; reason: DropReason }[] = [];
  const droppedRows: { key: string | null; reason: DropReason }[] = [];
  const errors: unknown[] = [];
  const spool = openSqliteSpool(cfg(dir, over), {
    logger,
    onCommitted: (es) => committed.push(...es.map((e) => e.seq)),
    onDroppedPending: (es, reason) => droppedPending.push(...es.map((e) => ({ seq: e.seq, reason }))),
    onDroppedRows: (rows, reason) => droppedRows.push(...rows.map((r) => ({ key: r.key, reason }))),
    onWriteError: (e) => errors.push(e),
  });
  open.push(spool);
  return { spool, committed, droppedPending, droppedRows, errors };
}

const tmp = () => mkdtempSync(join(tmpdir(), 'spool-test-'));
const values = (s: Spool) => s.read(0, 100_000, 1e12).map((r) => r.record.value.toString());

afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

describe('spool: acknowledgements', () => {
  it('acknowledges entries only after their transaction committed, in append order', () => {
    const h = harness(tmp());
    h.spool.append([entry(0), entry(1)]);
    h.spool.append([entry(2)]);
    expect(h.committed).toEqual([]); // group commit: nothing acknowledged before the commit
    h.spool.flush();
    expect(h.committed).toEqual([0, 1, 2]);
    expect(values(h.spool)).toEqual(['v0', 'v1', 'v2']);
  });

  it('commits by itself after the linger', async () => {
    const h = harness(tmp(), { commitLingerMs: 5 });
    h.spool.append([entry(0)]);
    await new Promise((r) => setTimeout(r, 50));
    expect(h.committed).toEqual([0]);
  });

  it('treats a full disk (SQLITE_FULL) as back-pressure: nothing acknowledged, retried once there is room', () => {
    const h = harness(tmp());
    // A real SQLITE_FULL: cap the database at its current size, as a full file system would.
    const db = (h.spool as unknown as { db: { pragma: (s: string, o?: object) => unknown } }).db;
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages}`);
    const big = (i: number): Pending => ({ ...entry(i), record: { ...entry(i).record, value: Buffer.alloc(64 * 1024) } });
    h.spool.append([big(0), big(1)]);
    h.spool.flush();
    expect(h.committed).toEqual([]);
    expect(h.errors.length).toBeGreaterThanOrEqual(1);
    expect(String((h.errors[0] as { code?: string }).code)).toBe('SQLITE_FULL');
    expect(h.spool.stats()).toMatchObject({ rows: 0, pending: 2, blocked: true });
    db.pragma('max_page_count = 1000000');
    h.spool.flush();
    expect(h.committed).toEqual([0, 1]);
    expect(h.spool.stats()).toMatchObject({ rows: 2, pending: 0, blocked: false });
  });
});

describe('spool: ordering and replay reads', () => {
  it('reads rows in append order after a cursor and deletes ranges', () => {
    const h = harness(tmp());
    h.spool.append(Array.from({ length: 10 }, (_, i) => entry(i)));
    h.spool.flush();
    const page = h.spool.read(0, 4, 1e9);
    expect(page.map((r) => r.id)).toEqual(['id-0', 'id-1', 'id-2', 'id-3']);
    h.spool.deleteRange(page[0]!.rowId, page[3]!.rowId);
    const rest = h.spool.read(page[3]!.rowId, 100, 1e9);
    expect(rest.map((r) => r.id)).toEqual(['id-4', 'id-5', 'id-6', 'id-7', 'id-8', 'id-9']);
    expect(h.spool.stats().rows).toBe(6);
  });

  it('never reuses row ids after the table was emptied, so a replay cursor cannot skip rows', () => {
    const h = harness(tmp());
    h.spool.append([entry(0), entry(1)]);
    h.spool.flush();
    const first = h.spool.read(0, 10, 1e9);
    h.spool.deleteRange(first[0]!.rowId, first[1]!.rowId);
    h.spool.append([entry(2)]);
    h.spool.flush();
    const next = h.spool.read(first[1]!.rowId, 10, 1e9);
    expect(next.map((r) => r.id)).toEqual(['id-2']);
  });

  it('limits a page by bytes but always returns at least one row', () => {
    const h = harness(tmp());
    h.spool.append([entry(0, 'a', 600), entry(1, 'a', 600), entry(2, 'a', 600)]);
    h.spool.flush();
    expect(h.spool.read(0, 10, 1000)).toHaveLength(1);
    expect(h.spool.read(0, 10, 1200)).toHaveLength(2);
  });

  it('round-trips the record: topic, key, null key, value bytes, headers, timestamp', () => {
    const h = harness(tmp());
    const e = entry(7, 'badge-1');
    const bin = { ...entry(8), record: { ...entry(8).record, key: null, value: Buffer.from([0, 255, 1, 254]) } };
    h.spool.append([e, bin]);
    h.spool.flush();
    const [a, b] = h.spool.read(0, 10, 1e9);
    expect(a!.record).toEqual(e.record);
    expect(b!.record.key).toBeNull();
    expect([...b!.record.value]).toEqual([0, 255, 1, 254]);
  });
});

describe('spool: restart and crash recovery', () => {
  it('keeps committed rows across a reopen (crash between commit and delete replays them)', () => {
    const dir = tmp();
    const h = harness(dir);
    h.spool.append([entry(0), entry(1), entry(2)]);
    h.spool.flush();
    const page = h.spool.read(0, 1, 1e9);
    // "Kafka acknowledged" row 0 but we crash before deleteRange: simulate by closing without delete.
    expect(page).toHaveLength(1);
    open.pop()!.close();
    const again = harness(dir);
    expect(again.spool.stats().rows).toBe(3);
    expect(values(again.spool)).toEqual(['v0', 'v1', 'v2']);
  });

  it('holds an exclusive lock: a second process on the same file is refused with a clear error', () => {
    const dir = tmp();
    harness(dir);
    let err: unknown;
    try {
      harness(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BridgeError);
    expect((err as BridgeError).code).toBe('BRIDGE_ERR_SPOOL_OPEN');
  });

  it('refuses a corrupt file with BRIDGE_ERR_SPOOL_OPEN and never deletes it', () => {
    const dir = tmp();
    const path = join(dir, 'spool.db');
    writeFileSync(path, Buffer.alloc(8192, 7));
    let err: unknown;
    try {
      harness(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BridgeError);
    expect((err as BridgeError).code).toBe('BRIDGE_ERR_SPOOL_OPEN');
    expect((err as Error).message).toMatch(/move it aside/);
    expect(existsSync(path)).toBe(true);
    expect(readFileSync(path)).toEqual(Buffer.alloc(8192, 7));
  });
});

describe('spool: size limits', () => {
  it('block: holds what does not fit (acknowledging nothing of it) until replay makes room', () => {
    const h = harness(tmp(), { maxBytes: 1000, fullPolicy: 'block' });
    h.spool.append(Array.from({ length: 15 }, (_, i) => entry(i)));
    h.spool.flush();
    expect(h.committed).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(h.spool.stats()).toMatchObject({ rows: 10, pending: 5, blocked: true });
    const page = h.spool.read(0, 5, 1e9);
    h.spool.deleteRange(page[0]!.rowId, page[4]!.rowId);
    expect(h.committed).toEqual(Array.from({ length: 15 }, (_, i) => i));
    expect(h.spool.stats()).toMatchObject({ rows: 10, pending: 0, blocked: false });
    expect(h.droppedPending).toEqual([]);
    expect(h.droppedRows).toEqual([]);
  });

  it('drop_newest: stores what fits, drops (and reports) exactly the rest', () => {
    const h = harness(tmp(), { maxBytes: 1000, fullPolicy: 'drop_newest' });
    h.spool.append(Array.from({ length: 15 }, (_, i) => entry(i)));
    h.spool.flush();
    expect(h.committed).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(h.droppedPending.map((d) => d.seq)).toEqual([10, 11, 12, 13, 14]);
    expect(h.droppedPending.every((d) => d.reason === 'spool_full_newest')).toBe(true);
    expect(values(h.spool)).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`));
  });

  it('drop_oldest: deletes (and reports) exactly the oldest rows needed to make room', () => {
    const h = harness(tmp(), { maxBytes: 1000, fullPolicy: 'drop_oldest' });
    h.spool.append(Array.from({ length: 10 }, (_, i) => entry(i)));
    h.spool.flush();
    h.spool.append(Array.from({ length: 3 }, (_, i) => entry(10 + i)));
    h.spool.flush();
    expect(h.droppedRows).toHaveLength(3);
    expect(h.droppedRows.map((d) => d.key)).toEqual(['k0', 'k1', 'k2']);
    expect(values(h.spool)).toEqual(Array.from({ length: 10 }, (_, i) => `v${i + 3}`));
    expect(h.spool.stats().bytes).toBe(1000);
  });

  it('max age: drops (and reports) rows older than SPOOL_MAX_AGE_MS', () => {
    const h = harness(tmp(), { maxAgeMs: 60_000 });
    const now = Date.now();
    h.spool.append([entry(0, 'old', 100, now - 120_000), entry(1, 'new', 100, now)]);
    h.spool.flush();
    expect(h.spool.expire(now)).toBe(1);
    expect(h.droppedRows).toEqual([{ key: 'old', reason: 'spool_max_age' }]);
    expect(values(h.spool)).toEqual(['v1']);
  });

  it('returns freed pages to the file system after a drain (incremental vacuum)', () => {
    const h = harness(tmp());
    const big = (i: number): Pending => ({ ...entry(i), record: { ...entry(i).record, value: Buffer.alloc(4096, i % 256) } });
    h.spool.append(Array.from({ length: 2000 }, (_, i) => big(i)));
    h.spool.flush();
    h.spool.compact();
    const full = statSync((h.spool as unknown as { config: Config['spool'] }).config.path).size;
    const rows = h.spool.read(0, 100_000, 1e12);
    h.spool.deleteRange(rows[0]!.rowId, rows[rows.length - 1]!.rowId);
    h.spool.compact();
    const after = statSync((h.spool as unknown as { config: Config['spool'] }).config.path).size;
    expect(full).toBeGreaterThan(8_000_000);
    expect(after).toBeLessThan(full / 4);
  });
});

describe('spool: durable state', () => {
  it('keeps state across a restart, replaces, deletes and lists by prefix', () => {
    const dir = tmp();
    const a = harness(dir);
    a.spool.state.set('mqtt/subscriptions', '["a/#"]');
    a.spool.state.set('sparkplug/g1/n1', '{"x":1}');
    a.spool.state.set('sparkplug/g1/n1/d1', '{"y":2}');
    a.spool.state.set('sparkplug/g_%/n', '{}');
    a.spool.state.set('mqtt/subscriptions', '["b/#"]');
    a.spool.close();
    open.splice(open.indexOf(a.spool), 1);
    const b = harness(dir);
    expect(b.spool.state.get('mqtt/subscriptions')).toBe('["b/#"]');
    expect(b.spool.state.get('missing')).toBeUndefined();
    expect(b.spool.state.list('sparkplug/g1/').map(([k]) => k)).toEqual(['sparkplug/g1/n1', 'sparkplug/g1/n1/d1']);
    expect(b.spool.state.list('sparkplug/g_%').map(([k]) => k)).toEqual(['sparkplug/g_%/n']);
    b.spool.state.delete('sparkplug/g1/n1');
    expect(b.spool.state.list('sparkplug/g1/').map(([k, v]) => [k, v])).toEqual([['sparkplug/g1/n1/d1', '{"y":2}']]);
    expect(b.spool.stats().rows).toBe(0);
  });
});

describe('spool: batches whose delivery is in doubt', () => {
  it('stores and acknowledges an in-doubt batch, but read() stops before it and everything behind it', () => {
    const h = harness(tmp());
    h.spool.append([entry(0), entry(1)]);
    const token = h.spool.appendInDoubt([entry(2), entry(3)]);
    h.spool.append([entry(4)]);
    h.spool.flush();
    expect(h.committed).toEqual([0, 1, 2, 3, 4]);
    expect(h.spool.stats()).toMatchObject({ rows: 5, inDoubt: 2 });
    expect(values(h.spool)).toEqual(['v0', 'v1']);
    // Not delivered: the rows become ordinary rows, replayed in order.
    expect(h.spool.resolveInDoubt(token, false)).toEqual([]);
    expect(values(h.spool)).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
    expect(h.spool.stats()).toMatchObject({ rows: 5, inDoubt: 0 });
  });

  it('deletes exactly the in-doubt rows once Kafka acknowledged their batch', () => {
    const h = harness(tmp());
    h.spool.append([entry(0)]);
    const token = h.spool.appendInDoubt([entry(1), entry(2), entry(3)]);
    h.spool.append([entry(4), entry(5)]);
    h.spool.flush();
    expect(h.spool.resolveInDoubt(token, true)).toEqual([]);
    expect(values(h.spool)).toEqual(['v0', 'v4', 'v5']);
    expect(h.spool.stats()).toMatchObject({ rows: 3, inDoubt: 0 });
    // Resolving twice changes nothing.
    expect(h.spool.resolveInDoubt(token, true)).toEqual([]);
    expect(values(h.spool)).toEqual(['v0', 'v4', 'v5']);
  });

  it('hands back in-doubt entries not committed yet when their batch was delivered (never acknowledged from the spool)', () => {
    const h = harness(tmp(), { commitLingerMs: 60_000 });
    h.spool.append([entry(0)]);
    const token = h.spool.appendInDoubt([entry(1), entry(2)]);
    h.spool.append([entry(3)]);
    expect(h.spool.stats()).toMatchObject({ pending: 4, inDoubt: 2 });
    expect(h.spool.resolveInDoubt(token, true).map((e) => e.seq)).toEqual([1, 2]);
    h.spool.flush();
    expect(h.committed).toEqual([0, 3]);
    expect(values(h.spool)).toEqual(['v0', 'v3']);
  });

  it('keeps several in-doubt batches apart: one resolved still blocks reads at the other', () => {
    const h = harness(tmp());
    const a = h.spool.appendInDoubt([entry(0), entry(1)]);
    h.spool.append([entry(2)]);
    const b = h.spool.appendInDoubt([entry(3)]);
    h.spool.append([entry(4)]);
    h.spool.flush();
    expect(values(h.spool)).toEqual([]);
    h.spool.resolveInDoubt(a, true);
    expect(values(h.spool)).toEqual(['v2']);
    h.spool.resolveInDoubt(b, false);
    expect(values(h.spool)).toEqual(['v2', 'v3', 'v4']);
  });

  it('does not hand held-back records to Kafka directly while some of them are in doubt', () => {
    const h = harness(tmp(), { commitLingerMs: 60_000 });
    const token = h.spool.appendInDoubt([entry(0)]);
    h.spool.append([entry(1)]);
    expect(h.spool.takeHeld()).toEqual([]);
    h.spool.resolveInDoubt(token, false);
    expect(h.spool.takeHeld().map((e) => e.seq)).toEqual([0, 1]);
  });

  it('forgets in-doubt marks at a restart: the rows are ordinary rows again (their producer is gone)', () => {
    const dir = tmp();
    const h = harness(dir);
    h.spool.appendInDoubt([entry(0), entry(1)]);
    h.spool.flush();
    h.spool.close();
    open.splice(0);
    const again = harness(dir);
    expect(values(again.spool)).toEqual(['v0', 'v1']);
    expect(again.spool.stats().inDoubt).toBe(0);
  });
});

describe('spool: the replay mark', () => {
  it('is 0 on a spool that never had one (an existing file needs no migration), only rises, and survives a reopen', () => {
    const dir = tmp();
    const h = harness(dir);
    expect(h.spool.sentThrough()).toBe(0);
    h.spool.append([entry(0), entry(1), entry(2), entry(3)]);
    h.spool.flush();
    const [r0, r1, r2] = h.spool.read(0, 10, 1e12).map((r) => r.rowId);
    h.spool.markSent(r1!);
    h.spool.markSent(r0!);
    expect(h.spool.sentThrough()).toBe(r1);
    // Raised in the delete's own transaction.
    h.spool.deleteRange(r0!, r0!, r2);
    expect(h.spool.sentThrough()).toBe(r2);
    h.spool.deleteRows([r2!, 9999]);
    expect(values(h.spool)).toEqual(['v1', 'v3']);
    expect(h.spool.stats().rows).toBe(2);
    h.spool.close();
    open.splice(0);
    const again = harness(dir);
    expect(again.spool.sentThrough()).toBe(r2);
    expect(values(again.spool)).toEqual(['v1', 'v3']);
  });
});
