import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { IdleMemoryRelease, memoryReducingCollect } from '../../src/memory/idle-release.js';
import { captureLogger } from './fakes.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A release over a fake clock and a fake bridge; `collects` counts the collections. */
function rig(afterMs = 10_000, repeatMs = 300_000) {
  const clock = { now: 1_000_000 };
  const bridge = { last: 0, busy: false };
  let collects = 0;
  const { logger, lines } = captureLogger();
  const r = new IdleMemoryRelease({
    afterMs,
    repeatMs,
    activity: { lastMessageAtMs: () => bridge.last, busy: () => bridge.busy },
    logger,
    collect: () => void collects++,
    now: () => clock.now,
    rss: () => 100 * 1048576,
  });
  const at = (ms: number) => {
    clock.now = 1_000_000 + ms;
    return r.check();
  };
  return { r, clock, bridge, at, lines, collects: () => collects };
}

describe('idle memory release (IDLE_MEMORY_RELEASE_MS)', () => {
  it('collects once the bridge has been quiet for the whole period, counted from start-up', () => {
    const t = rig();
    expect(t.at(5_000)).toBe(false);
    expect(t.at(9_999)).toBe(false);
    expect(t.at(10_000)).toBe(true);
    expect(t.collects()).toBe(1);
    // One line at debug, with what it gave back.
    const line = t.lines.find((l) => l.msg === 'quiet: memory-reducing garbage collection ran');
    expect(line).toMatchObject({ level: 'debug', rssBeforeMb: 100, quietMs: 10_000 });
  });

  it('once per quiet period, then every repeatMs while it lasts', () => {
    const t = rig(10_000, 300_000);
    expect(t.at(10_000)).toBe(true);
    for (const ms of [12_500, 60_000, 309_999]) expect(t.at(ms)).toBe(false);
    expect(t.at(310_000)).toBe(true);
    expect(t.at(311_000)).toBe(false);
    expect(t.collects()).toBe(2);
  });

  it('a received message starts the quiet period again', () => {
    const t = rig();
    expect(t.at(10_000)).toBe(true);
    t.bridge.last = t.clock.now + 20_000; // a message at 30 s
    expect(t.at(30_000)).toBe(false);
    expect(t.at(39_999)).toBe(false);
    expect(t.at(40_000)).toBe(true);
    expect(t.collects()).toBe(2);
  });

  it('never while anything is in flight, queued or replayed; quiet counts from the last check that saw it busy', () => {
    const t = rig();
    t.bridge.busy = true;
    for (const ms of [10_000, 20_000, 30_000]) expect(t.at(ms)).toBe(false);
    t.bridge.busy = false;
    expect(t.at(39_999)).toBe(false);
    expect(t.at(40_000)).toBe(true);
    expect(t.collects()).toBe(1);
  });

  it('0 turns it off: no collection, no timer', () => {
    const t = rig(0);
    expect(t.r.enabled).toBe(false);
    t.r.start();
    expect(t.at(1_000_000)).toBe(false);
    expect(t.collects()).toBe(0);
  });

  it('says so, once, when this Node cannot run the collection', () => {
    const { logger, lines } = captureLogger();
    const r = new IdleMemoryRelease({ afterMs: 10_000, repeatMs: 300_000, activity: { lastMessageAtMs: () => 0, busy: () => false }, logger, collect: undefined });
    expect(r.enabled).toBe(false);
    expect(r.check()).toBe(false);
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([expect.stringContaining('IDLE_MEMORY_RELEASE_MS has no effect')]);
  });

  it("the collection is V8's full one, and the process keeps no global gc()", async () => {
    const collect = memoryReducingCollect();
    expect(collect).toBeTypeOf('function');
    const kinds: number[] = [];
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) kinds.push((e as unknown as { detail: { kind: number } }).detail.kind);
    });
    obs.observe({ entryTypes: ['gc'] });
    collect!();
    await new Promise((r) => setTimeout(r, 50));
    obs.disconnect();
    expect(kinds).toContain(constants.NODE_PERFORMANCE_GC_MAJOR);
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });

  it('gives resident memory back: a process that touched its young generation (the image flags) shrinks by more than 15 MB', () => {
    // The image's heap flags; the burst touches every page of both 16 MB semi-spaces.
    const script = `
      import { memoryReducingCollect } from './src/memory/idle-release.ts';
      let keep = [];
      for (let i = 0; i < 3e6; i++) { const o = { a: i, b: 'x' + i }; if (i % 100 === 0) keep.push(o); }
      keep = null;
      await new Promise((r) => setTimeout(r, 200));
      const before = process.memoryUsage.rss();
      memoryReducingCollect()();
      const after = process.memoryUsage.rss();
      process.stdout.write(JSON.stringify({ before, after }));`;
    const flags = ['--max-old-space-size=160', '--max-semi-space-size=16', '--min-semi-space-size=16', '--no-allocation-site-pretenuring'];
    const r = spawnSync(process.execPath, [...flags, '--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } });
    if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
    const { before, after } = JSON.parse(r.stdout) as { before: number; after: number };
    expect((before - after) / 1048576).toBeGreaterThan(15);
  }, 60_000);
});
