import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { findExecutable, makeTempDir } from './process.js';

/**
 * A small real file system for spool tests: a tmpfs, or an ext4 image on a loop device. Needs
 * root (CI runs as root) and mount/umount (and mkfs.ext4 for ext4). The harness only ever
 * unmounts what it mounted.
 */
export interface SmallFs {
  readonly kind: 'tmpfs' | 'ext4';
  /** The mount point. */
  readonly dir: string;
  readonly sizeBytes: number;
  /** Bytes an unprivileged process could still write (statfs bavail × bsize). */
  freeBytes(): number;
  /**
   * Fills the file system to 100 % with `name` (written until ENOSPC, down to 512-byte writes);
   * returns the bytes written.
   */
  fill(name?: string): number;
  /** Unmounts (retrying while busy, then lazily) and removes the image. Idempotent. */
  unmount(): void;
}

/** Why small file systems cannot be mounted here, or undefined when they can. */
export function smallFsUnavailable(kind: 'tmpfs' | 'ext4' = 'tmpfs'): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (mount)';
  if (!findExecutable('mount') || !findExecutable('umount')) return 'mount/umount not found';
  if (kind === 'ext4' && !findExecutable('mkfs.ext4')) return 'mkfs.ext4 not found';
  return undefined;
}

const mounted = new Set<SmallFs>();
let hook = false;

/** Mounts a file system of `sizeMiB`. ext4 is made with no blocks reserved for root (-m 0). */
export function mountSmallFs(kind: 'tmpfs' | 'ext4', sizeMiB: number): SmallFs {
  const why = smallFsUnavailable(kind);
  if (why) throw new Error(`cannot mount a ${kind}: ${why}`);
  const base = makeTempDir(`small-${kind}-`);
  const dir = path.join(base, 'mnt');
  fs.mkdirSync(dir);
  const image = path.join(base, 'fs.img');
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  };
  if (kind === 'tmpfs') {
    run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0777`, 'tmpfs', dir]);
  } else {
    fs.closeSync(fs.openSync(image, 'w'));
    fs.truncateSync(image, sizeMiB * 1024 * 1024);
    run('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
    run('mount', ['-o', 'loop', image, dir]);
  }
  let gone = false;
  const statfs = () => fs.statfsSync(dir);
  const small: SmallFs = {
    kind,
    dir,
    sizeBytes: statfs().blocks * statfs().bsize,
    freeBytes: () => {
      const s = statfs();
      return s.bavail * s.bsize;
    },
    fill(name = 'filler') {
      const fd = fs.openSync(path.join(dir, name), 'w');
      let written = 0;
      try {
        for (const size of [1 << 20, 64 << 10, 4096, 512]) {
          const chunk = Buffer.alloc(size, 0x5a);
          for (;;) {
            try {
              written += fs.writeSync(fd, chunk);
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
              break;
            }
          }
        }
        try {
          fs.fsyncSync(fd);
        } catch {
          // ext4 may refuse the fsync of delayed allocations at 100 %: what was written is allocated
        }
      } finally {
        fs.closeSync(fd);
      }
      return written;
    },
    unmount() {
      if (gone) return;
      for (let i = 0; i < 20; i++) {
        const r = spawnSync('umount', [dir], { encoding: 'utf8' });
        if (r.status === 0) {
          gone = true;
          break;
        }
        spawnSync('sleep', ['0.25']);
      }
      if (!gone) {
        spawnSync('umount', ['-l', dir]);
        gone = true;
      }
      mounted.delete(small);
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
  mounted.add(small);
  if (!hook) {
    hook = true;
    // A crashed test file must not leave mounts behind.
    process.on('exit', () => {
      for (const m of [...mounted]) m.unmount();
    });
  }
  return small;
}
