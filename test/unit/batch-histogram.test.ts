import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BatchHistogram } from '../../src/observability/batch-histogram.js';

const BUCKETS = [0.001, 0.01, 0.1, 1, 10];

describe('BatchHistogram', () => {
  it('exposes exactly what observe() per value does (buckets, +Inf, sum, count, label sets)', async () => {
    const a = new Registry();
    const b = new Registry();
    const plain = new Histogram({ name: 'lat', help: 'h', labelNames: ['where'], buckets: BUCKETS, registers: [a] });
    const batch = new BatchHistogram({ name: 'lat', help: 'h', labelNames: ['where'], buckets: BUCKETS, registers: [b] });
    const now = 1_000_000;
    let seed = 1;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let round = 0; round < 50; round++) {
      const where = round % 3 === 0 ? 'spool' : 'kafka';
      // Values in every bucket and above the last (+Inf only), and exactly on bounds.
      const times = Array.from({ length: 1 + Math.floor(rnd() * 200) }, (_, i) => (i % 17 === 0 ? now - 1 : now - Math.floor(rnd() * rnd() * 20_000)));
      for (const t of times) plain.observe({ where }, (now - t) / 1000);
      batch.observeEach({ where }, times, (t) => (now - t) / 1000);
    }
    expect(await b.metrics()).toBe(await a.metrics());
    expect(await b.metrics()).toContain('lat_bucket{le="+Inf",where="spool"}');
  });

  it('rejects a value that is not a number, like observe()', () => {
    const h = new BatchHistogram({ name: 'x', help: 'h', labelNames: ['l'], buckets: BUCKETS, registers: [] });
    expect(() => h.observeEach({ l: 'a' }, [1, 2], (v) => (v === 2 ? Number.NaN : v))).toThrow(/not a valid number/);
  });
});
