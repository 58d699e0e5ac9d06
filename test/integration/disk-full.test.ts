import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { BridgeError } from '../../src/errors.js';
import type { Pending } from '../../src/kafka/types.js';
import { openSqliteSpool } from '../../src/spool/sqlite-spool.js';
import type { Spool } from '../../src/spool/types.js';
import {
  checkBadges,
  makeTempDir,
  mountSmallFs,
  publishBadges,
  smallFsUnavailable,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  type BridgeLogLine,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
  type SmallFs,
} from '../harness/index.js';

/**
 * The spool on a small real file system (CI runs as root: a loop-mounted ext4 image, and a
 * tmpfs), Kafka down, QoS 1 badges with 1 KB payloads so the file system fills in seconds:
 * - the free-space watermark holds intake before the file system is full (no SQLite write
 *   ever fails), and everything drains once Kafka is back;
 * - with the file system at 100 % before the bridge starts (a file fills it), the bridge opens
 *   the spool with its reserve file, reports the condition and drains once Kafka is up.
 * Every published message is read back from Kafka; duplicates are counted and asserted.
 * And, without brokers, the spool alone on a file system filled while it had WAL frames still to
 * checkpoint: the state in which SQLite can delete nothing (issue 9).
 */
const MiB = 1024 * 1024;
const PAYLOAD = 1000;

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];
const mounts: SmallFs[] = [];
// Outside CI a machine without root or mount skips these tests with the reason in their name; in
// CI they never skip: mounting then fails the test with the reason.
const unavailable = process.env.CI ? undefined : smallFsUnavailable('tmpfs');

beforeAll(async () => {
  if (unavailable) return;
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  for (const t of ['disk-watermark', 'disk-full-start']) await kafka.createTopic(t, 4);
});

afterAll(async () => {
  // Bridges first: a mounted file system cannot be unmounted while the spool is open on it.
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  for (const m of mounts) m.unmount();
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

type LogLine = BridgeLogLine;
const logLines = (b: BridgeProcess): LogLine[] => b.logLines();

/** Spool empty, everything acknowledged, every worker writing to Kafka directly again. */
async function waitDrained(b: BridgeProcess): Promise<void> {
  await b.waitFor(
    'drained',
    async () =>
      (await b.metric('mqtt_kafka_spool_rows')) === 0 &&
      (await b.metric('mqtt_kafka_unacked_messages')) === 0 &&
      (await b.metric('mqtt_kafka_in_flight_messages')) === 0 &&
      (await b.metric('mqtt_kafka_write_path_workers', { path: 'spooling' })) === 0,
    180_000,
  );
}

const loud = (lines: LogLine[]) => lines.filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal');
const errors = (lines: LogLine[]) => lines.filter((l) => l.level === 'error' || l.level === 'fatal');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function bridge(env: Record<string, string>, logDir: string, waitReady = true): Promise<BridgeProcess> {
  const b = await startBridgeProcess({
    logDir,
    waitReady,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_TOPIC: 'cackalacky/badge/egress/#',
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_WRITE_TIMEOUT_MS: '3000',
      KAFKA_CONNECT_TIMEOUT_MS: '2000',
      SPOOL_REPLAY_INTERVAL_MS: '2000',
      ...env,
    },
  });
  bridges.push(b);
  return b;
}

/** Polls `sample` every 100 ms until stop() is called; keeps the minimum. */
function watchMin(sample: () => Promise<number>): { stop: () => Promise<number> } {
  let min = Number.POSITIVE_INFINITY;
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        min = Math.min(min, await sample());
      } catch {
        // bridge busy or restarting
      }
      await sleep(100);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return min;
    },
  };
}

describe.skipIf(unavailable !== undefined)(`spool on a small real file system${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  it('the watermark holds intake before the file system is full; once Kafka is back everything drains: 0 lost, 0 duplicates, few error lines', async () => {
    // ext4 on a loop device; tmpfs only where mkfs.ext4 is missing outside CI (in CI mounting fails instead).
    const kind = process.env.CI || !smallFsUnavailable('ext4') ? 'ext4' : 'tmpfs';
    const small = mountSmallFs(kind, 48);
    mounts.push(small);
    const watermark = Math.ceil(small.sizeBytes * 0.2);
    const badges = 500;
    const perBadge = 60; // 30,000 messages of ~1 KB: about twice what fits above the watermark
    const b = await bridge(
      {
        MQTT_CLIENT_ID: 'disk-watermark',
        KAFKA_TOPIC: 'disk-watermark',
        SPOOL_PATH: path.join(small.dir, 'spool.db'),
        SPOOL_MIN_FREE_BYTES: String(4 * MiB),
        SPOOL_MIN_FREE_PERCENT: '20',
        SPOOL_RESERVE_BYTES: String(4 * MiB),
      },
      makeTempDir('disk-watermark-'),
    );
    expect(await b.metric('mqtt_kafka_spool_fs_min_free_bytes')).toBe(watermark);
    expect(await b.metric('mqtt_kafka_spool_reserve_bytes')).toBe(4 * MiB);
    await kafka.stop();
    const minFree = watchMin(() => b.metric('mqtt_kafka_spool_fs_free_bytes'));
    const minReserve = watchMin(() => b.metric('mqtt_kafka_spool_reserve_bytes'));
    const published = await publishBadges({ url: mosq.url, badges, perBadge, payloadBytes: PAYLOAD });
    await b.waitFor(
      'intake held by the watermark',
      async () => (await b.metric('mqtt_kafka_spool_held', { reason: 'disk_low' })) === 1 && (await b.metric('mqtt_kafka_intake_paused')) === 1,
      60_000,
    );
    const ready = await b.readyz();
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ spoolHeld: 'disk_low', spoolAccepting: false, kafkaWritable: false, spoolMinFreeBytes: watermark });
    const spooled = await b.metric('mqtt_kafka_spool_rows');
    expect(spooled).toBeGreaterThan(5_000);
    expect(spooled).toBeLessThan(published);
    // Well before full: SQLite never saw the file system full.
    expect(await b.metric('mqtt_kafka_spool_write_errors_total')).toBe(0);
    expect(small.freeBytes()).toBeGreaterThanOrEqual(watermark);

    await kafka.start();
    const back = Date.now();
    await waitDrained(b);
    const drainMs = Date.now() - back;
    const lowest = await minFree.stop();
    const lowestReserve = await minReserve.stop();
    await b.waitReady(30_000);

    const records = await kafka.readTopic('disk-watermark', { expected: published, timeoutMs: 90_000 });
    const check = checkBadges(records, badges, perBadge);
    const lines = logLines(b);
    console.log(
      `watermark (${kind} ${(small.sizeBytes / MiB).toFixed(1)} MiB, watermark ${(watermark / MiB).toFixed(1)} MiB): published ${published}, spooled at the hold ${spooled}, ` +
        `lowest free ${(lowest / MiB).toFixed(2)} MiB, read ${records.length}, lost ${check.missing.length}, duplicates ${check.duplicates}, ` +
        `drained ${drainMs} ms after Kafka was back, error lines ${errors(lines).length}, warn+error lines ${loud(lines).length}: ` +
        JSON.stringify(loud(lines).map((l) => `${l.level}:${l.fault ?? ''}:${l.msg}`)),
    );
    expect(check.missing).toEqual([]);
    expect(check.duplicates).toBe(0);
    expect(check.outOfOrder).toEqual([]);
    expect(check.splitPartitions).toEqual([]);
    expect(lowest).toBeGreaterThanOrEqual(watermark);
    expect(lowestReserve).toBe(4 * MiB); // never needed
    expect(await b.metric('mqtt_kafka_spool_write_errors_total')).toBe(0);
    expect(await b.metric('mqtt_kafka_spool_delete_errors_total')).toBe(0);
    expect(await b.metric('mqtt_kafka_dropped_total')).toBe(0);
    expect(errors(lines).length).toBeLessThanOrEqual(5);
    expect(loud(lines).length).toBeLessThanOrEqual(10);
    // The hold was one fault: one start line, and one end line (logged once it has been over for 5 s).
    await b.waitFor('the end of the hold logged', async () => logLines(b).some((l) => l.fault === 'spool_disk_low' && l.level === 'info'), 15_000);
    expect(logLines(b).filter((l) => l.fault === 'spool_disk_low').map((l) => l.level)).toEqual(['error', 'info']);
    expect((await b.readyz()).body.spoolHeld).toBeUndefined();
    await b.proc.stop('SIGTERM');
  });

  it('with the file system at 100 % before the bridge starts, it starts, reports it, and drains what is spooled once Kafka is up', async () => {
    const small = mountSmallFs('tmpfs', 40);
    mounts.push(small);
    const spoolPath = path.join(small.dir, 'spool.db');
    const env = {
      MQTT_CLIENT_ID: 'disk-full-start',
      KAFKA_TOPIC: 'disk-full-start',
      SPOOL_PATH: spoolPath,
      SPOOL_MIN_FREE_BYTES: String(6 * MiB),
      SPOOL_MIN_FREE_PERCENT: '0',
      SPOOL_RESERVE_BYTES: String(4 * MiB),
    };
    // Phase A: Kafka down, a backlog goes to the spool; clean stop.
    await kafka.stop();
    const a = await bridge(env, makeTempDir('disk-full-a-'));
    const badges = 500;
    const before = await publishBadges({ url: mosq.url, badges, perBadge: 20, payloadBytes: PAYLOAD });
    await a.waitFor('backlog spooled', async () => (await a.metric('mqtt_kafka_spool_rows')) === before && (await a.metric('mqtt_kafka_unacked_messages')) === 0, 60_000);
    expect((await a.proc.stop('SIGTERM')).code).toBe(0);
    expect(fs.statSync(`${spoolPath}-reserve`).size).toBe(4 * MiB);

    // Something else fills the volume.
    const filled = small.fill();
    expect(small.freeBytes()).toBeLessThan(4096);

    // Phase B: the bridge starts on the full file system, Kafka still down.
    const b = await bridge(env, makeTempDir('disk-full-b-'), false);
    await b.waitFor('reporting the full file system', async () => {
      const r = await b.readyz();
      return r.status === 503 && r.body.spoolHeld === 'disk_low' && r.body.mqtt === 'subscribed';
    }, 60_000);
    const health = await fetch(`http://127.0.0.1:${b.httpPort}/healthz`);
    expect(health.status).toBe(200);
    expect(await b.metric('mqtt_kafka_spool_held', { reason: 'disk_low' })).toBe(1);
    expect(await b.metric('mqtt_kafka_spool_fs_free_bytes')).toBeLessThan(6 * MiB);
    expect(await b.metric('mqtt_kafka_spool_reserve_bytes')).toBe(0); // released to open the spool
    expect(await b.metric('mqtt_kafka_spool_rows')).toBe(before);
    const startLines = logLines(b);
    expect(startLines.some((l) => l.level === 'warn' && /released the reserve file to open the spool/.test(l.msg))).toBe(true);
    expect(startLines.filter((l) => l.fault === 'spool_disk_low' && l.level === 'error')).toHaveLength(1);
    // More messages arrive meanwhile: held at the broker, not lost.
    const during = await publishBadges({ url: mosq.url, badges, perBadge: 4, payloadBytes: PAYLOAD, topic: (id) => `cackalacky/badge/egress/${id}/late` });
    await sleep(3000);
    expect(b.proc.running).toBe(true);

    await kafka.start();
    const back = Date.now();
    await waitDrained(b);
    const drainMs = Date.now() - back;
    // The drain gave the space back: the reserve is written again and records are taken again.
    await b.waitFor('reserve back, taking records', async () => (await b.metric('mqtt_kafka_spool_reserve_bytes')) === 4 * MiB && (await b.metric('mqtt_kafka_spool_held', { reason: 'disk_low' })) === 0, 30_000);
    await b.waitReady(30_000);

    const records = await kafka.readTopic('disk-full-start', { expected: before + during, timeoutMs: 90_000 });
    // The key is the MQTT topic: the messages published while the file system was full have their own.
    const isLate = (r: { key: string | null }) => (r.key ?? '').endsWith('/late');
    const main = checkBadges(records.filter((r) => !isLate(r)), badges, 20);
    const late = checkBadges(records.filter(isLate), badges, 4);
    const lines = logLines(b);
    console.log(
      `full at start (tmpfs ${(small.sizeBytes / MiB).toFixed(1)} MiB, filler ${(filled / MiB).toFixed(1)} MiB): spooled before ${before}, published while full ${during}, ` +
        `read ${records.length}, lost ${main.missing.length + late.missing.length}, duplicates ${main.duplicates + late.duplicates}, drained ${drainMs} ms after Kafka was back, ` +
        `delete errors ${await b.metric('mqtt_kafka_spool_delete_errors_total')}, error lines ${errors(lines).length}, warn+error lines ${loud(lines).length}: ` +
        JSON.stringify(loud(lines).map((l) => `${l.level}:${l.fault ?? ''}:${l.msg}`)),
    );
    expect(main.missing).toEqual([]);
    expect(late.missing).toEqual([]);
    expect(main.duplicates + late.duplicates).toBe(0);
    expect(main.outOfOrder).toEqual([]);
    expect(late.outOfOrder).toEqual([]);
    expect(records.length).toBe(before + during);
    expect(await b.metric('mqtt_kafka_dropped_total')).toBe(0);
    expect(errors(lines).length).toBeLessThanOrEqual(5);
    await b.waitFor('the end of the hold logged', async () => logLines(b).some((l) => l.fault === 'spool_disk_low' && l.level === 'info'), 15_000);
    expect(logLines(b).filter((l) => l.fault === 'spool_disk_low').map((l) => l.level)).toEqual(['error', 'info']);
    await b.proc.stop('SIGTERM');
  });
});

describe.skipIf(unavailable !== undefined)('spool alone on a file system filled to 100 % while its WAL has frames to checkpoint', () => {
  /**
   * The measured failure: rows committed, the WAL not yet checkpointed into the (growing)
   * database, then the file system fills. A delete must append to the WAL, the checkpoint that
   * would make room must grow the database: both SQLITE_FULL.
   */
  function fullSpool(reserveBytes: number): { spool: Spool; small: SmallFs; free: () => number } {
    const small = mountSmallFs('tmpfs', 24);
    mounts.push(small);
    const spool = openSqliteSpool(
      { path: path.join(small.dir, 'spool.db'), replayIntervalMs: 1000, maxBytes: 1e12, maxAgeMs: 0, fullPolicy: 'block', commitLingerMs: 1, minFreeBytes: 0, minFreePercent: 0, reserveBytes },
      { logger: pino({ level: 'silent' }), faultSettleMs: 0, onCommitted: () => undefined, onDroppedPending: () => undefined, onDroppedRows: () => undefined, onWriteError: () => undefined },
    );
    let seq = 0;
    const entry = (): Pending => {
      const i = seq++;
      return { record: { topic: 't', key: `k${i % 7}`, value: Buffer.alloc(1000, 65), headers: {}, timestampMs: 1 }, seq: i, id: `id-${i}`, keyHash: i % 7, receivedAtMs: 1, bytes: 1100 };
    };
    for (let i = 0; i < 16; i++) {
      spool.append(Array.from({ length: 500 }, entry));
      spool.flush();
    }
    // Checkpointed and reset: the next commit's frames are new pages waiting in the WAL.
    (spool as unknown as { db: { pragma: (s: string) => unknown } }).db.pragma('wal_checkpoint(TRUNCATE)');
    spool.append(Array.from({ length: 500 }, entry));
    spool.flush();
    expect(spool.stats().rows).toBe(8500);
    small.fill();
    expect(small.freeBytes()).toBeLessThan(4096);
    return { spool, small, free: () => small.freeBytes() };
  }

  const drain = (spool: Spool): { pages: number; error?: unknown } => {
    let pages = 0;
    for (;;) {
      const rows = spool.read(0, 500, 1e9);
      if (rows.length === 0) return { pages };
      try {
        spool.deleteRange(rows[0]!.rowId, rows[rows.length - 1]!.rowId);
      } catch (error) {
        return { pages, error };
      }
      pages++;
    }
  };

  it('deletes every replayed row by releasing the reserve file, gives the space back, and writes the reserve again', () => {
    const { spool, free } = fullSpool(4 * MiB);
    expect(spool.stats().disk?.reserveBytes).toBe(4 * MiB);
    const result = drain(spool);
    expect(result.error).toBeUndefined();
    expect(result.pages).toBe(17);
    expect(spool.stats()).toMatchObject({ rows: 0, heldBy: 'disk_low' }); // no records while the reserve is out
    expect(spool.stats().disk?.reserveBytes).toBe(0);
    spool.compact();
    expect(free()).toBeGreaterThan(8 * MiB);
    expect(spool.stats().disk?.reserveBytes).toBe(4 * MiB);
    console.log(`full file system, reserve 4 MiB: 8,500 rows deleted in ${result.pages} pages; ${(free() / MiB).toFixed(1)} MiB free after compaction, reserve written again`);
    spool.close();
  });

  it('without a reserve the delete fails cleanly (BRIDGE_ERR_SPOOL_DELETE, nothing changed) and succeeds once space frees', () => {
    const { spool, small } = fullSpool(0);
    const result = drain(spool);
    expect(result.pages).toBe(0);
    expect(result.error).toBeInstanceOf(BridgeError);
    expect((result.error as BridgeError).code).toBe('BRIDGE_ERR_SPOOL_DELETE');
    expect(spool.stats().rows).toBe(8500);
    expect(spool.read(0, 1, 1e9)[0]!.id).toBe('id-0'); // the rows are intact
    fs.rmSync(path.join(small.dir, 'filler'));
    const after = drain(spool);
    expect(after.error).toBeUndefined();
    expect(spool.stats().rows).toBe(0);
    spool.close();
  });
});
