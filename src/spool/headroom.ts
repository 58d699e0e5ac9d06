/**
 * Free space on the spool's file system: the watermark that holds new records back well before
 * the file system is full, and the reserve file released when it is full anyway.
 *
 * Why both (measured with better-sqlite3 and the spool's settings on a full tmpfs): once an
 * insert fails with SQLITE_FULL, deleting replayed rows and checkpointing the WAL fail with
 * SQLITE_FULL too (the WAL cannot grow and cannot be reset before it is checkpointed, and the
 * checkpoint must first grow the database by the pages the inserts added), and opening the
 * file fails as well. The spool could then never drain. So:
 * - the watermark: the spool commits a transaction only if the file system keeps at least the
 *   watermark free after it and after the checkpoint of everything in the WAL (the transaction's
 *   size estimated by {@link diskCost}, the WAL's by its file size), so the spool itself never
 *   takes the file system below the watermark, and deletes, checkpoints and the vacuum that
 *   gives the space back always have room;
 * - the reserve: something else can still fill the file system (another file on the volume). A
 *   reserve file of SPOOL_RESERVE_BYTES, written beside the spool while there is room, is
 *   deleted only when opening the spool or deleting replayed rows fails for lack of space; with
 *   it gone the spool opens, replays and deletes (a drain needs about one WAL, ~4 MiB at the
 *   default 1000-page autocheckpoint, and less when it checkpoints between deletes), and the
 *   reserve is written again once there is room for it. Records are not taken in while it is
 *   missing: its space is for draining, not for more records.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, renameSync, statSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import type { DiskView } from './types.js';

/** Size and free space of a file system, as an unprivileged process may use it. */
export interface DiskSpace {
  /** Bytes available to an unprivileged user (statfs bavail × bsize). */
  readonly freeBytes: number;
  /** Size of the file system (statfs blocks × bsize). */
  readonly sizeBytes: number;
}

export type StatFs = (dir: string) => DiskSpace;

export const statfsOf: StatFs = (dir) => {
  const s = statfsSync(dir);
  return { freeBytes: s.bavail * s.bsize, sizeBytes: s.blocks * s.bsize };
};

export interface HeadroomConfig {
  /** Directory of the spool file (the file system to watch). */
  readonly dir: string;
  /** Path of the reserve file. */
  readonly reservePath: string;
  readonly minFreeBytes: number;
  readonly minFreePercent: number;
  readonly reserveBytes: number;
}

/** The watermark: the larger of SPOOL_MIN_FREE_BYTES and SPOOL_MIN_FREE_PERCENT of the file system. */
export function watermarkBytes(sizeBytes: number, minFreeBytes: number, minFreePercent: number): number {
  return Math.max(minFreeBytes, Math.ceil((sizeBytes * minFreePercent) / 100));
}

/**
 * File-system bytes one record of `recordBytes` may take once committed: its WAL frame and,
 * after the checkpoint, its page in the database (about 1.3 × the record each, measured), plus
 * row and index overhead. Deliberately on the high side: it only decides how close to the
 * watermark a transaction may go.
 */
export function diskCost(recordBytes: number): number {
  return 3 * recordBytes + 256;
}

/** While records are held back for lack of space, they go in again only with this much more free: no flapping. */
export function resumeMargin(watermark: number): number {
  return Math.max(1 << 20, Math.ceil(watermark / 10));
}


export class Headroom {
  private reserveOk: boolean;
  private readonly statfs: StatFs;

  constructor(
    private readonly config: HeadroomConfig,
    deps: { statfs?: StatFs } = {},
  ) {
    this.statfs = deps.statfs ?? statfsOf;
    this.reserveOk = config.reserveBytes === 0 || reserveSize(config.reservePath) === config.reserveBytes;
  }

  /** The file system now. A failed statfs reads as "no room": holding records back is the safe side. */
  space(): DiskSpace {
    try {
      return this.statfs(this.config.dir);
    } catch {
      return { freeBytes: 0, sizeBytes: 0 };
    }
  }

  view(space = this.space()): DiskView {
    return { ...space, minFreeBytes: this.watermark(space), reserveBytes: this.reserveOk ? this.config.reserveBytes : 0 };
  }

  watermark(space = this.space()): number {
    return watermarkBytes(space.sizeBytes, this.config.minFreeBytes, this.config.minFreePercent);
  }

  /**
   * Bytes the spool may still write before reaching the watermark (≤ 0: none). `holding`: records
   * are already held back, so they go in again only with the resume margin on top. Nothing while
   * the reserve is missing.
   */
  room(holding: boolean): number {
    if (!this.reserveOk) return 0;
    const space = this.space();
    const mark = this.watermark(space);
    return space.freeBytes - mark - (holding ? resumeMargin(mark) : 0);
  }

  /** True when the watermark plus the reserve do not even fit in the file system: the spool can never take records. */
  impossible(space = this.space()): boolean {
    return space.sizeBytes > 0 && this.watermark(space) + this.config.reserveBytes >= space.sizeBytes;
  }

  get reservePresent(): boolean {
    return this.reserveOk;
  }

  /** Deletes the reserve file; true when there was one to delete. */
  releaseReserve(): boolean {
    if (this.config.reserveBytes === 0 || !existsSync(this.config.reservePath)) {
      this.reserveOk = this.config.reserveBytes === 0;
      return false;
    }
    unlinkSync(this.config.reservePath);
    this.reserveOk = false;
    return true;
  }

  /**
   * Writes the reserve file when it is missing and at least twice its size is free (it must
   * not itself take the last free bytes). Returns true when the reserve is in place afterwards.
   * Throws nothing: a failed write (ENOSPC) leaves no partial file and is tried again later.
   */
  ensureReserve(): boolean {
    if (this.reserveOk) return true;
    const size = this.config.reserveBytes;
    const current = reserveSize(this.config.reservePath);
    if (current === size) return (this.reserveOk = true);
    if (current >= 0) {
      // Another size (SPOOL_RESERVE_BYTES changed): write it again at the configured size.
      try {
        unlinkSync(this.config.reservePath);
      } catch {
        return false;
      }
    }
    if (this.space().freeBytes < 2 * size) return false;
    const tmp = `${this.config.reservePath}.tmp`;
    let fd: number | undefined;
    try {
      fd = openSync(tmp, 'w');
      // Random bytes: a compressing or deduplicating file system must really allocate them.
      const chunk = randomFillSync(Buffer.alloc(Math.min(size, 1 << 20)));
      for (let written = 0; written < size; ) {
        const n = writeSync(fd, chunk, 0, Math.min(chunk.length, size - written));
        written += n;
      }
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(tmp, this.config.reservePath);
      this.reserveOk = true;
      return true;
    } catch {
      if (fd !== undefined) closeSync(fd);
      try {
        unlinkSync(tmp);
      } catch {
        // never created
      }
      return false;
    }
  }
}

function reserveSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return -1;
  }
}
