import { afterEach, describe, expect, it, vi } from 'vitest';
import { FaultReporter, type FaultReporterOptions } from '../../src/observability/fault-reporter.js';
import { captureLogger } from './fakes.js';

function reporter(over: Partial<FaultReporterOptions> = {}, level = 'info') {
  const { logger, lines } = captureLogger(level);
  let now = 1_000_000;
  const changes: boolean[] = [];
  const r = new FaultReporter({
    logger,
    fault: 'test_fault',
    startMsg: 'it broke',
    summaryMsg: 'still broken',
    endMsg: 'works again',
    settleMs: 0,
    now: () => now,
    onChange: (a) => changes.push(a),
    ...over,
  });
  return { r, lines, changes, advance: (ms: number) => (now += ms), atLeastWarn: () => lines.filter((l) => l.level === 'warn' || l.level === 'error') };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('fault reporter: one line at the start, a summary per interval, one at the end', () => {
  it('logs 10,000 failures in one minute as exactly one start line, and the recovery as one end line with the count', () => {
    const h = reporter();
    for (let i = 0; i < 10_000; i++) {
      h.r.fail(new Error(`attempt ${i} failed`));
      h.advance(5); // 50 s in all: under the 60 s summary interval
    }
    expect(h.lines).toHaveLength(1);
    expect(h.lines[0]).toMatchObject({ level: 'error', fault: 'test_fault', msg: 'it broke', err: 'Error: attempt 0 failed' });
    expect(h.r.active).toBe(true);
    expect(h.r.count).toBe(10_000);
    h.r.ok();
    expect(h.lines).toHaveLength(2);
    expect(h.lines[1]).toMatchObject({ level: 'info', msg: 'works again', failures: 10_000, durationMs: 50_000 });
    expect(h.changes).toEqual([true, false]);
    expect(h.r.active).toBe(false);
  });

  it('logs one warn summary per interval while failures go on, with the count and the last error', () => {
    const h = reporter({ summaryIntervalMs: 60_000 });
    h.r.fail(new Error('first'));
    // 5 minutes of failures every second: 300 failures -> 1 start + 5 summaries.
    for (let s = 1; s <= 300; s++) {
      h.advance(1000);
      h.r.fail(new Error(`failure ${s}`));
    }
    const summaries = h.lines.filter((l) => l.msg === 'still broken');
    expect(h.lines[0]!.msg).toBe('it broke');
    expect(summaries).toHaveLength(5);
    expect(summaries.every((l) => l.level === 'warn')).toBe(true);
    expect(summaries.map((l) => l.failures)).toEqual([61, 121, 181, 241, 301]);
    expect(summaries.map((l) => l.sinceLastLine)).toEqual([60, 60, 60, 60, 60]);
    expect(summaries[4]!.lastErr).toBe('Error: failure 300');
    expect(h.lines).toHaveLength(6);
  });

  it('starts a new fault with a new start line after an end', () => {
    const h = reporter();
    h.r.fail(new Error('a'));
    h.r.ok();
    h.r.fail(new Error('b'));
    expect(h.lines.map((l) => `${l.level}:${l.msg}`)).toEqual(['error:it broke', 'info:works again', 'error:it broke']);
    expect(h.r.count).toBe(1);
  });

  it('an ok() with no fault open logs nothing', () => {
    const h = reporter();
    h.r.ok();
    h.r.ok('worker-1');
    expect(h.lines).toEqual([]);
  });

  it('uses the level and message given by the failure for the start line', () => {
    const h = reporter({ level: 'warn' });
    h.r.fail(new Error('x'), { msg: 'MQTT broker refused the connection: Not authorized', level: 'error', fields: { retryInMs: 500 } });
    expect(h.lines).toEqual([expect.objectContaining({ level: 'error', msg: 'MQTT broker refused the connection: Not authorized', retryInMs: 500 })]);
  });
});

describe('fault reporter: sources', () => {
  it('lasts while any failing source has not recovered: one healthy worker does not end the fault of another', () => {
    const h = reporter();
    h.r.fail(new Error('w1'), { source: 'worker-1' });
    h.r.fail(new Error('replay'), { source: 'replay' });
    h.r.ok('worker-0'); // never failed: no effect
    h.r.ok('worker-1');
    expect(h.r.active).toBe(true);
    expect(h.lines).toHaveLength(1);
    h.r.ok('replay');
    expect(h.r.active).toBe(false);
    expect(h.lines.map((l) => l.msg)).toEqual(['it broke', 'works again']);
    expect(h.lines[1]!.failures).toBe(2);
  });

  it('clear() ends the fault whatever sources failed', () => {
    const h = reporter();
    h.r.fail(undefined, { source: 'a' });
    h.r.fail(undefined, { source: 'b' });
    h.r.clear({ why: 'drained' });
    expect(h.lines.map((l) => l.msg)).toEqual(['it broke', 'works again']);
    expect(h.lines[1]!.why).toBe('drained');
  });
});

describe('fault reporter: a changed problem', () => {
  it('logs a new problem once, then no more than one changed-problem line per interval however the problems alternate', () => {
    const h = reporter({ level: 'warn' });
    h.r.fail(new Error('ECONNREFUSED'), { msg: 'unreachable', problem: 'unreachable' });
    h.r.fail(new Error('not authorized'), { msg: 'refused: check the password', problem: 'refused', level: 'error' });
    for (let i = 0; i < 100; i++) {
      h.advance(100);
      h.r.fail(new Error('x'), i % 2 ? { msg: 'refused: check the password', problem: 'refused' } : { msg: 'unreachable', problem: 'unreachable' });
    }
    expect(h.lines.map((l) => `${l.level}:${l.msg}`)).toEqual(['warn:unreachable', 'error:refused: check the password']);
    expect(h.lines[1]!.failures).toBe(2);
  });

  it('a failure without a problem (same cause reported by another event) never counts as a change', () => {
    const h = reporter();
    h.r.fail(new Error('x'), { msg: 'a', problem: 'a' });
    h.r.fail(undefined);
    h.r.fail(new Error('x'), { msg: 'a', problem: 'a' });
    expect(h.lines).toHaveLength(1);
  });
});

describe('fault reporter: settling', () => {
  it('ends only after staying healthy for settleMs: a failure within it continues the same fault', () => {
    vi.useFakeTimers();
    const h = reporter({ settleMs: 5000, now: () => Date.now() });
    h.r.fail(new Error('down'));
    for (let i = 0; i < 20; i++) {
      h.r.ok();
      vi.advanceTimersByTime(1000); // back for 1 s, then down again: flapping
      h.r.fail(new Error('down again'));
    }
    expect(h.lines).toHaveLength(1);
    h.r.ok();
    vi.advanceTimersByTime(4999);
    expect(h.lines).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(h.lines.map((l) => l.msg)).toEqual(['it broke', 'works again']);
    expect(h.lines[1]!.failures).toBe(21);
    expect(h.changes).toEqual([true, false]);
  });

  it('close() drops a pending end (shutdown) without logging it', () => {
    vi.useFakeTimers();
    const h = reporter({ settleMs: 5000 });
    h.r.fail(new Error('down'));
    h.r.ok();
    h.r.close();
    vi.advanceTimersByTime(10_000);
    expect(h.lines).toHaveLength(1);
  });
});

describe('fault reporter at LOG_LEVEL=debug', () => {
  it('shows each further failure at debug only, with its error; the lines above debug stay the same', () => {
    const h = reporter({}, 'debug');
    for (let i = 0; i < 50; i++) h.r.fail(new Error(`failure ${i}`), { source: 'w1' });
    const debug = h.lines.filter((l) => l.level === 'debug');
    expect(debug).toHaveLength(49);
    expect(debug[48]).toMatchObject({ fault: 'test_fault', source: 'w1', err: 'Error: failure 49' });
    expect(h.atLeastWarn()).toHaveLength(1);
  });
});
