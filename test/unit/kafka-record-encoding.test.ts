import { createRecord, createRecordsBatch, encodeRecordsFast, readRecordsBatch, Reader, type MessageRecord } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';

/**
 * patches/@platformatic+kafka+*.patch (applied by patch-package on `npm ci`, README "Memory and
 * CPU") encodes a batch's records into one Buffer. These tests pin that it writes exactly the
 * bytes of the library's own createRecord(), falls back to it off the common path, and that the
 * batch still reads back.
 */

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(r: () => number, max: number): Buffer {
  const n = Math.floor(r() * r() * max);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

function message(r: () => number, first: bigint): MessageRecord {
  const headers = new Map<Buffer, Buffer>();
  const nh = Math.floor(r() * 7);
  for (let h = 0; h < nh; h++) headers.set(Buffer.from(`h${h}-${Math.floor(r() * 1000)}`), bytes(r, 300));
  const roll = r();
  return {
    topic: 't',
    key: roll < 0.1 ? undefined : roll < 0.15 ? Buffer.alloc(0) : bytes(r, 200),
    value: r() < 0.05 ? Buffer.alloc(0) : bytes(r, 20_000),
    headers: r() < 0.1 ? undefined : headers,
    // Deltas on both sides of the first record, across one- to five-byte varints.
    timestamp: first + BigInt(Math.floor((r() - 0.3) * 10 ** Math.floor(r() * 9))),
  } as MessageRecord;
}

const reference = (ms: MessageRecord[], first: bigint): Buffer => Buffer.concat(ms.map((m, i) => Buffer.concat(createRecord(m, i, first).buffers)));

describe('Kafka record encoding (patched @platformatic/kafka)', () => {
  it('the patch is applied (npm ci runs patch-package)', () => {
    expect(typeof encodeRecordsFast, 'patches/ not applied: run `npm ci` (postinstall: patch-package)').toBe('function');
  });

  it('writes the same bytes as createRecord() for 500 random batches', () => {
    const r = rng(42);
    for (let b = 0; b < 500; b++) {
      const first = BigInt(1_764_000_000_000 + Math.floor(r() * 1e9));
      const ms = Array.from({ length: 1 + Math.floor(r() * 40) }, () => message(r, first));
      const fast = encodeRecordsFast(ms, first);
      expect(fast, `batch ${b} took the fallback`).toBeDefined();
      expect(fast!.equals(reference(ms, first)), `batch ${b}`).toBe(true);
    }
  });

  it('falls back to createRecord() off the common path', () => {
    const first = 1_764_000_000_000n;
    const ok = { topic: 't', value: Buffer.from('v'), timestamp: first } as MessageRecord;
    expect(encodeRecordsFast([ok, { ...ok, timestamp: first + 2n ** 31n }], first)).toBeUndefined();
    expect(encodeRecordsFast([{ ...ok, value: 'text' as unknown as Buffer }], first)).toBeUndefined();
    expect(encodeRecordsFast([{ ...ok, headers: { a: Buffer.from('b') } as unknown as Map<Buffer, Buffer> }], first)).toBeUndefined();
  });

  it('timestamp deltas beyond 32 bits read back (the @platformatic/dynamic-buffer part of the patch)', () => {
    // A spool replayed after 25 days, or a clock far off: deltas the library wrote wrong (its
    // 64-bit zigzag shifted by 31 and its varint loop masked only 32 bits).
    const first = 1_764_000_000_000n;
    const deltas = [0n, 2n ** 31n, 2n ** 40n + 5n, -(2n ** 31n) - 1n, -first];
    const ms = deltas.map((d) => ({ topic: 't', value: Buffer.from('v'), timestamp: first + d }) as MessageRecord);
    expect(encodeRecordsFast(ms, first)).toBeUndefined();
    const batch = readRecordsBatch(Reader.from(createRecordsBatch(ms)));
    expect(batch.records.map((x) => x.timestampDelta)).toEqual(deltas);
  });

  it('a batch reads back: keys, values, headers and timestamps', () => {
    const r = rng(7);
    const first = 1_764_000_000_000n;
    const ms = Array.from({ length: 500 }, () => message(r, first)).map((m) => ({ ...m, timestamp: (m.timestamp as bigint) < first ? first : m.timestamp }));
    const batch = readRecordsBatch(Reader.from(createRecordsBatch(ms.map((m) => ({ ...m })), { producerId: 7n, producerEpoch: 1, sequences: undefined })));
    expect(batch.records).toHaveLength(500);
    batch.records.forEach((rec, i) => {
      const m = ms[i]!;
      expect(rec.offsetDelta).toBe(i);
      expect(Buffer.from(rec.value ?? []).equals(m.value as Buffer)).toBe(true);
      expect(rec.key === undefined || rec.key === null ? null : Buffer.from(rec.key)).toEqual(m.key === undefined ? null : m.key);
      expect(rec.headers.length).toBe(m.headers?.size ?? 0);
      expect(BigInt(batch.firstTimestamp) + rec.timestampDelta).toBe(m.timestamp);
    });
  });
});
