import { createRecord, createRecordsBatch, encodeRecordsFast, murmur2, readRecordsBatch, Reader, type MessageRecord } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { prng as rng } from './prng.js';

/**
 * patches/@platformatic+kafka+*.patch (applied by patch-package on `npm ci`, README "Memory and
 * CPU") encodes a batch's records into one Buffer and hashes keys with 32-bit arithmetic. These
 * tests pin that it writes exactly the bytes of the library's own createRecord(), falls back to it
 * off the common path, that the batch still reads back, and that keys hash as the Java client's.
 */

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
    // A header that is not bytes, after good ones of the same record and batch; the next batch is encoded again.
    const good = new Map([[Buffer.from('a'), Buffer.from('b')]]);
    const bad = new Map<Buffer, Buffer>([[Buffer.from('a'), Buffer.from('b')], [Buffer.from('c'), 'text' as unknown as Buffer]]);
    expect(encodeRecordsFast([{ ...ok, headers: good }, { ...ok, headers: bad }], first)).toBeUndefined();
    expect(encodeRecordsFast([{ ...ok, headers: new Map([['text' as unknown as Buffer, Buffer.from('v')]]) }], first)).toBeUndefined();
    const again = encodeRecordsFast([{ ...ok, headers: good }], first);
    expect(again?.equals(reference([{ ...ok, headers: good }], first))).toBe(true);
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

/** The library's murmur2 before the patch (BigInt arithmetic), as the reference. */
function murmur2BigInt(data: Buffer): number {
  const m = 0x5bd1e995n;
  const shr = (num: bigint, bits: number) => BigInt(Number(BigInt.asIntN(32, num)) >>> bits);
  let h = 0x9747b28cn ^ BigInt(data.length);
  let i = 0;
  while (i < data.length - 3) {
    let k = BigInt(data.readInt32LE(i));
    i += 4;
    k *= m;
    k ^= shr(k, 24);
    k *= m;
    h *= m;
    h ^= k;
  }
  if (data.length % 4 > 0) {
    const tail = Buffer.alloc(4);
    data.copy(tail, 0, data.length - (data.length % 4));
    h ^= BigInt(tail.readInt32LE(0));
    h *= m;
  }
  h ^= shr(h, 13);
  h *= m;
  h ^= shr(h, 15);
  return Number(BigInt.asIntN(32, h));
}

describe('murmur2 (patched @platformatic/kafka: 32-bit arithmetic)', () => {
  it("gives the Java client's hashes (Kafka's own test vectors)", () => {
    const vectors: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [s, h] of vectors) expect(murmur2(Buffer.from(s)), s).toBe(h);
  });

  it('matches the BigInt version on 20,000 random keys of every length up to 64 bytes', () => {
    const r = rng(3);
    for (let i = 0; i < 20_000; i++) {
      const key = bytes(r, 65);
      expect(murmur2(key)).toBe(murmur2BigInt(key));
    }
    expect(murmur2(Buffer.alloc(0))).toBe(murmur2BigInt(Buffer.alloc(0)));
  });
});
