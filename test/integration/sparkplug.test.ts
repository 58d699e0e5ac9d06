import { writeFileSync } from 'node:fs';
import mqtt from 'mqtt';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DataType,
  EdgeNode,
  makeTempDir,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
  type ReadRecord,
  type SimMetric,
} from '../harness/index.js';

/**
 * Sparkplug B end to end against real Mosquitto and Kafka. An edge node (test/harness/sparkplug.ts)
 * publishes NBIRTH and two DBIRTHs, then 10,000 NDATA/DDATA carrying metric aliases only, a DDEATH
 * and a device rebirth with other aliases, and finally a node rebirth (NDEATH, NBIRTH with a new
 * bdSeq and other aliases). The bridge is SIGKILLed right after the BIRTHs (the DATA that follows
 * must resolve from the certificates on disk) and again mid-stream. An independent consumer (kcat)
 * reads everything back: every DATA record must carry its metric names — checked against the
 * values, which give each metric away by type and content — in per-device order, none lost.
 */

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];

const TOPIC = 'sparkplug';
const DLQ = 'sparkplug-dead-letter';
const DATA_TOTAL = 10_000;
/** counter values start above 2^53: exact only if UInt64 is never rounded. */
const BASE = 2n ** 60n;

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  await kafka.createTopic(TOPIC, 3);
  await kafka.createTopic(DLQ, 1);
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

const defs = (counter: number, temp: number, running: number): SimMetric[] => [
  { name: 'Counters/total', alias: counter, datatype: DataType.UInt64 },
  { name: 'Temperature', alias: temp, datatype: DataType.Double },
  { name: 'Running', alias: running, datatype: DataType.Boolean },
];
const values = (i: number): unknown[] => [(BASE + BigInt(i)).toString(), i + 0.5, i % 2 === 0];

interface SpRecord {
  message_type: string;
  device: string | null;
  metrics: { name: string | null; alias: number | null; value: unknown }[];
}

/** What a DATA record says about its stream index; throws when names and values do not belong together. */
function indexOf(r: ReadRecord): number {
  const v = JSON.parse(r.value!) as SpRecord;
  const by = new Map(v.metrics.map((m) => [m.name, m.value]));
  if (v.metrics.some((m) => m.name === null) || r.headers['sparkplug.unresolved'] !== undefined) throw new Error(`unresolved names in ${r.value}`);
  const counter = by.get('Counters/total');
  const temp = by.get('Temperature');
  const running = by.get('Running');
  if (typeof counter !== 'string' || typeof temp !== 'number' || typeof running !== 'boolean') throw new Error(`names do not match the values' types: ${r.value}`);
  const i = Number(BigInt(counter) - BASE);
  if (temp !== i + 0.5 || running !== (i % 2 === 0)) throw new Error(`names do not match the values: ${r.value}`);
  return i;
}

describe('Sparkplug B through the bridge', () => {
  it('resolves every alias of 10,000 DATA messages across two SIGKILLs, a DDEATH and rebirths: names on every record, per-device order, 0 lost', async () => {
    const dir = makeTempDir('sparkplug-');
    const routes = path.join(dir, 'routes.yaml');
    writeFileSync(routes, 'routes:\n  - name: sparkplug\n    match: spBv1.0/#\n    topic: sparkplug\n    format: sparkplug\n');
    const env = {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_CLIENT_ID: 'sparkplug-e2e',
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_WORKERS: '4',
      ROUTES_FILE: routes,
      DLQ_TOPIC: DLQ,
      SPOOL_PATH: `${dir}/spool.db`,
    };
    const start = async (): Promise<BridgeProcess> => {
      const b = await startBridgeProcess({ env, logDir: makeTempDir('sparkplug-run-') });
      bridges.push(b);
      return b;
    };
    const settled = async (b: BridgeProcess, n: number): Promise<void> =>
      b.waitFor(`${n} received and settled`, async () => (await b.metric('mqtt_kafka_messages_received_total')) >= n && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 90_000);

    let bridge = await start();
    const edge = new EdgeNode({ url: mosq.url, group: 'plant1', node: 'edge7' });
    await edge.connect();
    const streams: Record<string, { device: string | undefined; defs: SimMetric[]; next: number }> = {
      'plant1/edge7': { device: undefined, defs: defs(1, 2, 3), next: 0 },
      'plant1/edge7/press1': { device: 'press1', defs: defs(10, 11, 12), next: 0 },
      'plant1/edge7/press2': { device: 'press2', defs: defs(20, 21, 22), next: 0 },
    };
    const keys = Object.keys(streams);
    const births = async (): Promise<void> => {
      await edge.nbirth(streams['plant1/edge7']!.defs, values(0));
      for (const k of keys.slice(1)) await edge.dbirth(streams[k]!.device!, streams[k]!.defs, values(0));
    };
    let sent = 0;
    /** DATA round robin over the node and its two devices, aliases only. */
    const dataUntil = async (total: number, onEach?: (n: number) => void): Promise<void> => {
      while (sent < total) {
        const s = streams[keys[sent % keys.length]!]!;
        await edge.data(s.device, s.defs, values(s.next++));
        sent++;
        onEach?.(sent);
      }
      await edge.flush();
    };

    // BIRTHs, durable in the bridge; then a crash before any DATA.
    await births();
    await edge.flush();
    await settled(bridge, 3);
    await bridge.proc.kill9();

    // 4,000 DATA while the bridge is down (the broker queues them), then a new bridge process.
    await dataUntil(4_000);
    bridge = await start();
    await dataUntil(6_000);
    // press2 dies and is born again with its aliases shuffled.
    await edge.ddeath('press2');
    streams['plant1/edge7/press2']!.defs = defs(22, 20, 21);
    await edge.dbirth('press2', streams['plant1/edge7/press2']!.defs, values(0));
    await edge.flush();
    await settled(bridge, edge.published - 3);

    // A second SIGKILL mid-stream, restarted while publishing goes on.
    let restarted: Promise<BridgeProcess> | undefined;
    await dataUntil(DATA_TOTAL - 300, (n) => {
      if (n !== 8_000) return;
      const dying = bridge;
      restarted = (async () => {
        await dying.proc.kill9();
        return start();
      })();
    });
    expect(restarted, 'the second kill happened').toBeDefined();
    bridge = await restarted!;
    // The node restarts: NDEATH, NBIRTH (next bdSeq, other aliases), DBIRTHs again, the last DATA.
    await edge.ndeath();
    streams['plant1/edge7']!.defs = defs(3, 1, 2);
    await births();
    await dataUntil(DATA_TOTAL);
    await edge.close();
    // Not Sparkplug B on a Sparkplug topic: a dead letter with its original bytes, not a record.
    const garbage = Buffer.from('{"temperature": 21.5}');
    const pub = await mqtt.connectAsync(mosq.url, { clientId: `sparkplug-garbage-${process.pid}` });
    await pub.publishAsync('spBv1.0/plant1/NDATA/edge7', garbage, { qos: 1 });
    await pub.endAsync();

    const published = edge.published;
    // Redeliveries after the kills are duplicates, and they count towards a plain record count:
    // a read that stops at `published` records can come before the last originals are written
    // (a restarted bridge is ready at once when its session already holds its subscription). So
    // read until every DATA message is there once (or the time is up), then check.
    const distinctData = (rs: readonly ReadRecord[]): number => {
      const s = new Set<string>();
      for (const r of rs) {
        if (r.headers['sparkplug.message_type'] !== 'NDATA' && r.headers['sparkplug.message_type'] !== 'DDATA') continue;
        try {
          s.add(`${r.key}#${indexOf(r)}`);
        } catch {
          // unresolved or mixed-up names: the checks below report them
        }
      }
      return s.size;
    };
    let records = await kafka.readTopic(TOPIC, { expected: published, timeoutMs: 120_000 });
    const readUntil = Date.now() + 120_000;
    while (distinctData(records) < DATA_TOTAL && Date.now() < readUntil) {
      await new Promise((r) => setTimeout(r, 500));
      records = await kafka.readTopic(TOPIC, { expected: records.length + 1, timeoutMs: 5000 });
    }
    await settled(bridge, 1);
    const data = records.filter((r) => r.headers['sparkplug.message_type'] === 'NDATA' || r.headers['sparkplug.message_type'] === 'DDATA');

    // Names on every DATA record, consistent with the values (a wrong alias mapping would mix them up).
    const seen = new Map<string, number[]>();
    const partitions = new Map<string, Set<number>>();
    for (const r of data) {
      expect(r.topic).toBe(TOPIC);
      seen.set(r.key!, [...(seen.get(r.key!) ?? []), indexOf(r)]);
      partitions.set(r.key!, (partitions.get(r.key!) ?? new Set()).add(r.partition));
    }
    expect([...seen.keys()].sort()).toEqual(keys);
    let lost = 0;
    let duplicates = 0;
    let outOfOrder = 0;
    for (const k of keys) {
      const got = seen.get(k)!;
      const want = streams[k]!.next;
      const firsts: number[] = [];
      const once = new Set<number>();
      for (const i of got) {
        if (once.has(i)) duplicates++;
        else {
          once.add(i);
          firsts.push(i);
        }
      }
      for (let i = 0; i < want; i++) if (!once.has(i)) lost++;
      for (let j = 1; j < firsts.length; j++) if (firsts[j]! < firsts[j - 1]!) outOfOrder++;
      expect(partitions.get(k)!.size, `${k} on one partition`).toBe(1);
    }
    console.log(`sparkplug e2e: ${published} published (${sent} DATA), ${records.length} records, ${data.length} DATA records, lost ${lost}, duplicates ${duplicates}, out of order ${outOfOrder}`);
    expect(sent).toBe(DATA_TOTAL);
    expect(lost).toBe(0);
    expect(outOfOrder).toBe(0);
    // The broker hands messages over in order and every bridge process checks seq from its first one.
    expect(records.filter((r) => r.headers['sparkplug.seq_error'] !== undefined).map((r) => r.value)).toEqual([]);

    // BIRTH and DEATH records are there too, with names; the node's NDEATH matched its NBIRTH.
    const types = (t: string) => records.filter((r) => r.headers['sparkplug.message_type'] === t);
    expect(types('NBIRTH').length).toBeGreaterThanOrEqual(2);
    expect(types('DBIRTH').length).toBeGreaterThanOrEqual(5);
    expect(types('DDEATH').map((r) => r.key)).toContain('plant1/edge7/press2');
    expect(types('NDEATH').map((r) => r.headers['sparkplug.bdseq'])).toContain('match');
    for (const r of types('NBIRTH')) expect((JSON.parse(r.value!) as SpRecord).metrics.map((m) => m.name)).toEqual(['bdSeq', 'Counters/total', 'Temperature', 'Running']);
    // Only the garbage was dead-lettered, with its bytes.
    const dead = await kafka.readTopic(DLQ, { expected: 1, timeoutMs: 30_000 });
    expect(dead.map((d) => [d.headers['dlq.reason'], d.headers['dlq.route'], d.headers['mqtt.topic'], d.value])).toEqual([
      ['invalid_sparkplug', 'sparkplug', 'spBv1.0/plant1/NDATA/edge7', garbage.toString()],
    ]);
    await bridge.proc.stop('SIGTERM');
  });
});
