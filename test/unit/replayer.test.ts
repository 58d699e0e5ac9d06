import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/types.js';
import { fnv1a } from '../../src/kafka/hash.js';
import type { CheckedRecord, SentCheck } from '../../src/kafka/log-check.js';
import { Replayer } from '../../src/kafka/replayer.js';
import { kafkaWriteFault } from '../../src/kafka/writer-pool.js';
import type { Pending, WriteErrorKind } from '../../src/kafka/types.js';
import { Telemetry } from '../../src/observability/telemetry.js';
import { openSqliteSpool } from '../../src/spool/sqlite-spool.js';
import type { DropReason, Spool, SpoolRow } from '../../src/spool/types.js';
import { captureLogger, connectionError, FakeClient, ids, kafkaConfig, metric, recIds, tick, tooLarge } from './fakes.js';

const logger = pino({ level: 'silent' });

// --- helpers -----------------------------------------------------------------------------

const dirs: string[] = [];
const spools: Spool[] = [];
const replayers: { replayer: Replayer; client: FakeClient }[] = [];

afterEach(async () => {
  for (const { replayer, client } of replayers.splice(0)) {
    // Stop first, then let any hung request answer so the run can end (even after a failed assertion).
    const stopping = replayer.stop();
    client.mode = 'ok';
    while (client.hung.length > 0) client.release();
    await stopping;
  }
  for (const s of spools.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

let nextSeq = 0;
function entry(key = `k${nextSeq % 3}`, receivedAtMs = Date.now()): Pending {
  const seq = nextSeq++;
  const id = `inst-${seq}`;
  return {
    record: { topic: 'out', key, value: Buffer.from(`v${seq}`), headers: { 'mqtt.message_id': id }, timestampMs: receivedAtMs },
    seq,
    id,
    keyHash: fnv1a(key),
    receivedAtMs,
    bytes: 100,
  };
}

interface HarnessOptions {
  spool?: Partial<Config['spool']>;
  kafka?: Partial<Config['kafka']>;
  spooling?: boolean;
  /** Wraps the real spool (to inject faults). */
  wrapSpool?: (s: Spool) => Spool;
  /** The spool's file system (default: the real one, with no watermark). */
  statfs?: () => { freeBytes: number; sizeBytes: number };
  /** Logger of the replayer (default silent). */
  logger?: pino.Logger;
  /** What reading Kafka back finds (replay after a restart). */
  sentCheck?: SentCheck;
}

function harness(opts: HarnessOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'replayer-test-'));
  dirs.push(dir);
  const spoolConfig: Config['spool'] = {
    path: join(dir, 'spool.db'),
    replayIntervalMs: 60_000,
    maxBytes: 1e9,
    maxAgeMs: 0,
    fullPolicy: 'block',
    // Long linger: nothing commits behind the test's back; tests flush explicitly.
    commitLingerMs: 1000,
    minFreeBytes: 0,
    minFreePercent: 0,
    reserveBytes: 0,
    ...opts.spool,
  };
  const droppedRows: { key: string | null; reason: DropReason }[] = [];
  const log = opts.logger ?? logger;
  const real = openSqliteSpool(spoolConfig, {
    logger: log,
    statfs: opts.statfs,
    faultSettleMs: 0,
    onCommitted: () => undefined,
    onDroppedPending: () => undefined,
    onDroppedRows: (rows, reason) => droppedRows.push(...rows.map((r) => ({ key: r.key, reason }))),
    onWriteError: () => undefined,
  });
  spools.push(real);
  const spool = opts.wrapSpool ? opts.wrapSpool(real) : real;
  const client = new FakeClient();
  const telemetry = new Telemetry(logger, { defaultMetrics: false });
  const drained: { rows: number; pending: number; sent: number }[] = [];
  const heldToKafka: Pending[][] = [];
  const rejected: { row: SpoolRow; kind: WriteErrorKind }[] = [];
  let spooling = opts.spooling ?? true;
  const replayer = new Replayer(
    { spool: spoolConfig, kafka: kafkaConfig({ replayBatchMaxMessages: 2, ...opts.kafka }) },
    {
      logger: log,
      telemetry,
      client,
      spool,
      kafkaFault: kafkaWriteFault(log, { settleMs: 0 }),
      faultSettleMs: 0,
      onDrained: (held) => {
        if (held.length > 0) heldToKafka.push([...held]);
        const s = real.stats();
        drained.push({ rows: s.rows, pending: s.pending, sent: client.acked.flat().length });
        spooling = false;
      },
      spooling: () => spooling,
      onRejected: async (row, kind) => {
        rejected.push({ row, kind });
      },
      sentCheck: opts.sentCheck,
    },
  );
  replayers.push({ replayer, client });
  const fill = (es: Pending[]): void => {
    real.append(es);
    real.flush();
  };
  return { replayer, spool: real, spoolConfig, client, telemetry, drained, heldToKafka, rejected, droppedRows, fill };
}

const spooledIds = (s: Spool): string[] => s.read(0, 1e6, 1e12).map((r) => r.id);

// --- tests -------------------------------------------------------------------------------

describe('replayer: order and deletion', () => {
  it('replays rows in row order, in pages of KAFKA_REPLAY_BATCH_MAX_MESSAGES, deleting a page only after send() resolved', async () => {
    const h = harness({ kafka: { replayBatchMaxMessages: 2 } });
    const es = Array.from({ length: 5 }, () => entry());
    h.fill(es);
    h.client.mode = 'hang';
    const run = h.replayer.runOnce();
    await tick();
    expect(h.client.batches.map(recIds)).toEqual([ids(es.slice(0, 2))]);
    expect(spooledIds(h.spool)).toEqual(ids(es)); // nothing deleted while the page is in flight

    h.client.release();
    await tick();
    expect(spooledIds(h.spool)).toEqual(ids(es.slice(2)));
    expect(h.client.batches.map(recIds)).toEqual([ids(es.slice(0, 2)), ids(es.slice(2, 4))]);

    h.client.release();
    await tick();
    expect(spooledIds(h.spool)).toEqual(ids(es.slice(4)));
    h.client.release();
    await run;
    expect(h.client.batches.map(recIds)).toEqual([ids(es.slice(0, 2)), ids(es.slice(2, 4)), ids(es.slice(4))]);
    expect(h.spool.stats().rows).toBe(0);
    expect(h.client.maxInFlight).toBe(1);
    expect(await metric(h.telemetry, 'spool_records_replayed_total')).toBe(5);
    expect(await metric(h.telemetry, 'records_written_total', { path: 'replay' })).toBe(5);
    expect(await metric(h.telemetry, 'spool_replay_runs_total', { result: 'drained' })).toBe(1);
  });

  it('pages by KAFKA_REPLAY_BATCH_MAX_MESSAGES, not by the workers\' KAFKA_BATCH_MAX_MESSAGES', async () => {
    const h = harness({ kafka: { batchMaxMessages: 2, replayBatchMaxMessages: 5 } });
    const es = Array.from({ length: 12 }, () => entry());
    h.fill(es);
    await h.replayer.runOnce();
    expect(h.client.batches.map((b) => b.length)).toEqual([5, 5, 2]);
    expect(h.client.batches.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es));
    expect(h.spool.stats().rows).toBe(0);
  });

  it('limits a page by KAFKA_BATCH_MAX_BYTES too', async () => {
    const h = harness({ kafka: { replayBatchMaxMessages: 100, batchMaxBytes: 250 } });
    const es = Array.from({ length: 5 }, () => entry());
    h.fill(es);
    await h.replayer.runOnce();
    expect(h.client.batches.map((b) => b.length)).toEqual([2, 2, 1]);
    expect(h.client.batches.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es));
  });

  it('deletes nothing of a page whose send() failed, and the next run resends it with the same message ids', async () => {
    const h = harness({ kafka: { replayBatchMaxMessages: 2 } });
    const es = Array.from({ length: 5 }, () => entry());
    h.fill(es);
    h.client.script.push('ok', connectionError());
    await h.replayer.runOnce();
    expect(h.client.batches.map(recIds)).toEqual([ids(es.slice(0, 2)), ids(es.slice(2, 4))]);
    expect(spooledIds(h.spool)).toEqual(ids(es.slice(2)));
    expect(h.drained).toEqual([]);
    expect(await metric(h.telemetry, 'spool_replay_runs_total', { result: 'failed' })).toBe(1);
    expect(await metric(h.telemetry, 'write_errors_total', { kind: 'connection', path: 'replay' })).toBe(1);

    await h.replayer.runOnce();
    const resent = h.client.batches[2]!;
    expect(recIds(resent)).toEqual(ids(es.slice(2, 4)));
    expect(resent).toEqual(h.client.batches[1]); // same records, same message ids
    expect(h.client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es));
    expect(h.spool.stats().rows).toBe(0);
    expect(h.drained).toHaveLength(1);
  });

  it('dead-letters (onRejected) a single spooled record Kafka refuses as too large and replays the rest in order', async () => {
    const h = harness({ kafka: { replayBatchMaxMessages: 4 } });
    const es = Array.from({ length: 4 }, () => entry());
    const big = es[2]!.id;
    h.fill(es);
    h.client.decide = (b) => (recIds(b).includes(big) ? tooLarge() : 'ok');
    await h.replayer.runOnce();
    expect(h.rejected.map((r) => [r.row.id, r.kind])).toEqual([[big, 'too_large']]);
    expect(h.client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es).filter((i) => i !== big));
    expect(h.spool.stats().rows).toBe(0);
  });
});

describe('replayer: probe', () => {
  it('leaves the spool untouched and counts a failed run when the probe fails', async () => {
    const h = harness();
    const es = Array.from({ length: 3 }, () => entry());
    h.fill(es);
    h.client.probeError = Object.assign(new Error('Kafka did not answer'), { name: 'BridgeError' });
    await h.replayer.runOnce();
    expect(h.client.probes).toBe(1);
    expect(h.client.batches).toEqual([]);
    expect(spooledIds(h.spool)).toEqual(ids(es));
    expect(h.drained).toEqual([]);
    expect(await metric(h.telemetry, 'spool_replay_runs_total', { result: 'failed' })).toBe(1);
    expect(await metric(h.telemetry, 'spool_replay_runs_total', { result: 'drained' })).toBe(0);
    expect(await metric(h.telemetry, 'kafka_up')).toBe(0);
  });
});

describe('replayer: drained', () => {
  it('calls onDrained once the spool is empty and nothing is pending, and not before', async () => {
    const h = harness({ kafka: { replayBatchMaxMessages: 2 } });
    const es = Array.from({ length: 5 }, () => entry());
    h.fill(es);
    const drainedAtSend: number[] = [];
    h.client.onSend = () => drainedAtSend.push(h.drained.length);
    await h.replayer.runOnce();
    expect(drainedAtSend).toEqual([0, 0, 0]);
    expect(h.drained).toEqual([{ rows: 0, pending: 0, sent: 5 }]);
  });

  it('does not call onDrained while records wait for their spool commit; it commits and replays them first', async () => {
    const h = harness();
    const es = [entry(), entry()];
    h.spool.append(es); // pending (linger not elapsed), not yet rows
    expect(h.spool.stats()).toMatchObject({ rows: 0, pending: 2 });
    await h.replayer.runOnce();
    expect(h.client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es));
    expect(h.drained).toEqual([{ rows: 0, pending: 0, sent: 2 }]);
  });

  it('on an empty spool calls onDrained only when some worker is spooling (idle run, no probe)', async () => {
    const idle = harness({ spooling: false });
    await idle.replayer.runOnce();
    expect(idle.drained).toEqual([]);
    expect(idle.client.probes).toBe(0);
    expect(await metric(idle.telemetry, 'spool_replay_runs_total', { result: 'idle' })).toBe(1);

    const h = harness({ spooling: true });
    await h.replayer.runOnce();
    expect(h.drained).toHaveLength(1);
    expect(h.client.probes).toBe(0);
  });

  it('does not call onDrained when a run fails', async () => {
    const h = harness();
    h.fill([entry()]);
    h.client.mode = connectionError();
    await h.replayer.runOnce();
    expect(h.drained).toEqual([]);
    expect(h.spool.stats().rows).toBe(1);
  });
});

describe('replayer: appends during a run', () => {
  it('drains records appended while a run is under way in the same run, after the earlier ones', async () => {
    const h = harness({ kafka: { replayBatchMaxMessages: 2 } });
    const early = [entry('k'), entry('k'), entry('k')];
    h.fill(early);
    h.client.script.push('hang');
    const run = h.replayer.runOnce();
    await tick();
    expect(h.client.hung).toHaveLength(1);
    // A spooling worker appends more: one committed, one still pending when the run reaches the end.
    const committed = entry('k');
    h.fill([committed]);
    const pendingOnly = entry('k');
    h.spool.append([pendingOnly]);
    h.client.release();
    await run;
    expect(h.client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual([...ids(early), committed.id, pendingOnly.id]);
    expect(h.drained).toEqual([{ rows: 0, pending: 0, sent: 5 }]);
    expect(await metric(h.telemetry, 'spool_replay_runs_total')).toBe(1);
  });
});

describe('replayer: runs never overlap', () => {
  it('gives one shared run when runOnce() is called while a run is under way', async () => {
    const h = harness({ kafka: { replayBatchMaxMessages: 10 } });
    h.fill([entry(), entry(), entry()]);
    h.client.mode = 'hang';
    const a = h.replayer.runOnce();
    const b = h.replayer.runOnce();
    expect(b).toBe(a);
    await tick();
    const c = h.replayer.runOnce();
    expect(c).toBe(a);
    expect(h.client.batches).toHaveLength(1);
    h.client.release();
    await Promise.all([a, b, c]);
    expect(h.client.probes).toBe(1);
    expect(h.client.batches).toHaveLength(1);
    expect(h.client.maxInFlight).toBe(1);
    expect(await metric(h.telemetry, 'spool_replay_runs_total')).toBe(1);
    // Once finished, a new call starts a new run.
    h.fill([entry()]);
    h.client.mode = 'ok';
    const d = h.replayer.runOnce();
    expect(d).not.toBe(a);
    await d;
    expect(h.client.probes).toBe(2);
  });

  it('does nothing after stop()', async () => {
    const h = harness();
    h.fill([entry()]);
    await h.replayer.stop();
    await h.replayer.runOnce();
    expect(h.client.probes).toBe(0);
    expect(h.spool.stats().rows).toBe(1);
  });
});

describe('replayer: max age', () => {
  it('expires rows older than SPOOL_MAX_AGE_MS before replay, so they are never sent', async () => {
    const h = harness({ spool: { maxAgeMs: 60_000 } });
    const now = Date.now();
    const old = [entry('old-a', now - 120_000), entry('old-b', now - 61_000)];
    const fresh = [entry('fresh', now - 1_000)];
    h.fill([...old, ...fresh]);
    await h.replayer.runOnce();
    expect(h.client.batches.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(fresh));
    expect(h.droppedRows).toEqual([
      { key: 'old-a', reason: 'spool_max_age' },
      { key: 'old-b', reason: 'spool_max_age' },
    ]);
    expect(h.spool.stats().rows).toBe(0);
  });

  it('expires even when Kafka is down (before the probe)', async () => {
    const h = harness({ spool: { maxAgeMs: 60_000 } });
    const now = Date.now();
    h.fill([entry('old', now - 120_000), entry('fresh', now)]);
    h.client.probeError = new Error('down');
    await h.replayer.runOnce();
    expect(h.droppedRows.map((d) => d.key)).toEqual(['old']);
    expect(h.spool.read(0, 10, 1e9).map((r) => r.record.key)).toEqual(['fresh']);
  });
});

describe('replayer: spool faults', () => {
  /** The real spool, with deleteRange failing (SQLITE_FULL, as on a full file system) while `failing()` says so. */
  const failingDeletes = (failing: () => boolean, calls: { n: number }) => (s: Spool): Spool => ({
    append: (es) => s.append(es),
    appendInDoubt: (es) => s.appendInDoubt(es),
    resolveInDoubt: (t, d) => s.resolveInDoubt(t, d),
    read: (after, limit, maxBytes) => s.read(after, limit, maxBytes),
    deleteRange: (a, b, m) => {
      calls.n++;
      if (failing()) throw Object.assign(new Error('database or disk is full'), { name: 'SqliteError', code: 'SQLITE_FULL' });
      s.deleteRange(a, b, m);
    },
    sentThrough: () => s.sentThrough(),
    markSent: (r) => s.markSent(r),
    deleteRows: (ids) => s.deleteRows(ids),
    expire: (now) => s.expire(now),
    flush: () => s.flush(),
    stats: () => s.stats(),
    compact: () => s.compact(),
    takeHeld: () => s.takeHeld(),
    state: s.state,
    close: () => s.close(),
  });

  it('ends the run as failed (instead of rejecting) when the spool throws SQLITE_FULL while deleting a replayed page', async () => {
    const h = harness({ wrapSpool: failingDeletes(() => true, { n: 0 }) });
    h.fill([entry(), entry()]);
    await expect(h.replayer.runOnce()).resolves.toBeUndefined();
    expect(h.spool.stats().rows).toBe(2);
    expect(await metric(h.telemetry, 'spool_replay_runs_total', { result: 'failed' })).toBe(1);
    expect(await metric(h.telemetry, 'spool_delete_errors_total')).toBe(1);
  });

  it('never sends a page Kafka acknowledged again: a failed delete stops the run, later runs retry only the delete, then go on', async () => {
    let failing = true;
    const deletes = { n: 0 };
    const h = harness({ kafka: { replayBatchMaxMessages: 2 }, wrapSpool: failingDeletes(() => failing, deletes) });
    const es = Array.from({ length: 5 }, () => entry());
    h.fill(es);

    await h.replayer.runOnce();
    // Stopped after the failed delete of the first page; the page already in flight while that
    // delete ran (replay is pipelined) was delivered too, and both wait for their delete.
    expect(h.client.batches.map(recIds)).toEqual([ids(es.slice(0, 2)), ids(es.slice(2, 4))]);
    expect(h.client.probes).toBe(1);
    // The disk stays full for 20 more intervals: nothing is sent (not even probed), the delete is retried.
    for (let i = 0; i < 20; i++) await h.replayer.runOnce();
    expect(h.client.batches).toHaveLength(2);
    expect(h.client.probes).toBe(1);
    expect(deletes.n).toBe(21);
    expect(h.spool.stats().rows).toBe(5);
    expect(await metric(h.telemetry, 'spool_replay_runs_total', { result: 'failed' })).toBe(21);
    expect(await metric(h.telemetry, 'spool_delete_errors_total')).toBe(21);
    expect(h.drained).toEqual([]);

    failing = false;
    await h.replayer.runOnce();
    expect(h.client.batches.map(recIds)).toEqual([ids(es.slice(0, 2)), ids(es.slice(2, 4)), ids(es.slice(4))]);
    const sent = h.client.acked.flat().map((r) => r.headers['mqtt.message_id']);
    expect(sent).toEqual(ids(es)); // each exactly once
    expect(h.spool.stats().rows).toBe(0);
    expect(h.drained).toHaveLength(1);
  });

  it('logs the failing deletes as one error line while they last and one line when they succeed, not one per run', async () => {
    let failing = true;
    const cap = captureLogger('info');
    const h = harness({ wrapSpool: failingDeletes(() => failing, { n: 0 }), logger: cap.logger });
    h.fill([entry(), entry()]);
    for (let i = 0; i < 30; i++) await h.replayer.runOnce();
    failing = false;
    await h.replayer.runOnce();
    const mine = cap.lines.filter((l) => l.fault === 'spool_delete');
    expect(mine.filter((l) => l.level !== 'debug').map((l) => l.level)).toEqual(['error', 'info']);
    expect(mine[1]!.failures).toBe(30);
    expect(cap.atLeastWarn()).toHaveLength(1);
  });

  it('deletes the delivered rows at stop() when it can, so a restart does not send them again', async () => {
    let failing = true;
    const h = harness({ wrapSpool: failingDeletes(() => failing, { n: 0 }) });
    h.fill([entry(), entry()]);
    await h.replayer.runOnce();
    expect(h.spool.stats().rows).toBe(2);
    failing = false;
    await h.replayer.stop();
    expect(h.spool.stats().rows).toBe(0);
    expect(h.client.batches).toHaveLength(1);
  });

  it('after a restart, rows whose delete failed are sent again (same message ids): the only way a replayed page repeats', async () => {
    const h = harness({ wrapSpool: failingDeletes(() => true, { n: 0 }) });
    const es = [entry(), entry()];
    h.fill(es);
    await h.replayer.runOnce();
    const client = new FakeClient();
    const again = new Replayer(
      { spool: h.spoolConfig, kafka: kafkaConfig({ replayBatchMaxMessages: 2 }) },
      { logger, telemetry: h.telemetry, client, spool: h.spool, onDrained: () => undefined, spooling: () => true, onRejected: async () => undefined },
    );
    replayers.push({ replayer: again, client });
    await again.runOnce();
    expect(client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es));
  });
});

describe('replayer: records the spool holds back for lack of disk space', () => {
  it('hands them to onDrained, in order, once the spooled rows are replayed and the file system is still low', async () => {
    const MiB = 1 << 20;
    const disk = { free: 500 * MiB };
    const h = harness({ kafka: { replayBatchMaxMessages: 10 }, spool: { minFreeBytes: 100 * MiB }, statfs: () => ({ freeBytes: disk.free, sizeBytes: 1000 * MiB }) });
    const stored = [entry('a'), entry('b')];
    h.fill(stored);
    disk.free = 50 * MiB; // below the watermark: later records are held, not stored
    const held = [entry('a'), entry('c'), entry('b')];
    h.spool.append(held);
    h.spool.flush();
    expect(h.spool.stats()).toMatchObject({ rows: 2, pending: 3, heldBy: 'disk_low' });
    await h.replayer.runOnce();
    expect(h.client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(stored));
    expect(h.heldToKafka.map(ids)).toEqual([ids(held)]);
    expect(h.drained).toEqual([{ rows: 0, pending: 0, sent: 2 }]);
    expect(await metric(h.telemetry, 'spool_replay_runs_total', { result: 'drained' })).toBe(1);
  });

  it('commits and replays them in the same run instead, when the drain gave the space back', async () => {
    const MiB = 1 << 20;
    const disk = { free: 500 * MiB };
    const h = harness({ kafka: { replayBatchMaxMessages: 10 }, spool: { minFreeBytes: 100 * MiB }, statfs: () => ({ freeBytes: disk.free, sizeBytes: 1000 * MiB }) });
    const stored = [entry('a')];
    h.fill(stored);
    disk.free = 50 * MiB;
    const held = [entry('a'), entry('b')];
    h.spool.append(held);
    h.spool.flush();
    h.client.onAck = () => {
      disk.free = 500 * MiB; // the replayed page freed the space
    };
    await h.replayer.runOnce();
    expect(h.client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual([...ids(stored), ...ids(held)]);
    expect(h.heldToKafka).toEqual([]);
    expect(h.spool.stats()).toMatchObject({ rows: 0, pending: 0 });
  });
});

describe('replayer: Kafka failures are one fault, not a line per run', () => {
  it('logs 20 failed runs as one warn line, and one info line once a run succeeds', async () => {
    const cap = captureLogger('info');
    const h = harness({ logger: cap.logger });
    h.fill([entry()]);
    h.client.probeError = connectionError();
    for (let i = 0; i < 20; i++) await h.replayer.runOnce();
    h.client.probeError = undefined;
    await h.replayer.runOnce();
    expect(cap.atLeastWarn().map((l) => `${l.level}:${l.fault}`)).toEqual(['warn:kafka_write']);
    const mine = cap.lines.filter((l) => l.fault === 'kafka_write');
    expect(mine.filter((l) => l.level !== 'debug').map((l) => l.level)).toEqual(['warn', 'info']);
    expect(mine[1]!.failures).toBe(20);
    expect(await metric(h.telemetry, 'spool_replay_runs_total', { result: 'failed' })).toBe(20);
  });
});

describe('replayer: no repeats after a restart', () => {
  /** A Kafka read-back that "finds" these ids, and remembers what it was asked. */
  const kafkaHas = (has: readonly string[], asked: CheckedRecord[][]): SentCheck => ({
    inKafka: async (records) => {
      asked.push([...records]);
      return new Set(records.map((r) => r.id).filter((id) => has.includes(id)));
    },
  });

  it('raises the replay mark past a page before sending it, and the next page rides in the delete', async () => {
    const h = harness({ kafka: { replayBatchMaxMessages: 2 } });
    const es = Array.from({ length: 6 }, () => entry());
    h.fill(es);
    const rowIds = h.spool.read(0, 100, 1e12).map((r) => r.rowId);
    h.client.mode = 'hang';
    const marks: number[] = [];
    h.client.onSend = () => marks.push(h.spool.sentThrough());
    const run = h.replayer.runOnce();
    for (let i = 0; i < 3; i++) {
      await tick();
      h.client.release();
    }
    await run;
    // Each page was covered by the mark before it went out.
    expect(marks.length).toBe(3);
    marks.forEach((m, i) => expect(m).toBeGreaterThanOrEqual(rowIds[2 * i + 1]!));
    expect(spooledIds(h.spool)).toEqual([]);
  });

  it('after a restart, deletes the rows at or below the mark that Kafka has and sends only the rest, in order', async () => {
    const asked: CheckedRecord[][] = [];
    const es = Array.from({ length: 6 }, () => entry());
    const h = harness({ kafka: { replayBatchMaxMessages: 2 }, sentCheck: kafkaHas([es[0]!.id, es[1]!.id, es[2]!.id], asked) });
    h.fill(es);
    const rowIds = h.spool.read(0, 100, 1e12).map((r) => r.rowId);
    // The earlier process had sent through the 4th row (pages 1 and 2); Kafka has the first three.
    h.spool.markSent(rowIds[3]!);
    await h.replayer.runOnce();
    expect(asked.map((a) => a.map((r) => r.id))).toEqual([ids(es.slice(0, 4))]);
    expect(h.client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es.slice(3)));
    expect(spooledIds(h.spool)).toEqual([]);
  });

  it('replays them all (and says so) when Kafka cannot be read back', async () => {
    const cap = captureLogger('info');
    const es = Array.from({ length: 3 }, () => entry());
    const h = harness({ logger: cap.logger, sentCheck: { inKafka: async () => Promise.reject(new Error('group authorization failed')) } });
    h.fill(es);
    h.spool.markSent(h.spool.read(0, 100, 1e12)[1]!.rowId);
    await h.replayer.runOnce();
    expect(h.client.acked.flat().map((r) => r.headers['mqtt.message_id'])).toEqual(ids(es));
    expect(cap.lines.some((l) => /could not read Kafka back/.test(String(l.msg)))).toBe(true);
  });

  it('checks nothing when the mark is below every row (nothing was sent before the restart)', async () => {
    const asked: CheckedRecord[][] = [];
    const h = harness({ sentCheck: kafkaHas([], asked) });
    h.fill([entry(), entry()]);
    await h.replayer.runOnce();
    expect(asked).toEqual([]);
    expect(h.client.acked.flat().length).toBe(2);
  });
});
