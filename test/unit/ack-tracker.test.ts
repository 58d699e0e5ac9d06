import { describe, expect, it } from 'vitest';
import { AckTracker } from '../../src/mqtt/ack-tracker.js';

function tracker() {
  const released: [number, number][] = [];
  const t = new AckTracker((id, gen) => released.push([id, gen]));
  return { t, released };
}

describe('ordered ack finalizer', () => {
  it('releases PUBACKs in receive order even when messages become durable out of order', () => {
    const { t, released } = tracker();
    const a = t.push(10, 1);
    const b = t.push(11, 1);
    const c = t.push(12, 1);
    t.settle(c);
    t.settle(b);
    expect(released).toEqual([]);
    t.settle(a);
    expect(released).toEqual([
      [10, 1],
      [11, 1],
      [12, 1],
    ]);
    expect(t.inFlight).toBe(0);
    expect(t.unacked).toBe(0);
  });

  it('releases up to the lowest sequence that is not yet durable', () => {
    const { t, released } = tracker();
    const seqs = [1, 2, 3, 4].map((id) => t.push(id, 1));
    t.settle(seqs[0]!);
    t.settle(seqs[1]!);
    t.settle(seqs[3]!);
    expect(released.map((r) => r[0])).toEqual([1, 2]);
    expect(t.inFlight).toBe(2);
    expect(t.waiting).toBe(1);
    expect(t.unacked).toBe(2);
  });

  it('keeps QoS 0 messages in the order but releases nothing for them', () => {
    const { t, released } = tracker();
    const q0 = t.push(-1, 1);
    const q1 = t.push(5, 1);
    t.settle(q1);
    expect(released).toEqual([]);
    t.settle(q0);
    expect(released).toEqual([[5, 1]]);
  });

  it('counts payload bytes in flight until released', () => {
    const { t } = tracker();
    const a = t.push(1, 1, 1000);
    const b = t.push(2, 1, 500);
    expect(t.inFlightBytes).toBe(1500);
    t.settle(b);
    expect(t.inFlightBytes).toBe(1500); // settled but waiting behind a: still held
    t.settle(a);
    expect(t.inFlightBytes).toBe(0);
  });

  it('ignores unknown and repeated settles', () => {
    const { t, released } = tracker();
    const s = t.push(1, 1);
    t.settle(s);
    t.settle(s);
    t.settle(99);
    t.settle(-5);
    expect(released).toEqual([[1, 1]]);
  });

  it('passes the connection generation so stale PUBACKs can be dropped', () => {
    const { t, released } = tracker();
    t.settle(t.push(1, 1));
    t.settle(t.push(1, 2));
    expect(released).toEqual([
      [1, 1],
      [1, 2],
    ]);
  });

  it('stays consistent over many messages (compaction)', () => {
    const { t, released } = tracker();
    const seqs: number[] = [];
    for (let i = 0; i < 20_000; i++) seqs.push(t.push(i % 65535, 1));
    for (let i = seqs.length - 1; i >= 0; i -= 2) t.settle(seqs[i]!);
    expect(released).toEqual([]);
    for (let i = 0; i < seqs.length; i += 2) t.settle(seqs[i]!);
    expect(released.map((r) => r[0])).toEqual(seqs.map((_, i) => i % 65535));
    for (let i = 0; i < 10_000; i++) t.settle(t.push(1, 1));
    expect(t.inFlight).toBe(0);
  });
});
