import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config/types.js';
import type { Pending } from '../../src/kafka/types.js';
import { Headroom, diskCost, resumeMargin, watermarkBytes } from '../../src/spool/headroom.js';
import { openSqliteSpool } from '../../src/spool/sqlite-spool.js';
import type { DropReason, Spool } from '../../src/spool/types.js';
import { captureLogger } from './fakes.js';

/**
 * The spool's free-space watermark and reserve file, with the file system's size and free space
 * given by the test (a fake statfs). The same behaviour on a real, full file system is proven by
 * test/integration/disk-full.test.ts.
 */
const MiB = 1 << 20;
const SIZE = 1000 * MiB;
const WATERMARK = 50 * MiB;
const open: Spool[] = [];

afterEach(() => {
  for (const s of open.splice(0)) s.close();
  vi.useRealTimers();
});

function cfg(dir: string, over: Partial<Config['spool']> = {}): Config['spool'] {
  return {
    path: join(dir, 'spool.db'),
    replayIntervalMs: 1000,
    maxBytes: 1e12,
    maxAgeMs: 0,
    fullPolicy: 'block',
    commitLingerMs: 1,
    minFreeBytes: WATERMARK,
    minFreePercent: 0,
    reserveBytes: 0,
    ...over,
  };
}

let nextSeq = 0;
function entry(bytes = 100): Pending {
  const i = nextSeq++;
  return {
    record: { topic: 't', key: `k${i % 3}`, value: Buffer.from(`v${i}`), headers: {}, timestampMs: 1 },
    seq: i,
    id: `id-${i}`,
    keyHash: i % 3,
    receivedAtMs: 1,
    bytes,
  };
}

/** A spool on a fake file system of SIZE bytes with `disk.free` bytes free. */
function harness(over: Partial<Config['spool']> = {}, free = SIZE / 2) {
  const dir = mkdtempSync(join(tmpdir(), 'spool-disk-'));
  const disk = { free, size: SIZE };
  const committed: number[] = [];
  const dropped: { seq: number; reason: DropReason }[] = [];
  const writeErrors: unknown[] = [];
  const log = captureLogger();
  const spool = openSqliteSpool(cfg(dir, over), {
    logger: log.logger,
    statfs: () => ({ freeBytes: disk.free, sizeBytes: disk.size }),
    faultSettleMs: 0,
    onCommitted: (es) => committed.push(...es.map((e) => e.seq)),
    onDroppedPending: (es, reason) => dropped.push(...es.map((e) => ({ seq: e.seq, reason }))),
    onDroppedRows: () => undefined,
    onWriteError: (e) => writeErrors.push(e),
  });
  open.push(spool);
  return { spool, disk, committed, dropped, writeErrors, log, dir };
}

const seqs = (es: Pending[]) => es.map((e) => e.seq);
/** The spool's WAL size: the watermark check counts it as still to come (its checkpoint may grow the database). */
const wal = (h: { dir: string }) => {
  try {
    return statSync(join(h.dir, 'spool.db-wal')).size;
  } catch {
    return 0;
  }
};

describe('watermark', () => {
  it('is the larger of SPOOL_MIN_FREE_BYTES and SPOOL_MIN_FREE_PERCENT of the file system', () => {
    expect(watermarkBytes(10 * 1024 * MiB, 64 * MiB, 5)).toBe(Math.ceil(10 * 1024 * MiB * 0.05)); // 512 MiB
    expect(watermarkBytes(100 * MiB, 64 * MiB, 5)).toBe(64 * MiB);
    expect(watermarkBytes(100 * MiB, 0, 0)).toBe(0);
    expect(resumeMargin(0)).toBe(MiB);
    expect(resumeMargin(512 * MiB)).toBe(Math.ceil((512 * MiB) / 10));
  });
});

describe('spool: free-space watermark', () => {
  it('commits only what keeps the file system above the watermark; the rest waits, unacknowledged and in order', () => {
    const h = harness();
    // Room for exactly three records of 100 bytes above the watermark (and the WAL's checkpoint).
    h.disk.free = WATERMARK + wal(h) + 3 * diskCost(100) + 10;
    const es = Array.from({ length: 10 }, () => entry());
    h.spool.append(es);
    h.spool.flush();
    expect(h.committed).toEqual(seqs(es.slice(0, 3)));
    expect(h.spool.stats()).toMatchObject({ rows: 3, pending: 7, blocked: true, heldBy: 'disk_low' });
    expect(h.spool.stats().disk).toEqual({ freeBytes: h.disk.free, sizeBytes: SIZE, minFreeBytes: WATERMARK, reserveBytes: 0 });
    // Still short of watermark + resume margin: nothing more goes in, however often it is asked.
    h.spool.flush();
    h.spool.append([entry()]);
    h.spool.flush();
    expect(h.committed).toEqual(seqs(es.slice(0, 3)));
    expect(h.writeErrors).toEqual([]);
  });

  it('holds like the block policy whatever SPOOL_FULL_POLICY says: drop_newest and drop_oldest drop nothing for lack of disk space', () => {
    for (const fullPolicy of ['drop_newest', 'drop_oldest'] as const) {
      const h = harness({ fullPolicy, maxBytes: 1e12 }, WATERMARK - 1);
      h.spool.append(Array.from({ length: 5 }, () => entry()));
      h.spool.flush();
      expect(h.committed, fullPolicy).toEqual([]);
      expect(h.dropped, fullPolicy).toEqual([]);
      expect(h.spool.stats(), fullPolicy).toMatchObject({ pending: 5, heldBy: 'disk_low' });
    }
  });

  it('takes records again by itself once space frees (1 s retry), acknowledging the held ones in their order', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({}, WATERMARK - 1);
    const es = Array.from({ length: 5 }, () => entry());
    h.spool.append(es);
    vi.advanceTimersByTime(5_000);
    expect(h.committed).toEqual([]);
    h.disk.free = WATERMARK + resumeMargin(WATERMARK) + 10 * MiB;
    vi.advanceTimersByTime(1_000);
    expect(h.committed).toEqual(seqs(es));
    expect(h.spool.stats()).toMatchObject({ rows: 5, pending: 0, blocked: false });
    expect(h.spool.stats().heldBy).toBeUndefined();
  });

  it('lifts the hold under steady inflow too: once space is back, records committed at once, not one group a second', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({}, WATERMARK - 1);
    h.spool.append(Array.from({ length: 3_000 }, () => entry()));
    vi.advanceTimersByTime(2_000);
    expect(h.committed).toEqual([]);
    h.disk.free = WATERMARK + resumeMargin(WATERMARK) + 100 * MiB;
    // Records keep arriving (the source reads more as soon as some are acknowledged).
    for (let t = 0; t < 1_000; t += 100) {
      h.spool.append(Array.from({ length: 500 }, () => entry()));
      vi.advanceTimersByTime(100);
    }
    // The 1 s retry found room; what it did not take in its group follows at once.
    vi.advanceTimersByTime(100);
    expect(h.committed).toHaveLength(8_000);
    expect(h.spool.stats()).toMatchObject({ pending: 0, blocked: false });
    expect(h.spool.stats().heldBy).toBeUndefined();
  });

  it('needs the resume margin on top of the watermark before it takes records again (no flapping at the mark)', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({}, WATERMARK - 1);
    h.spool.append([entry()]);
    h.disk.free = WATERMARK + resumeMargin(WATERMARK) + wal(h) - 1; // above the mark, below mark + margin
    vi.advanceTimersByTime(10_000);
    expect(h.committed).toEqual([]);
    h.disk.free = WATERMARK + resumeMargin(WATERMARK) + wal(h) + diskCost(100);
    vi.advanceTimersByTime(1_000);
    expect(h.committed).toHaveLength(1);
  });

  it('holds from the start when the file system is already below the watermark at open, and says so in stats', () => {
    const h = harness({ minFreePercent: 10 }, 20 * MiB);
    expect(h.spool.stats()).toMatchObject({ blocked: true, heldBy: 'disk_low', pending: 0 });
    expect(h.spool.stats().disk).toMatchObject({ freeBytes: 20 * MiB, minFreeBytes: 100 * MiB });
    expect(h.log.lines.filter((l) => l.fault === 'spool_disk_low' && l.level === 'error')).toHaveLength(1);
  });

  it('logs the hold as one error line when it starts and one info line when it ends, not per append or per retry', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({}, WATERMARK - 1);
    for (let i = 0; i < 200; i++) {
      h.spool.append([entry(), entry()]);
      vi.advanceTimersByTime(300); // 60 s: 60 retries
    }
    h.disk.free = SIZE / 2;
    vi.advanceTimersByTime(1_000);
    expect(h.committed).toHaveLength(400);
    const mine = h.log.lines.filter((l) => l.fault === 'spool_disk_low');
    expect(mine.map((l) => `${l.level}:${l.msg}`)).toEqual([
      expect.stringMatching(/^error:spool file system below its free-space watermark/),
      'info:spool file system has room again: taking records',
    ]);
    expect(h.log.atLeastWarn()).toHaveLength(1);
  });
});

describe('spool: commit failures do not flood', () => {
  it('an append while commits fail never forces a commit: a failing disk is retried once a second, logged once', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ minFreeBytes: 0 }, SIZE / 2);
    // A real SQLITE_FULL: cap the database at its current size.
    const db = (h.spool as unknown as { db: { pragma: (s: string, o?: object) => unknown } }).db;
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
    const big = (): Pending => ({ ...entry(), record: { ...entry().record, value: Buffer.alloc(64 * 1024) } });
    h.spool.append([big()]);
    vi.advanceTimersByTime(5); // the linger commit fails
    expect(h.writeErrors).toHaveLength(1);
    // 5,000 records in batches of 1,000: each used to force a commit (and an error line) at once.
    for (let i = 0; i < 5; i++) h.spool.append(Array.from({ length: 1000 }, () => entry()));
    expect(h.writeErrors).toHaveLength(1);
    vi.advanceTimersByTime(10_000);
    expect(h.writeErrors).toHaveLength(11); // one per second
    expect(h.committed).toEqual([]);
    expect(h.spool.stats()).toMatchObject({ blocked: true, heldBy: 'write_error', pending: 5001 });
    expect(h.log.atLeastWarn().map((l) => l.msg)).toEqual(['spool commit failed; records held (not acknowledged) and retried every second; check free disk space']);
    // Room again: everything commits, in order, and the end is logged once.
    db.pragma('max_page_count = 1000000');
    vi.advanceTimersByTime(2_000);
    expect(h.committed).toHaveLength(5001);
    expect(h.writeErrors).toHaveLength(11);
    expect(h.log.lines.filter((l) => l.fault === 'spool_commit').filter((l) => l.level !== 'debug').map((l) => l.level)).toEqual(['error', 'info']);
  });
});

describe('spool: records held back go to Kafka directly once the spool is empty', () => {
  it('takeHeld() returns nothing while rows remain, then the held records in order, once', () => {
    const h = harness();
    h.disk.free = WATERMARK + wal(h) + 2 * diskCost(100) + 10;
    const es = Array.from({ length: 5 }, () => entry());
    h.spool.append(es);
    h.spool.flush();
    expect(h.spool.stats()).toMatchObject({ rows: 2, pending: 3 });
    expect(h.spool.takeHeld()).toEqual([]);
    const rows = h.spool.read(0, 10, 1e9);
    h.spool.deleteRange(rows[0]!.rowId, rows[1]!.rowId);
    expect(seqs(h.spool.takeHeld())).toEqual(seqs(es.slice(2)));
    expect(h.spool.stats()).toMatchObject({ rows: 0, pending: 0 });
    expect(h.spool.takeHeld()).toEqual([]);
    expect(h.committed).toEqual(seqs(es.slice(0, 2)));
  });
});

describe('reserve file', () => {
  it('is written at open with exactly SPOOL_RESERVE_BYTES (no temporary file left), and reported', () => {
    const h = harness({ reserveBytes: 3 * MiB + 5 });
    const reserve = join(h.dir, 'spool.db-reserve');
    expect(statSync(reserve).size).toBe(3 * MiB + 5);
    expect(readdirSync(h.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(h.spool.stats().disk?.reserveBytes).toBe(3 * MiB + 5);
  });

  it('while released, the spool takes no records even far above the watermark; written again once twice its size is free', () => {
    const dir = mkdtempSync(join(tmpdir(), 'headroom-'));
    let free = 10 * MiB;
    const hr = new Headroom(
      { dir, reservePath: join(dir, 'r'), minFreeBytes: MiB, minFreePercent: 0, reserveBytes: 6 * MiB },
      { statfs: () => ({ freeBytes: free, sizeBytes: SIZE }) },
    );
    expect(hr.reservePresent).toBe(false);
    expect(hr.room(false)).toBe(0);
    expect(hr.ensureReserve()).toBe(false); // 10 MiB free < 2 × 6 MiB
    expect(existsSync(join(dir, 'r'))).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
    free = 12 * MiB;
    expect(hr.ensureReserve()).toBe(true);
    expect(statSync(join(dir, 'r')).size).toBe(6 * MiB);
    expect(hr.room(false)).toBe(11 * MiB);
    expect(hr.releaseReserve()).toBe(true);
    expect(existsSync(join(dir, 'r'))).toBe(false);
    expect(hr.room(false)).toBe(0);
    expect(hr.view().reserveBytes).toBe(0);
    expect(hr.releaseReserve()).toBe(false);
  });

  it('a reserve of another size (SPOOL_RESERVE_BYTES changed) is written again at the configured size', () => {
    const dir = mkdtempSync(join(tmpdir(), 'headroom-'));
    writeFileSync(join(dir, 'r'), Buffer.alloc(100));
    const hr = new Headroom({ dir, reservePath: join(dir, 'r'), minFreeBytes: 0, minFreePercent: 0, reserveBytes: MiB }, { statfs: () => ({ freeBytes: SIZE, sizeBytes: SIZE }) });
    expect(hr.reservePresent).toBe(false);
    expect(hr.ensureReserve()).toBe(true);
    expect(statSync(join(dir, 'r')).size).toBe(MiB);
  });

  it('says at open when watermark plus reserve can never fit in the file system', () => {
    const h = harness({ minFreeBytes: SIZE - MiB, reserveBytes: 2 * MiB }, SIZE);
    expect(h.log.lines.some((l) => l.level === 'error' && /can never take records/.test(l.msg))).toBe(true);
  });
});
