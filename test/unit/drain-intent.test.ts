import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { drainOnStopCommand } from '../../src/drain/cli.js';
import { drainIntentPath, drainIntentSetAt, hasDrainIntent } from '../../src/drain/intent.js';

describe('drain-on-stop (the intent to drain for a scale-down)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'drain-intent-'));
  const spoolPath = join(dir, 'spool.db');
  const lines: string[] = [];
  const run = (...args: string[]) => drainOnStopCommand(args, { SPOOL_PATH: spoolPath }, (l) => lines.push(l));

  it('writes a marker beside the spool, on the same volume, that a restart finds', () => {
    expect(hasDrainIntent(spoolPath)).toBe(false);
    expect(run()).toBe(0);
    expect(drainIntentPath(spoolPath)).toBe(`${spoolPath}.drain-on-stop`);
    expect(existsSync(`${spoolPath}.drain-on-stop`)).toBe(true);
    expect(hasDrainIntent(spoolPath)).toBe(true);
    expect(Date.parse(drainIntentSetAt(spoolPath) ?? '')).toBeGreaterThan(0);
    expect(lines.at(-1)).toMatch(/drain-on-stop set/);
  });

  it('--cancel removes it, and says so when there was none', () => {
    expect(run('--cancel')).toBe(0);
    expect(hasDrainIntent(spoolPath)).toBe(false);
    expect(lines.at(-1)).toMatch(/cancelled/);
    expect(run('--cancel')).toBe(0);
    expect(lines.at(-1)).toMatch(/no drain-on-stop mark/);
  });

  it('reads SPOOL_PATH as the bridge does (trimmed): the mark lands beside the spool the bridge opens', () => {
    expect(drainOnStopCommand([], { SPOOL_PATH: ` ${spoolPath} \n` }, (l) => lines.push(l))).toBe(0);
    expect(hasDrainIntent(spoolPath)).toBe(true);
    expect(run('--cancel')).toBe(0);
  });

  it('refuses unknown arguments and a SPOOL_PATH whose directory does not exist (exit 2)', () => {
    expect(run('--now')).toBe(2);
    expect(drainOnStopCommand([], { SPOOL_PATH: join(dir, 'missing', 'spool.db') }, (l) => lines.push(l))).toBe(2);
    expect(hasDrainIntent(join(dir, 'missing', 'spool.db'))).toBe(false);
  });
});
