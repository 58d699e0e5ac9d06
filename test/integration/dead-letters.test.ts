import fs from 'node:fs';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  makeTempDir,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
  type ReadRecord,
} from '../harness/index.js';

/**
 * Bad input against real Mosquitto and Kafka. Every bad message must end as a dead-letter record
 * on DLQ_TOPIC (original bytes, mqtt.topic, dlq.reason), one count in
 * mqtt_kafka_dead_letter_total{reason} and one 'message dead-lettered' log line, while the good
 * messages around it (same key) flow on in order.
 *
 * The Kafka broker of this file refuses records over 20,000 bytes (message.max.bytes=20000), so
 * the bridges run with KAFKA_BATCH_MAX_BYTES below that (as the README advises) and, except in the
 * rejected_by_kafka tests, KAFKA_MAX_MESSAGE_BYTES=10000.
 */

const BROKER_MAX = 20_000;
const MAX = 10_000;

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka({ extraProps: { 'message.max.bytes': String(BROKER_MAX) } })]);
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

/**
 * Routes for one test, everything under its own namespace `ns` (MQTT prefix and Kafka topic
 * prefix): a json route with typed required fields, a json route whose topic and key come from
 * payload fields (to provoke bad_topic / bad_key), and a raw route.
 */
function routesYaml(ns: string): string {
  return `
unmatched: dead_letter
routes:
  - name: readings
    match: ${ns}/json/{device}
    topic: ${ns}-good
    key: "{device}"
    format: json
    require: { seq: integer, value: number }
  - name: templated
    match: ${ns}/tpl/{device}
    topic: "{payload.zone}"
    key: "{payload.owner}"
    format: json
    require: { seq: integer }
  - name: raw
    match: ${ns}/raw/#
    topic: ${ns}-raw
`;
}

/** Creates the test's topics, writes its routes file, starts its bridge (own client id, own DLQ). */
async function setup(ns: string, over: Record<string, string> = {}): Promise<BridgeProcess> {
  await kafka.createTopic(`${ns}-good`, 3);
  await kafka.createTopic(`${ns}-tpl`, 1);
  await kafka.createTopic(`${ns}-raw`, 3);
  await kafka.createTopic(`${ns}-dlq`, 1);
  const dir = makeTempDir('dlq-');
  const routes = path.join(dir, 'routes.yaml');
  fs.writeFileSync(routes, routesYaml(ns));
  const b = await startBridgeProcess({
    logDir: dir,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_CLIENT_ID: `dl-${ns}`,
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_WORKERS: '4',
      KAFKA_BATCH_MAX_BYTES: '16384',
      KAFKA_MAX_MESSAGE_BYTES: String(MAX),
      ROUTES_FILE: routes,
      DLQ_TOPIC: `${ns}-dlq`,
      SPOOL_PATH: `${dir}/spool.db`,
      ...over,
    },
  });
  bridges.push(b);
  return b;
}

interface Msg {
  topic: string;
  payload: Buffer;
}

interface Bad extends Msg {
  reason: string;
  route: string;
  /** The dead letter holds only a prefix of the payload (`dlq.original_bytes`). */
  truncated?: boolean;
}

const goodJson = (ns: string, seq: number): Msg => ({ topic: `${ns}/json/dev-1`, payload: Buffer.from(JSON.stringify({ device: 'dev-1', seq, value: seq * 1.5 })) });
const goodTpl = (ns: string, seq: number): Msg => ({ topic: `${ns}/tpl/dev-1`, payload: Buffer.from(JSON.stringify({ zone: `${ns}-tpl`, owner: 'alice', seq })) });
const goodRaw = (ns: string, seq: number): Msg => ({ topic: `${ns}/raw/dev-1`, payload: Buffer.from(`seq ${seq}`) });
const bad = (topic: string, payload: string | Buffer, reason: string, route: string, truncated = false): Bad => ({ topic, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload), reason, route, truncated });

/** good 0, bad 0, good 1, bad 1, ..., good n: each bad message between two good ones. */
function interleave(good: (seq: number) => Msg, bads: readonly Bad[]): Msg[] {
  const out: Msg[] = [good(0)];
  bads.forEach((b, i) => out.push(b, good(i + 1)));
  return out;
}

async function publishAll(msgs: readonly Msg[]): Promise<void> {
  const c = await mqtt.connectAsync(mosq.url, { protocolVersion: 5, clientId: `dl-pub-${process.pid}-${Date.now()}` });
  try {
    // One at a time, so the broker delivers them in this order.
    for (const m of msgs) await c.publishAsync(m.topic, m.payload, { qos: 1 });
  } finally {
    await c.endAsync();
  }
}

/** Waits until `n` messages were received and every one is settled (in Kafka, dead-lettered, or dropped). */
async function settled(b: BridgeProcess, n: number): Promise<void> {
  await b.waitFor(`${n} messages received and settled`, async () => (await b.metric('mqtt_kafka_messages_received_total')) >= n && (await b.metric('mqtt_kafka_in_flight_messages')) === 0 && (await b.metric('mqtt_kafka_unacked_messages')) === 0);
}

type RawRecord = ReadRecord & { bytes: Buffer | null };

/** Reads a topic with kcat; `bytes` holds each value's exact bytes. */
async function readTopicBytes(topic: string, expected: number, timeoutMs = 30_000): Promise<RawRecord[]> {
  return kafka.readTopic(topic, { expected, timeoutMs });
}

/** Bytes the bridge counts for a record (src/bridge/records.ts recordBytes): value + key + headers + 64. */
function recordSize(r: RawRecord): number {
  let n = (r.bytes?.length ?? 0) + (r.key === null ? 0 : Buffer.byteLength(r.key)) + 64;
  for (const [k, v] of Object.entries(r.headers)) n += k.length + Buffer.byteLength(v);
  return n;
}

interface LogLine {
  msg?: string;
  reason?: string;
  route?: string;
  mqttTopic?: string;
  detail?: string;
  messageId?: string;
  [k: string]: unknown;
}

function deadLetterLogs(b: BridgeProcess): LogLine[] {
  return b.logLines().filter((l) => l.msg === 'message dead-lettered') as LogLine[];
}

/** The good records of key `key` on `topic`, as the numbers `seq` they carry, in the order Kafka holds them. */
async function goodSeqs(topic: string, key: string, expected: number, seqOf: (r: RawRecord) => number): Promise<number[]> {
  const recs = (await readTopicBytes(topic, expected)).filter((r) => r.key === key);
  expect(new Set(recs.map((r) => r.partition)).size, `${key} on one partition`).toBeLessThanOrEqual(1);
  return recs.map(seqOf);
}
const jsonSeq = (r: RawRecord): number => (JSON.parse(r.value!) as { seq: number }).seq;
const rawSeq = (r: RawRecord): number => Number(/^seq (\d+)$/.exec(r.value!)?.[1] ?? NaN);

/**
 * Checks the dead letters of `bads` (published in this order): exactly one DLQ record each with
 * the original bytes (or a prefix, with dlq.original_bytes, when it had to be cut), the MQTT
 * topic and the reason; one count per reason; one log line each; DLQ records = counter total.
 */
async function expectDeadLetters(b: BridgeProcess, ns: string, bads: readonly Bad[], maxBytes = MAX): Promise<RawRecord[]> {
  const dlq = await readTopicBytes(`${ns}-dlq`, bads.length);
  expect(dlq.map((d) => `${d.headers['dlq.reason']} ${d.headers['mqtt.topic']?.slice(0, 80)}`).sort()).toEqual(bads.map((x) => `${x.reason} ${x.topic.slice(0, 80)}`).sort());

  // Several bad messages may share topic and reason: match them in publish order (the DLQ has
  // one partition and the bridge keeps per-key order, the key being the MQTT topic).
  const used = new Set<RawRecord>();
  const logs = deadLetterLogs(b);
  for (const x of bads) {
    // Topics over 1 KiB are cut to their first 1 KiB in the dead letter, with dlq.topic_bytes.
    const topicHeader = x.topic.length > 1024 ? x.topic.slice(0, 1024) : x.topic;
    const d = dlq.find((r) => !used.has(r) && r.headers['mqtt.topic'] === topicHeader && r.headers['dlq.reason'] === x.reason)!;
    expect(d, `dead letter for ${x.reason} on ${x.topic.slice(0, 80)}`).toBeDefined();
    used.add(d);
    expect(d.key).toBe(x.topic.slice(0, 1024));
    expect(d.headers['dlq.topic_bytes']).toBe(x.topic.length > 1024 ? String(Buffer.byteLength(x.topic)) : undefined);
    expect(d.headers['mqtt.qos']).toBe('1');
    expect(d.headers['mqtt.retain']).toBe('false');
    expect(d.headers['dlq.route']).toBe(x.route);
    expect(d.headers['dlq.detail']!.length).toBeGreaterThan(0);
    if (x.truncated) {
      expect(d.headers['dlq.original_bytes']).toBe(String(x.payload.length));
      expect(d.bytes!.length).toBeLessThan(x.payload.length);
      expect(d.bytes!.length).toBeGreaterThan(0);
      expect(d.bytes).toEqual(x.payload.subarray(0, d.bytes!.length));
    } else {
      expect(d.headers['dlq.original_bytes']).toBeUndefined();
      expect(d.bytes ?? Buffer.alloc(0)).toEqual(x.payload);
    }
    expect(recordSize(d)).toBeLessThanOrEqual(maxBytes);
    // Its one log line: reason, route, topic, the same detail and message id as the record.
    const mine = logs.filter((l) => l.messageId === d.headers['mqtt.message_id']);
    expect(mine, `one log line for ${d.headers['mqtt.message_id']}`).toHaveLength(1);
    expect(mine[0]).toMatchObject({ level: 'warn', reason: x.reason, route: x.route, detail: d.headers['dlq.detail'] });
    expect(mine[0]!.mqttTopic!.startsWith(x.topic.slice(0, 256))).toBe(true);
  }
  expect(logs).toHaveLength(bads.length);

  const byReason = new Map<string, number>();
  for (const x of bads) byReason.set(x.reason, (byReason.get(x.reason) ?? 0) + 1);
  for (const [reason, n] of byReason) expect(await b.metric('mqtt_kafka_dead_letter_total', { reason }), reason).toBe(n);
  expect(await b.metric('mqtt_kafka_dead_letter_total')).toBe(dlq.length);
  expect(await b.metric('mqtt_kafka_dropped_total')).toBe(0);
  return dlq;
}

/** Publishes good/bad/good…, waits until all is settled, checks the good ones (in order) and the dead letters. */
async function runCase(ns: string, kind: 'json' | 'tpl' | 'raw', bads: readonly Bad[], over: Record<string, string> = {}): Promise<{ b: BridgeProcess; dlq: RawRecord[] }> {
  const b = await setup(ns, over);
  const good = kind === 'json' ? (s: number) => goodJson(ns, s) : kind === 'tpl' ? (s: number) => goodTpl(ns, s) : (s: number) => goodRaw(ns, s);
  const msgs = interleave(good, bads);
  await publishAll(msgs);
  await settled(b, msgs.length);
  const n = bads.length + 1;
  const seqs =
    kind === 'json'
      ? await goodSeqs(`${ns}-good`, 'dev-1', n, jsonSeq)
      : kind === 'tpl'
        ? await goodSeqs(`${ns}-tpl`, 'alice', n, jsonSeq)
        : await goodSeqs(`${ns}-raw`, `${ns}/raw/dev-1`, n, rawSeq);
  expect(seqs, 'the good messages around the bad ones, in order').toEqual(Array.from({ length: n }, (_, i) => i));
  const dlq = await expectDeadLetters(b, ns, bads, Number(over.KAFKA_MAX_MESSAGE_BYTES ?? MAX));
  return { b, dlq };
}

describe('dead letters against real Mosquitto and Kafka', () => {
  it('payload that is not UTF-8 on a json route: invalid_utf8, bytes kept exactly', async () => {
    const ns = 'dl-utf8';
    const t = `${ns}/json/dev-1`;
    const { b } = await runCase(ns, 'json', [
      // A Latin-1 device ("café") and raw garbage inside a JSON string.
      bad(t, Buffer.from('{"device":"dev-1","seq":1,"value":2,"note":"caf\xe9"}', 'latin1'), 'invalid_utf8', 'readings'),
      bad(t, Buffer.from([0x7b, 0x22, 0x73, 0x65, 0x71, 0x22, 0x3a, 0x31, 0x2c, 0x22, 0x76, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0xc3, 0x28, 0x80, 0x22, 0x7d]), 'invalid_utf8', 'readings'),
    ]);
    await b.proc.stop('SIGTERM');
  });

  it('not JSON (or not a JSON object) on a json route: invalid_json', async () => {
    const ns = 'dl-json';
    const t = `${ns}/json/dev-1`;
    const { b } = await runCase(ns, 'json', [
      bad(t, 'temperature=21.5', 'invalid_json', 'readings'),
      bad(t, '{"device":"dev-1","seq":1,"value":', 'invalid_json', 'readings'),
      bad(t, '[{"seq":1,"value":2}]', 'invalid_json', 'readings'),
      bad(t, '42', 'invalid_json', 'readings'),
    ]);
    await b.proc.stop('SIGTERM');
  });

  it('missing required field: missing_field', async () => {
    const ns = 'dl-missing';
    const t = `${ns}/json/dev-1`;
    const { b, dlq } = await runCase(ns, 'json', [
      bad(t, '{"device":"dev-1","seq":7}', 'missing_field', 'readings'),
      bad(t, '{"device":"dev-1","value":2.5}', 'missing_field', 'readings'),
      bad(t, '{"device":"dev-1"}', 'missing_field', 'readings'),
    ]);
    expect(dlq.map((d) => d.headers['dlq.detail'])).toEqual(['value', 'seq', 'seq']);
    await b.proc.stop('SIGTERM');
  });

  it('mistyped required field: wrong_type', async () => {
    const ns = 'dl-type';
    const t = `${ns}/json/dev-1`;
    const { b, dlq } = await runCase(ns, 'json', [
      bad(t, '{"device":"dev-1","seq":"7","value":2.5}', 'wrong_type', 'readings'),
      bad(t, '{"device":"dev-1","seq":7.5,"value":2.5}', 'wrong_type', 'readings'),
      bad(t, '{"device":"dev-1","seq":7,"value":1e400}', 'wrong_type', 'readings'),
      bad(t, '{"device":"dev-1","seq":7,"value":{"v":2.5}}', 'wrong_type', 'readings'),
      // A JSON null satisfies only `any` (docs/routes.md, require): wrong_type, not missing_field.
      bad(t, '{"device":"dev-1","seq":null,"value":2.5}', 'wrong_type', 'readings'),
    ]);
    expect(dlq[4]!.headers['dlq.detail']).toBe('seq: expected integer, got null');
    for (const d of dlq) expect(d.headers['dlq.detail']).toMatch(/expected/);
    await b.proc.stop('SIGTERM');
  });

  it('payload larger than KAFKA_MAX_MESSAGE_BYTES: too_large, dead letter cut to fit with dlq.original_bytes', async () => {
    const ns = 'dl-large';
    const big = Buffer.from(JSON.stringify({ device: 'dev-1', seq: 1, value: 2, blob: 'x'.repeat(50_000) }));
    expect(big.length).toBeGreaterThan(50_000);
    const { b, dlq } = await runCase(ns, 'json', [bad(`${ns}/json/dev-1`, big, 'too_large', 'readings', true)]);
    expect(dlq[0]!.bytes!.length).toBeGreaterThan(MAX / 2); // cut to fit, not emptied
    // The raw route checks the same limit (here on binary data).
    const rawBig = Buffer.alloc(50_000, 0xa5);
    await publishAll([goodRaw(ns, 0), { topic: `${ns}/raw/dev-1`, payload: rawBig }, goodRaw(ns, 1)]);
    await settled(b, 6);
    expect(await goodSeqs(`${ns}-raw`, `${ns}/raw/dev-1`, 2, rawSeq)).toEqual([0, 1]);
    const all = await readTopicBytes(`${ns}-dlq`, 2);
    const d = all.find((r) => r.headers['dlq.route'] === 'raw')!;
    expect(d.headers['dlq.reason']).toBe('too_large');
    expect(d.headers['dlq.original_bytes']).toBe('50000');
    expect(d.bytes).toEqual(rawBig.subarray(0, d.bytes!.length));
    expect(recordSize(d)).toBeLessThanOrEqual(MAX);
    expect(await b.metric('mqtt_kafka_dead_letter_total', { reason: 'too_large' })).toBe(2);
    expect(await b.metric('mqtt_kafka_write_errors_total')).toBe(0);
    await b.proc.stop('SIGTERM');
  });

  it('a topic or key template that renders empty or illegal: bad_topic, bad_key', async () => {
    const ns = 'dl-tpl';
    const t = `${ns}/tpl/dev-1`;
    const p = (zone: unknown, owner: unknown) => JSON.stringify({ zone, owner, seq: 1 });
    const { b, dlq } = await runCase(ns, 'tpl', [
      bad(t, p('', 'alice'), 'bad_topic', 'templated'),
      bad(t, p('line 4/press', 'alice'), 'bad_topic', 'templated'),
      bad(t, p('z'.repeat(250), 'alice'), 'bad_topic', 'templated'),
      bad(t, p('..', 'alice'), 'bad_topic', 'templated'),
      bad(t, p(`${ns}-tpl`, ''), 'bad_key', 'templated'),
      // A template field that is absent: missing_field (not a crash, not an empty topic).
      bad(t, JSON.stringify({ owner: 'alice', seq: 1 }), 'missing_field', 'templated'),
    ]);
    expect(dlq.find((d) => d.headers['dlq.reason'] === 'bad_key')!.headers['dlq.detail']).toMatch(/empty/);
    await b.proc.stop('SIGTERM');
  });

  it('an empty payload on a json route: empty_payload (on a raw route it is a record)', async () => {
    const ns = 'dl-empty';
    const { b } = await runCase(ns, 'json', [bad(`${ns}/json/dev-1`, Buffer.alloc(0), 'empty_payload', 'readings'), bad(`${ns}/json/dev-2`, Buffer.alloc(0), 'empty_payload', 'readings')]);
    await publishAll([{ topic: `${ns}/raw/dev-9`, payload: Buffer.alloc(0) }]);
    await settled(b, 6);
    const raw = await readTopicBytes(`${ns}-raw`, 1);
    expect(raw).toHaveLength(1);
    expect(raw[0]!.bytes ?? Buffer.alloc(0)).toEqual(Buffer.alloc(0));
    expect(await b.metric('mqtt_kafka_dead_letter_total')).toBe(2);
    await b.proc.stop('SIGTERM');
  });

  it('a topic of 5,000 bytes whose record exceeds KAFKA_MAX_MESSAGE_BYTES is dead-lettered with its payload', async () => {
    // key (the MQTT topic) + mqtt.topic header alone are 10,000 bytes: too large as a record, but
    // the dead letter (key cut to 1,024 bytes) still fits.
    const ns = 'dl-topic5k';
    const topic = `${ns}/raw/` + 'L'.repeat(5000 - `${ns}/raw/`.length);
    expect(Buffer.byteLength(topic)).toBe(5000);
    const { b } = await runCase(ns, 'raw', [bad(topic, '{"reading":1}', 'too_large', 'raw')]);
    await b.proc.stop('SIGTERM');
  });

  // Mosquitto accepts a 65,535-byte topic. Its dead letter keeps the first 1 KiB of the topic in
  // the key and the mqtt.topic header (dlq.topic_bytes gives the length), so it fits.
  it('a topic of 65,535 bytes (the MQTT maximum) ends in the DLQ, not dropped', async () => {
    const ns = 'dl-topic64k';
    const topic = `${ns}/raw/` + 'T'.repeat(65_535 - `${ns}/raw/`.length);
    expect(Buffer.byteLength(topic)).toBe(65_535);
    const payload = Buffer.from('{"reading":1}');
    const b = await setup(ns);
    await publishAll([goodRaw(ns, 0), { topic, payload }, goodRaw(ns, 1)]);
    await settled(b, 3);
    expect(await goodSeqs(`${ns}-raw`, `${ns}/raw/dev-1`, 2, rawSeq)).toEqual([0, 1]);
    // Settled means the dead letter was written or given up on: no need to wait long for it.
    const dlq = await readTopicBytes(`${ns}-dlq`, 1, 2_000);
    const dead = await b.metric('mqtt_kafka_dead_letter_total');
    const dropped = await b.metric('mqtt_kafka_dropped_total', { reason: 'rejected_by_kafka' });
    console.log(`65,535-byte topic: ${dlq.length} DLQ records, dead_letter_total ${dead}, dropped_total{rejected_by_kafka} ${dropped}`);
    await b.proc.stop('SIGTERM');
    expect(dropped).toBe(0);
    expect(dlq).toHaveLength(1);
    expect(dead).toBe(1);
    const d = dlq[0]!;
    expect(d.headers['dlq.reason']).toBe('too_large');
    expect(d.headers['dlq.topic_bytes']).toBe('65535');
    expect(topic.startsWith(d.headers['mqtt.topic']!)).toBe(true);
    expect(d.bytes).toEqual(payload);
    expect(recordSize(d)).toBeLessThanOrEqual(MAX);
  });

  it("a record over the broker's message.max.bytes (KAFKA_MAX_MESSAGE_BYTES=1000000): Kafka refuses it, rejected_by_kafka dead letter cut to fit", async () => {
    const ns = 'dl-refused';
    const payload = Buffer.alloc(30_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    const { b, dlq } = await runCase(ns, 'raw', [bad(`${ns}/raw/dev-1`, payload, 'rejected_by_kafka', 'kafka', true)], { KAFKA_MAX_MESSAGE_BYTES: '1000000' });
    const d = dlq[0]!;
    expect(d.headers['dlq.detail']).toMatch(/refused/);
    expect(recordSize(d)).toBeLessThan(BROKER_MAX);
    // Kafka's refusal is a counted write error of kind too_large; Kafka stays "up".
    expect(await b.metric('mqtt_kafka_write_errors_total', { kind: 'too_large' })).toBeGreaterThanOrEqual(1);
    expect(await b.metric('mqtt_kafka_kafka_up')).toBe(1);
    expect(await b.metric('mqtt_kafka_spool_records_spooled_total')).toBe(0);
    await b.proc.stop('SIGTERM');
  });

  // The dead letter of a refused record is halved again each time Kafka refuses it, until it fits.
  it('a record over twice the broker limit still ends in the DLQ (rejected_by_kafka), not dropped', async () => {
    const ns = 'dl-refused2';
    const payload = Buffer.alloc(60_000, 0x5a);
    const b = await setup(ns, { KAFKA_MAX_MESSAGE_BYTES: '1000000' });
    await publishAll(interleave((s) => goodRaw(ns, s), [bad(`${ns}/raw/dev-1`, payload, 'rejected_by_kafka', 'kafka', true)]));
    await settled(b, 3);
    expect(await goodSeqs(`${ns}-raw`, `${ns}/raw/dev-1`, 2, rawSeq)).toEqual([0, 1]);
    // Settled means the dead letter was written or given up on: no need to wait long for it.
    const dlq = await readTopicBytes(`${ns}-dlq`, 1, 2_000);
    const dead = await b.metric('mqtt_kafka_dead_letter_total', { reason: 'rejected_by_kafka' });
    const dropped = await b.metric('mqtt_kafka_dropped_total', { reason: 'rejected_by_kafka' });
    console.log(`60 kB record refused by Kafka: ${dlq.length} DLQ records, dead_letter_total ${dead}, dropped_total{rejected_by_kafka} ${dropped}`);
    await b.proc.stop('SIGTERM');
    expect(dropped).toBe(0);
    expect(dlq).toHaveLength(1);
    expect(dlq[0]!.headers['dlq.reason']).toBe('rejected_by_kafka');
    expect(dlq[0]!.headers['dlq.original_bytes']).toBe('60000');
  });

  it('no bad input stops the pipeline: after all of them 1,000 good messages arrive, and DLQ records = dead-letter counters', async () => {
    const ns = 'dl-all';
    // MQTT_TOPIC wider than the rules, so a topic no rule matches reaches the bridge (unmatched).
    const b = await setup(ns, { MQTT_TOPIC: `${ns}/#` });
    const t = `${ns}/json/dev-1`;
    const tpl = `${ns}/tpl/dev-1`;
    const bads = [
      bad(t, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'invalid_utf8', 'readings'),
      bad(t, 'not json', 'invalid_json', 'readings'),
      bad(t, '{"seq":1}', 'missing_field', 'readings'),
      bad(t, '{"seq":"1","value":1}', 'wrong_type', 'readings'),
      bad(t, JSON.stringify({ seq: 1, value: 1, pad: 'p'.repeat(50_000) }), 'too_large', 'readings', true),
      bad(tpl, JSON.stringify({ zone: '', owner: 'alice', seq: 1 }), 'bad_topic', 'templated'),
      bad(tpl, JSON.stringify({ zone: 'a b', owner: 'alice', seq: 1 }), 'bad_topic', 'templated'),
      bad(tpl, JSON.stringify({ zone: `${ns}-tpl`, owner: '', seq: 1 }), 'bad_key', 'templated'),
      bad(t, Buffer.alloc(0), 'empty_payload', 'readings'),
      bad(`${ns}/nowhere/dev-1`, '{"seq":1,"value":1}', 'unmatched', 'unmatched'),
      bad(`${ns}/raw/` + 'L'.repeat(5000), 'x', 'too_large', 'raw'),
    ];
    // Each bad message between two good ones of the json route, then 1,000 more good ones.
    const msgs = interleave((s) => goodJson(ns, s), bads);
    const firstGood = bads.length + 1;
    for (let i = 0; i < 1000; i++) msgs.push(goodJson(ns, firstGood + i));
    const t0 = Date.now();
    await publishAll(msgs);
    await settled(b, msgs.length);
    const total = firstGood + 1000;
    expect(await goodSeqs(`${ns}-good`, 'dev-1', total, jsonSeq)).toEqual(Array.from({ length: total }, (_, i) => i));
    console.log(`${msgs.length} messages (${bads.length} bad) settled in ${Date.now() - t0} ms`);
    await expectDeadLetters(b, ns, bads);
    // Everything received is accounted for: written (good + dead letters) or dead-lettered; none lost, none skipped.
    expect(await b.metric('mqtt_kafka_messages_received_total')).toBe(msgs.length);
    expect(await b.metric('mqtt_kafka_records_written_total')).toBe(total + bads.length);
    expect(await b.metric('mqtt_kafka_skipped_total')).toBe(0);
    expect(await b.metric('mqtt_kafka_write_errors_total')).toBe(0);
    expect((await b.readyz()).status).toBe(200);
    await b.proc.stop('SIGTERM');
  });
});
