import { MultipleErrors, ResponseError, TimeoutError } from '@platformatic/kafka';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { fnv1a } from '../../src/kafka/hash.js';
import type { Pending, WriteErrorKind } from '../../src/kafka/types.js';
import { WriterPool, kafkaWriteFault } from '../../src/kafka/writer-pool.js';
import { Telemetry } from '../../src/observability/telemetry.js';
import type { Spool, SpoolRow, SpoolStats } from '../../src/spool/types.js';
import { captureLogger, connectionError, FakeClient, ids, kafkaConfig, MemoryState, metric, recIds, tick, tooLarge } from './fakes.js';

const logger = pino({ level: 'silent' });

// --- fakes -------------------------------------------------------------------------------

/** Records what was appended, in order; throws once closed (as the real spool does). */
class FakeSpool implements Spool {
  readonly appended: Pending[] = [];
  closed = false;
  append(entries: readonly Pending[]): void {
    if (this.closed) throw new Error('spool closed');
    this.appended.push(...entries);
  }
  /** Batches appended in doubt (by token), and how each was resolved. */
  readonly inDoubt = new Map<number, { entries: Pending[]; resolved?: boolean }>();
  /** Entries resolveInDoubt(…, true) hands back as not yet committed (a test sets it). */
  uncommitted = new Set<Pending>();
  appendInDoubt(entries: readonly Pending[]): number {
    this.append(entries);
    const token = this.inDoubt.size + 1;
    this.inDoubt.set(token, { entries: [...entries] });
    return token;
  }
  resolveInDoubt(token: number, delivered: boolean): Pending[] {
    const d = this.inDoubt.get(token)!;
    d.resolved = delivered;
    return delivered ? d.entries.filter((e) => this.uncommitted.has(e)) : [];
  }
  read(): SpoolRow[] {
    return [];
  }
  deleteRange(): void {}
  sentThrough(): number {
    return 0;
  }
  markSent(): void {}
  deleteRows(): void {}
  expire(): number {
    return 0;
  }
  flush(): void {}
  stats(): SpoolStats {
    return { rows: this.appended.length, bytes: 0, oldestReceivedAtMs: undefined, pending: 0, blocked: false, fileBytes: 0 };
  }
  compact(): void {}
  takeHeld(): Pending[] {
    return [];
  }
  readonly state = new MemoryState();
  close(): void {
    this.closed = true;
  }
}

// --- helpers -----------------------------------------------------------------------------

let nextSeq = 0;
function entry(key: string, bytes = 100): Pending {
  const seq = nextSeq++;
  const id = `inst-${seq}`;
  return {
    record: { topic: 'out', key, value: Buffer.from(`v${seq}`), headers: { 'mqtt.message_id': id }, timestampMs: 1_000 + seq },
    seq,
    id,
    keyHash: fnv1a(key),
    receivedAtMs: 1_000 + seq,
    bytes,
  };
}

/** `n` distinct keys that hash(key) % workers sends to `worker`. */
function keysFor(worker: number, workers: number, n = 1): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) {
    const k = `key-${i}`;
    if (fnv1a(k) % workers === worker) out.push(k);
  }
  return out;
}

function harness(over: Partial<Config['kafka']> = {}, startSpooling = false, log: pino.Logger = logger, settleMs = 0) {
  const clients = new Map<string, FakeClient>();
  const written: Pending[] = [];
  const rejected: { entry: Pending; kind: WriteErrorKind }[] = [];
  const spool = new FakeSpool();
  const telemetry = new Telemetry(logger, { defaultMetrics: false });
  const pool = new WriterPool(
    kafkaConfig(over),
    {
      logger: log,
      kafkaFault: kafkaWriteFault(log, { settleMs }),
      telemetry,
      createClient: (name) => {
        const c = new FakeClient(name);
        clients.set(name, c);
        return c;
      },
      spool,
      onWritten: (es) => written.push(...es),
      onRejected: (es, kind) => rejected.push(...es.map((e) => ({ entry: e, kind }))),
    },
    startSpooling,
  );
  const client = (i: number): FakeClient => {
    const c = clients.get(`worker-${i}`);
    if (!c) throw new Error(`no client worker-${i}`);
    return c;
  };
  return { pool, clients, client, written, rejected, spool, telemetry };
}

afterEach(() => {
  vi.useRealTimers();
});

// --- tests -------------------------------------------------------------------------------

describe('writer pool: routing', () => {
  it('sends a record to worker hash(key) % N, so one key is always served by the same client', async () => {
    const h = harness({ workers: 3 });
    const keys = Array.from({ length: 30 }, (_, i) => `badge-${i}`);
    const submitted: Pending[] = [];
    for (let round = 0; round < 3; round++) {
      for (const k of keys) {
        const e = entry(k);
        submitted.push(e);
        h.pool.submit(e);
      }
      await tick();
    }
    expect(h.clients.size).toBe(3);
    const seenBy = new Map<string, Set<string>>();
    for (const [name, c] of h.clients) {
      for (const b of c.batches) for (const r of b) (seenBy.get(r.key!) ?? seenBy.set(r.key!, new Set()).get(r.key!)!).add(name);
    }
    for (const k of keys) expect([...seenBy.get(k)!]).toEqual([`worker-${fnv1a(k) % 3}`]);
    // All three workers got work (the keys spread), and everything was written.
    for (const c of h.clients.values()) expect(c.batches.length).toBeGreaterThan(0);
    expect(h.written).toHaveLength(submitted.length);
  });

  it('connect() sets every worker\'s producer up once, ahead of any write', () => {
    const h = harness({ workers: 3 });
    h.pool.connect();
    expect([...h.clients.values()].map((c) => [c.connects, c.batches.length])).toEqual([
      [1, 0],
      [1, 0],
      [1, 0],
    ]);
  });
});

describe('writer pool: batching', () => {
  it('keeps one produce request in flight per worker and sends what queued meanwhile as ONE next batch, in order', async () => {
    const h = harness({ workers: 1 });
    const c = h.client(0);
    c.mode = 'hang';
    const es = Array.from({ length: 6 }, (_, i) => entry(`k${i % 3}`));
    for (const e of es) h.pool.submit(e);
    expect(c.batches.map(recIds)).toEqual([[es[0]!.id]]);
    expect(h.pool.queued).toBe(5);
    expect(h.written).toEqual([]);

    c.release();
    await tick();
    expect(c.batches.map(recIds)).toEqual([[es[0]!.id], ids(es.slice(1))]);
    expect(ids(h.written)).toEqual([es[0]!.id]);

    c.release();
    await tick();
    expect(ids(h.written)).toEqual(ids(es));
    expect(c.maxInFlight).toBe(1);
    expect(h.pool.queued).toBe(0);
  });

  it('never puts more than KAFKA_BATCH_MAX_MESSAGES records in one batch', async () => {
    const h = harness({ workers: 1, batchMaxMessages: 3 });
    const c = h.client(0);
    c.mode = 'hang';
    const es = Array.from({ length: 8 }, () => entry('k'));
    for (const e of es) h.pool.submit(e);
    for (let i = 0; i < 4; i++) {
      c.release();
      await tick();
    }
    expect(c.batches.map((b) => b.length)).toEqual([1, 3, 3, 1]);
    expect(c.batches.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es));
    expect(ids(h.written)).toEqual(ids(es));
  });

  it('never exceeds KAFKA_BATCH_MAX_BYTES with more than one record, but sends an oversized record alone', async () => {
    const h = harness({ workers: 1, batchMaxBytes: 250 });
    const c = h.client(0);
    c.mode = 'hang';
    const es = [entry('k', 100), entry('k', 100), entry('k', 100), entry('k', 100), entry('k', 400), entry('k', 100), entry('k', 100)];
    for (const e of es) h.pool.submit(e);
    for (let i = 0; i < 5; i++) {
      c.release();
      await tick();
    }
    // [first alone] [100+100] [100] (next is 400: would exceed) [400 alone] [100+100]
    expect(c.batches.map((b) => b.length)).toEqual([1, 2, 1, 1, 2]);
    expect(ids(h.written)).toEqual(ids(es));
  });
});

describe('writer pool: workers take turns (KAFKA_LINGER_MS)', () => {
  const fakeTimers = (): void => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  };
  /** Requests in flight over all the pool's clients. */
  const inFlight = (h: ReturnType<typeof harness>): number => [...h.clients.values()].reduce((n, c) => n + c.inFlight, 0);

  it("waits while another worker's request is out, then sends what it gathered as ONE batch", async () => {
    fakeTimers();
    const h = harness({ workers: 2, lingerMs: 50 });
    const [k0] = keysFor(0, 2);
    const [k1] = keysFor(1, 2);
    h.client(0).mode = 'hang';
    const a = entry(k0!);
    const bs = [entry(k1!), entry(k1!), entry(k1!)];
    h.pool.submit(a);
    for (const b of bs) h.pool.submit(b);
    expect(h.client(0).batches.map(recIds)).toEqual([[a.id]]);
    expect(h.client(1).batches).toEqual([]);
    await vi.advanceTimersByTimeAsync(49);
    expect(h.client(1).batches).toEqual([]);
    // The request comes back within the linger time: the waiting worker goes next, at once.
    h.client(0).release();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.client(1).batches.map(recIds)).toEqual([ids(bs)]);
    expect(ids(h.written)).toEqual([a.id, ...ids(bs)]);
  });

  it('waits no longer than KAFKA_LINGER_MS: with Kafka slow, each worker gets its own request in flight', async () => {
    fakeTimers();
    const h = harness({ workers: 3, lingerMs: 50 });
    for (const i of [0, 1, 2]) h.client(i).mode = 'hang';
    const es = [0, 1, 2].map((w) => entry(keysFor(w, 3)[0]!));
    for (const e of es) h.pool.submit(e);
    expect(inFlight(h)).toBe(1);
    await vi.advanceTimersByTimeAsync(49);
    expect(inFlight(h)).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(inFlight(h)).toBe(3);
    for (const i of [0, 1, 2]) h.client(i).release();
    await vi.advanceTimersByTimeAsync(0);
    expect(ids(h.written).sort()).toEqual(ids(es).sort());
  });

  it('sends a full batch (KAFKA_BATCH_MAX_MESSAGES or KAFKA_BATCH_MAX_BYTES) without waiting', async () => {
    fakeTimers();
    const h = harness({ workers: 2, lingerMs: 1000, batchMaxMessages: 3, batchMaxBytes: 10_000 });
    const [k0] = keysFor(0, 2);
    const [k1] = keysFor(1, 2);
    h.client(0).mode = 'hang';
    h.client(1).mode = 'hang';
    h.pool.submit(entry(k0!));
    const bs = [entry(k1!), entry(k1!)];
    for (const b of bs) h.pool.submit(b);
    expect(h.client(1).batches).toEqual([]);
    const third = entry(k1!);
    h.pool.submit(third);
    await vi.advanceTimersByTimeAsync(0);
    expect(h.client(1).batches.map(recIds)).toEqual([ids([...bs, third])]);
    // By bytes: two records of 6,000 bytes reach 10,000 while worker 1 waits behind worker 0.
    h.client(1).release();
    await vi.advanceTimersByTimeAsync(0);
    const big = [entry(k1!, 6000), entry(k1!, 6000)];
    h.pool.submit(big[0]!);
    await vi.advanceTimersByTimeAsync(0);
    expect(h.client(1).batches).toHaveLength(1);
    h.pool.submit(big[1]!);
    await vi.advanceTimersByTimeAsync(0);
    // The batch bound still applies: the full queue leaves as two requests, one after the other.
    expect(h.client(1).batches.map(recIds).slice(1)).toEqual([[big[0]!.id]]);
  });

  it('gives the next turn to the worker that started waiting first', async () => {
    fakeTimers();
    const h = harness({ workers: 3, lingerMs: 1000 });
    for (const i of [0, 1, 2]) h.client(i).mode = 'hang';
    const [a, b, c] = [0, 2, 1].map((w) => entry(keysFor(w, 3)[0]!));
    h.pool.submit(a!); // worker 0 sends
    h.pool.submit(b!); // worker 2 waits first
    h.pool.submit(c!); // worker 1 waits second
    h.client(0).release();
    await vi.advanceTimersByTimeAsync(0);
    expect([h.client(2).batches.length, h.client(1).batches.length]).toEqual([1, 0]);
    h.client(2).release();
    await vi.advanceTimersByTimeAsync(0);
    expect(h.client(1).batches.map(recIds)).toEqual([[c!.id]]);
    expect(inFlight(h)).toBe(1);
  });

  it('keeps per-key order and one request per worker while turns shape the batches', async () => {
    fakeTimers();
    const h = harness({ workers: 4, lingerMs: 20, batchMaxMessages: 7 });
    for (const i of [0, 1, 2, 3]) h.client(i).mode = 'hang';
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const keys = [0, 1, 2, 3].flatMap((w) => keysFor(w, 4, 3));
    const submitted: Pending[] = [];
    for (let step = 0; step < 400; step++) {
      const r = rnd(10);
      if (r < 6) {
        const e = entry(keys[rnd(keys.length)]!);
        submitted.push(e);
        h.pool.submit(e);
      } else if (r < 9) {
        const c = h.client(rnd(4));
        if (c.hung.length > 0) c.release();
        await vi.advanceTimersByTimeAsync(0);
      } else {
        await vi.advanceTimersByTimeAsync(rnd(25));
      }
    }
    for (let guard = 0; guard < 500 && h.written.length < submitted.length; guard++) {
      for (const i of [0, 1, 2, 3]) if (h.client(i).hung.length > 0) h.client(i).release();
      await vi.advanceTimersByTimeAsync(5);
    }
    expect(ids(h.written).sort()).toEqual(ids(submitted).sort());
    for (const i of [0, 1, 2, 3]) expect(h.client(i).maxInFlight).toBe(1);
    const byKey = new Map<string, number[]>();
    for (const e of h.written) (byKey.get(e.record.key!) ?? byKey.set(e.record.key!, []).get(e.record.key!)!).push(e.seq);
    for (const seqs of byKey.values()) expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
  });

  it('at close, waiting workers send at once', async () => {
    fakeTimers();
    const h = harness({ workers: 2, lingerMs: 10_000 });
    const [k0] = keysFor(0, 2);
    const [k1] = keysFor(1, 2);
    h.client(0).mode = 'hang';
    h.pool.submit(entry(k0!));
    const b = entry(k1!);
    h.pool.submit(b);
    expect(h.client(1).batches).toEqual([]);
    void h.pool.close(Date.now() + 60_000);
    await vi.advanceTimersByTimeAsync(0);
    expect(h.client(1).batches.map(recIds)).toEqual([[b.id]]);
  });

  it('KAFKA_LINGER_MS=0, or one worker: nothing waits', async () => {
    const h = harness({ workers: 2, lingerMs: 0 });
    h.client(0).mode = 'hang';
    h.client(1).mode = 'hang';
    h.pool.submit(entry(keysFor(0, 2)[0]!));
    h.pool.submit(entry(keysFor(1, 2)[0]!));
    expect(inFlight(h)).toBe(2);
    const one = harness({ workers: 1, lingerMs: 1000 });
    one.client(0).mode = 'hang';
    one.pool.submit(entry('k'));
    expect(one.client(0).batches).toHaveLength(1);
  });
});

describe('writer pool: failure switches a worker to the spool', () => {
  it('spools the failed batch, then its queue, then later submits, in exactly that order, acknowledging none of them', async () => {
    const h = harness({ workers: 1 });
    const c = h.client(0);
    c.mode = 'hang';
    const first = entry('a');
    h.pool.submit(first);
    c.release(); // written directly
    await tick();
    expect(ids(h.written)).toEqual([first.id]);

    const failed = entry('a');
    h.pool.submit(failed); // in flight
    const queued = [entry('b'), entry('a'), entry('c')];
    for (const e of queued) h.pool.submit(e);
    // While the request is in flight nothing is spooled: a record is never in a request and in the spool at once.
    expect(h.spool.appended).toEqual([]);

    c.release(connectionError());
    await tick();
    expect(h.pool.spoolingWorkers).toBe(1);
    expect(h.pool.lastWriteOk).toBe(false);
    expect(ids(h.spool.appended)).toEqual([failed.id, ...ids(queued)]);

    const later = [entry('a'), entry('d')];
    for (const e of later) h.pool.submit(e);
    expect(ids(h.spool.appended)).toEqual([failed.id, ...ids(queued), ...ids(later)]);
    // Later submits go straight to the spool: no new produce request.
    expect(c.batches.map(recIds)).toEqual([[first.id], [failed.id]]);
    expect(ids(h.written)).toEqual([first.id]);

    // Written and spooled are disjoint and together are exactly what was submitted.
    const all = [first, failed, ...queued, ...later];
    expect([...ids(h.written), ...ids(h.spool.appended)].sort()).toEqual(ids(all).sort());
  });

  it('counts the failed write by kind', async () => {
    const h = harness({ workers: 1 });
    h.client(0).mode = connectionError();
    h.pool.submit(entry('a'));
    await tick();
    expect(await metric(h.telemetry, 'write_errors_total', { kind: 'connection', path: 'direct' })).toBe(1);
    expect(await metric(h.telemetry, 'kafka_up')).toBe(0);
    expect(await metric(h.telemetry, 'write_path_workers', { path: 'spooling' })).toBe(1);
    expect(await metric(h.telemetry, 'write_path_workers', { path: 'direct' })).toBe(0);

    const t = harness({ workers: 1 });
    t.client(0).mode = new MultipleErrors('produce failed 4 times.', [new TimeoutError('Request timed out', { canRetry: true })]);
    t.pool.submit(entry('a'));
    await tick();
    expect(await metric(t.telemetry, 'write_errors_total', { kind: 'timeout' })).toBe(1);
    expect(await metric(t.telemetry, 'write_errors_total', { kind: 'connection' })).toBe(0);
  });

  it('lets the other workers keep writing directly while one spools', async () => {
    const h = harness({ workers: 2 });
    const [bad] = keysFor(0, 2);
    const [good] = keysFor(1, 2);
    h.client(0).mode = connectionError();
    const b1 = entry(bad!);
    const g1 = entry(good!);
    h.pool.submit(b1);
    h.pool.submit(g1);
    await tick();
    expect(h.pool.spoolingWorkers).toBe(1);

    const b2 = entry(bad!);
    const g2 = entry(good!);
    h.pool.submit(b2);
    h.pool.submit(g2);
    await tick();
    expect(ids(h.written)).toEqual([g1.id, g2.id]);
    expect(ids(h.spool.appended)).toEqual([b1.id, b2.id]);
    expect(h.client(1).batches.flat().map((r) => r.key)).toEqual([good, good]);
    expect(h.client(0).batches).toHaveLength(1);
    expect(h.pool.spoolingWorkers).toBe(1);
  });

  it('switchAllToDirect() brings spooling workers back to writing to Kafka', async () => {
    const h = harness({ workers: 2 }, true);
    expect(h.pool.spoolingWorkers).toBe(2);
    const [k0] = keysFor(0, 2);
    const [k1] = keysFor(1, 2);
    const spooled = [entry(k0!), entry(k1!)];
    for (const e of spooled) h.pool.submit(e);
    expect(ids(h.spool.appended)).toEqual(ids(spooled));
    expect(h.client(0).batches).toEqual([]);

    h.pool.switchAllToDirect();
    expect(h.pool.spoolingWorkers).toBe(0);
    expect(h.pool.lastWriteOk).toBe(true);
    expect(await metric(h.telemetry, 'write_path_workers', { path: 'direct' })).toBe(2);
    const direct = [entry(k0!), entry(k1!)];
    for (const e of direct) h.pool.submit(e);
    await tick();
    expect(ids(h.written).sort()).toEqual(ids(direct).sort());
    expect(ids(h.spool.appended)).toEqual(ids(spooled));
  });
});

describe('writer pool: Kafka failures are logged as one fault', () => {
  it('logs every worker failing, again and again (Kafka flapping), as one warn line; one info line once writes stay good', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const cap = captureLogger('info');
    const h = harness({ workers: 4 }, false, cap.logger, 5000);
    for (let i = 0; i < 4; i++) h.client(i).mode = connectionError();
    // 50 rounds, one a second: each worker fails, spools, is switched back after a drain, fails again.
    for (let round = 0; round < 50; round++) {
      for (let k = 0; k < 8; k++) h.pool.submit(entry(`key-${k}`));
      await tick();
      h.pool.switchAllToDirect();
      vi.advanceTimersByTime(1000);
    }
    expect(await metric(h.telemetry, 'write_errors_total')).toBeGreaterThanOrEqual(100);
    for (let i = 0; i < 4; i++) h.client(i).mode = 'ok';
    for (let k = 0; k < 8; k++) h.pool.submit(entry(`key-${k}`));
    await tick();
    vi.advanceTimersByTime(5000);
    const mine = cap.lines.filter((l) => l.fault === 'kafka_write');
    expect(mine.map((l) => `${l.level}:${l.msg}`)).toEqual(['warn:Kafka write failed; spooling records until replay succeeds', 'info:Kafka writable again']);
    expect(mine[1]!.failures).toBe(await metric(h.telemetry, 'write_errors_total'));
    expect(cap.atLeastWarn()).toHaveLength(1);
  });

  it('keeps the fault open while one worker still fails although the others write', async () => {
    const cap = captureLogger();
    const h = harness({ workers: 2 }, false, cap.logger);
    const [bad] = keysFor(0, 2);
    const [good] = keysFor(1, 2);
    h.client(0).mode = connectionError();
    h.pool.submit(entry(bad!));
    await tick();
    for (let i = 0; i < 20; i++) {
      h.pool.submit(entry(good!));
      await tick();
    }
    expect(h.written).toHaveLength(20);
    expect(cap.lines.filter((l) => l.fault === 'kafka_write').filter((l) => l.level !== 'debug').map((l) => l.level)).toEqual(['warn']);
  });

  it('writes the records the spool held back first when switching back to direct, ahead of later ones of their keys', async () => {
    const h = harness({ workers: 2 }, true);
    const held = [entry('a'), entry('b'), entry('a')];
    h.pool.switchAllToDirect(held);
    const later = entry('a');
    h.pool.submit(later);
    await tick();
    await tick();
    const sentA = [0, 1].flatMap((i) => h.client(i).acked.flat()).filter((r) => r.key === 'a').map((r) => r.headers['mqtt.message_id']);
    expect(sentA).toEqual([held[0]!.id, held[2]!.id, later.id]);
    expect(ids(h.written).sort()).toEqual(ids([...held, later]).sort());
  });
});

describe('writer pool: records Kafka refuses as too large', () => {
  it('halves the batch until the single too-large records are rejected via onRejected; the others are written in order', async () => {
    const h = harness({ workers: 1 });
    const c = h.client(0);
    const big = new Set<string>();
    c.script.push('hang');
    c.decide = (batch) => (batch.some((r) => big.has(r.headers['mqtt.message_id']!)) ? tooLarge() : 'ok');
    const a = entry('k');
    h.pool.submit(a); // in flight, so the rest queue up into one batch
    const b = entry('k');
    const big1 = entry('k');
    const d = entry('k');
    const big2 = entry('k');
    const e = entry('k');
    big.add(big1.id).add(big2.id);
    for (const x of [b, big1, d, big2, e]) h.pool.submit(x);
    c.release();
    await tick();

    expect(ids(h.written)).toEqual([a.id, b.id, d.id, e.id]);
    expect(h.rejected.map((r) => [r.entry.id, r.kind])).toEqual([
      [big1.id, 'too_large'],
      [big2.id, 'too_large'],
    ]);
    // The split: whole batch, then halves, down to the single offenders.
    expect(c.batches.map(recIds)).toEqual([
      [a.id],
      [b.id, big1.id, d.id, big2.id, e.id],
      [b.id, big1.id],
      [b.id],
      [big1.id],
      [d.id, big2.id, e.id],
      [d.id],
      [big2.id, e.id],
      [big2.id],
      [e.id],
    ]);
    // Too large is not an outage: the worker stays direct and nothing is spooled.
    expect(h.pool.spoolingWorkers).toBe(0);
    expect(h.spool.appended).toEqual([]);
    expect(await metric(h.telemetry, 'write_errors_total', { kind: 'too_large' })).toBe(6);
    expect(await metric(h.telemetry, 'kafka_up')).toBe(1);
  });

  it('spools the unwritten rest in order when Kafka goes down in the middle of a split', async () => {
    const h = harness({ workers: 1 });
    const c = h.client(0);
    const a = entry('k');
    const big1 = entry('k');
    const b = entry('k');
    const d = entry('k');
    c.script.push('hang', tooLarge(), tooLarge(), connectionError());
    h.pool.submit(a);
    for (const x of [big1, b, d]) h.pool.submit(x);
    c.release();
    await tick();
    // [big1,b,d] too large → [big1] too large → rejected; [b,d] → connection error → spooled.
    expect(h.rejected.map((r) => r.entry.id)).toEqual([big1.id]);
    expect(ids(h.written)).toEqual([a.id]);
    expect(ids(h.spool.appended)).toEqual([b.id, d.id]);
    expect(h.pool.spoolingWorkers).toBe(1);
  });
});

describe('writer pool: close(deadline)', () => {
  it('lets direct workers finish their queue before closing the clients', async () => {
    const h = harness({ workers: 2, batchMaxMessages: 2 });
    const es = Array.from({ length: 9 }, (_, i) => entry(`k${i}`));
    for (const i of [0, 1]) h.client(i).mode = 'hang';
    for (const e of es) h.pool.submit(e);
    let closed = false;
    const closing = h.pool.close(Date.now() + 60_000).then(() => (closed = true));
    // Answer each request as it comes until every record was written.
    for (let guard = 0; guard < 50 && h.written.length < es.length; guard++) {
      for (const i of [0, 1]) if (h.client(i).hung.length > 0) h.client(i).release();
      await tick();
      if (h.written.length < es.length) expect(closed).toBe(false);
    }
    await closing;
    expect(ids(h.written).sort()).toEqual(ids(es).sort());
    expect(h.spool.appended).toEqual([]);
    expect(h.client(0).closed).toBe(1);
    expect(h.client(1).closed).toBe(1);
    // Idempotent.
    expect(h.pool.close(0)).toBe(h.pool.close(0));
  });

  it('leaves the queue unacknowledged when a write still hangs at the deadline (the broker redelivers it in order)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    // The deadline comes before KAFKA_WRITE_TIMEOUT_MS (which would spool the batch in doubt).
    const h = harness({ workers: 1, writeTimeoutMs: 10_000 });
    const c = h.client(0);
    c.mode = 'hang';
    const inFlight = entry('k');
    const queued = [entry('k'), entry('j'), entry('k')];
    h.pool.submit(inFlight);
    for (const e of queued) h.pool.submit(e);
    let closed = false;
    const closing = h.pool.close(Date.now() + 1000).then(() => (closed = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(closed).toBe(false);
    expect(h.spool.appended).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await closing;
    // Spooling the queue ahead of the hanging batch could put later records of its keys first.
    expect(h.spool.appended).toEqual([]);
    expect(h.written).toEqual([]);
    expect(c.batches.map(recIds)).toEqual([[inFlight.id]]);
    expect(c.closed).toBe(1);
  });

  // Regression: a batch that fails after the deadline used to be spooled behind the queue that
  // drain() had already spooled, reversing the order of its keys in the spool.
  it('keeps per-key order in the spool when the in-flight batch fails after the close deadline', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const h = harness({ workers: 1 });
    const c = h.client(0);
    c.mode = 'hang';
    const inFlight = entry('k');
    const queued = [entry('k'), entry('k')];
    h.pool.submit(inFlight);
    for (const e of queued) h.pool.submit(e);
    const closing = h.pool.close(Date.now() + 1000);
    await vi.advanceTimersByTimeAsync(1000);
    await closing;
    // The hung request fails late, while the spool is still open.
    c.release(connectionError());
    await vi.advanceTimersByTimeAsync(0);
    const spooledSeqs = h.spool.appended.filter((e) => e.record.key === 'k').map((e) => e.seq);
    expect(spooledSeqs).toEqual([...spooledSeqs].sort((x, y) => x - y));
  });

  it('leaves records unacknowledged (does not throw) when the spool is already closed', async () => {
    const h = harness({ workers: 1 }, true);
    h.spool.close();
    expect(() => h.pool.submit(entry('k'))).not.toThrow();
    expect(h.written).toEqual([]);
  });
});

describe('writer pool: telemetry', () => {
  it('counts written records and bytes per path, and write errors by kind', async () => {
    const h = harness({ workers: 1 });
    const c = h.client(0);
    c.mode = 'hang';
    const es = [entry('k', 100), entry('k', 200), entry('k', 300)];
    for (const e of es) h.pool.submit(e);
    c.release();
    await tick();
    c.release();
    await tick();
    expect(await metric(h.telemetry, 'records_written_total', { path: 'direct' })).toBe(3);
    expect(await metric(h.telemetry, 'bytes_written_total', { path: 'direct' })).toBe(600);
    expect(await metric(h.telemetry, 'kafka_up')).toBe(1);
    expect(await metric(h.telemetry, 'write_errors_total')).toBe(0);

    c.mode = 'hang';
    h.pool.submit(entry('k'));
    c.release(new MultipleErrors('Producing messages failed.', [new ResponseError(0, 11, { '/responses/0/partitionResponses/0': [5, null] }, {})]));
    await tick();
    expect(await metric(h.telemetry, 'write_errors_total', { kind: 'leader_unavailable', path: 'direct' })).toBe(1);
    expect(await metric(h.telemetry, 'records_written_total', { path: 'direct' })).toBe(3);
    expect(await metric(h.telemetry, 'kafka_up')).toBe(0);
  });

  it('a record Kafka refuses for good (too large, invalid for the topic) is an answer: kafka_up stays 1', async () => {
    const h = harness({ workers: 1 });
    h.telemetry.written(1, 10, 1, 'direct');
    h.telemetry.writeError('invalid_record', 'direct');
    h.telemetry.writeError('too_large', 'replay');
    expect(await metric(h.telemetry, 'kafka_up')).toBe(1);
    h.telemetry.writeError('timeout', 'direct');
    expect(await metric(h.telemetry, 'kafka_up')).toBe(0);
  });
});

describe('writer pool: a write left in doubt is resolved by the producer that sent it', () => {
  /** One worker whose first write hangs past KAFKA_WRITE_TIMEOUT_MS (1000 ms), with a queue behind it. */
  async function inDoubt() {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const h = harness({ workers: 1 });
    const c = h.client(0);
    c.mode = 'hang';
    const sent = [entry('a')];
    for (const e of sent) h.pool.submit(e);
    await vi.advanceTimersByTimeAsync(0);
    const queued = [entry('b'), entry('a'), entry('c')];
    for (const e of queued) h.pool.submit(e);
    await vi.advanceTimersByTimeAsync(999);
    // Within the write timeout nothing is spooled.
    expect(h.spool.appended).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    return { h, c, sent, queued };
  }

  it('spools the batch marked in doubt, then its queue, then later records, and sends nothing else meanwhile', async () => {
    const { h, c, sent, queued } = await inDoubt();
    expect(h.pool.spoolingWorkers).toBe(1);
    expect(ids(h.spool.appended)).toEqual([...ids(sent), ...ids(queued)]);
    expect([...h.spool.inDoubt.values()].map((d) => ids(d.entries))).toEqual([ids(sent)]);
    const later = entry('a');
    h.pool.submit(later);
    expect(ids(h.spool.appended)).toEqual([...ids(sent), ...ids(queued), later.id]);
    // One request in flight, never re-sent by the worker: only the producer retries it.
    expect(c.batches.map(recIds)).toEqual([ids(sent)]);
    expect(h.written).toEqual([]);
    // While the delivery runs, the replayer's drain cannot switch the worker back.
    h.pool.switchAllToDirect();
    expect(h.pool.spoolingWorkers).toBe(1);
  });

  it('deletes the spooled copy when the delivery succeeds (settling only what the spool had not committed)', async () => {
    const { h, c, sent } = await inDoubt();
    h.spool.uncommitted.add(sent[0]!);
    c.release();
    await vi.advanceTimersByTimeAsync(0);
    expect([...h.spool.inDoubt.values()][0]!.resolved).toBe(true);
    expect(ids(h.written)).toEqual([sent[0]!.id]);
    h.pool.switchAllToDirect();
    expect(h.pool.spoolingWorkers).toBe(0);
  });

  it('releases the spooled copy for replay when the delivery fails for good', async () => {
    const { h, c } = await inDoubt();
    c.release(connectionError());
    await vi.advanceTimersByTimeAsync(0);
    expect([...h.spool.inDoubt.values()][0]!.resolved).toBe(false);
    expect(h.written).toEqual([]);
    expect(h.pool.spoolingWorkers).toBe(1);
  });

  it('at shutdown waits (until the deadline) for the delivery so its outcome is known', async () => {
    const { h, c } = await inDoubt();
    let closed = false;
    const closing = h.pool.close(Date.now() + 5000).then(() => (closed = true));
    await vi.advanceTimersByTimeAsync(1000);
    expect(closed).toBe(false);
    c.release();
    await vi.advanceTimersByTimeAsync(0);
    await closing;
    expect([...h.spool.inDoubt.values()][0]!.resolved).toBe(true);
  });
});
