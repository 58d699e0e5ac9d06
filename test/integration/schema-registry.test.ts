import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toIso8601, uuidFrom } from '../../src/bridge/routes/index.js';
import {
  checkKeyOrder,
  makeTempDir,
  publishMessages,
  readTyped,
  repoRoot,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  startRegistry,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
  type PublishItem,
  type SchemaRegistry,
  type TypedRecord,
} from '../harness/index.js';

/**
 * Typed records through a real schema registry (Apicurio Registry 3.x, its Confluent-compatible
 * API), real Kafka and Mosquitto, the bridge as its own process. For each format, 10,000 QoS 1
 * messages with bad ones interleaved; the good ones are read back by an independent reader
 * (Confluent's Python client and deserializers, test/registry-reader/read.py) that decodes
 * through the registry; every field is compared and per-key order checked; the bad ones must be
 * exactly the dead letters, reason schema_mismatch, with the validator's words in dlq.detail.
 * Then an incompatible schema change must stop the bridge at start with exit code 2.
 */

const examples = path.join(repoRoot, 'examples', 'routes');
let mosq: Mosquitto;
let kafka: Kafka;
let registry: SchemaRegistry;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  [mosq, kafka, registry] = await Promise.all([startMosquitto(), startKafka(), startRegistry()]);
}, 180_000);

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop(), registry?.stop()]);
});

async function bridge(ns: string, routesFile: string, over: Record<string, string> = {}): Promise<BridgeProcess> {
  const b = await startBridgeProcess({
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_CLIENT_ID: `sr-${ns}`,
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      ROUTES_FILE: routesFile,
      DLQ_TOPIC: `${ns}-dlq`,
      SCHEMA_REGISTRY_URL: registry.url,
      ...over,
    },
  });
  bridges.push(b);
  return b;
}

interface Bad extends PublishItem {
  /** A word the validator's detail must contain. */
  readonly detailHas: string;
}

/** `n` bad messages cycling through `kinds`, the i-th on topic `topicOf(i)`. */
function badsFor(n: number, topicOf: (i: number) => string, kinds: readonly Omit<Bad, 'topic'>[]): Bad[] {
  return Array.from({ length: n }, (_, i) => ({ topic: topicOf(i), ...(kinds[i % kinds.length] as Omit<Bad, 'topic'>) }));
}

/** Good messages with one bad message after every `every`-th good one. */
function interleave(good: readonly PublishItem[], bads: readonly Bad[], every: number): PublishItem[] {
  const out: PublishItem[] = [];
  let b = 0;
  good.forEach((g, i) => {
    out.push(g);
    if ((i + 1) % every === 0 && b < bads.length) out.push(bads[b++] as Bad);
  });
  if (b < bads.length) throw new Error('not enough good messages to interleave every bad one');
  return out;
}

async function settled(b: BridgeProcess, n: number): Promise<void> {
  await b.waitFor(`${n} messages received and settled`, async () => (await b.metric('mqtt_kafka_messages_received_total')) >= n && (await b.metric('mqtt_kafka_in_flight_messages')) === 0 && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 120_000);
}

/** The dead letters must be exactly `bads` (same MQTT topic and payload bytes, in order per topic), reason schema_mismatch, detail naming the problem. */
async function expectMismatches(b: BridgeProcess, ns: string, bads: readonly Bad[]): Promise<void> {
  const dlq = await kafka.readTopic(`${ns}-dlq`, { expected: bads.length, timeoutMs: 30_000 });
  expect(dlq.length, 'dead letters').toBe(bads.length);
  const remaining = [...dlq];
  for (const x of bads) {
    const i = remaining.findIndex((d) => d.headers['mqtt.topic'] === x.topic && d.value === String(x.payload));
    expect(i, `dead letter of ${x.topic} ${String(x.payload)}`).toBeGreaterThanOrEqual(0);
    const d = remaining.splice(i, 1)[0]!;
    expect(d.headers['dlq.reason']).toBe('schema_mismatch');
    expect(d.headers['dlq.detail'], String(x.payload)).toContain(x.detailHas);
    // The detail names fields and kinds of values, never payload content.
    expect(d.headers['dlq.detail']).not.toMatch(/seven|hot|sleep|1\.2/);
  }
  expect(await b.metric('mqtt_kafka_dead_letter_total', { reason: 'schema_mismatch' })).toBe(bads.length);
  expect(await b.metric('mqtt_kafka_dead_letter_total')).toBe(bads.length);
  expect(b.logLines().filter((l) => l.msg === 'message dead-lettered' && l.reason === 'schema_mismatch').length).toBe(bads.length);
}

function expectDecoded(recs: readonly TypedRecord[], n: number, schemaId: number): void {
  const errors = recs.filter((r) => r.error !== undefined);
  expect(errors.slice(0, 3), 'records the independent reader could not decode').toEqual([]);
  expect(recs.length).toBe(n);
  expect(new Set(recs.map((r) => r.schema_id))).toEqual(new Set([schemaId]));
}

interface FormatRun {
  readonly ns: string;
  readonly routesFile: string;
  readonly topic: string;
  readonly format: 'avro' | 'protobuf' | 'json_schema';
  /** Protobuf: the message written. */
  readonly message?: string;
  readonly good: readonly PublishItem[];
  readonly bads: readonly Bad[];
  /** The per-key increasing number of a record (order check). */
  readonly seqOf: (r: TypedRecord) => number;
  /** Compares every field of a decoded record with what was published. */
  readonly check: (r: TypedRecord) => void;
}

/**
 * Publishes the good messages with the bad ones interleaved through a fresh bridge, reads the
 * topic back with the independent reader, checks count, schema id, per-key order and every
 * record, then the dead letters.
 */
async function runFormat(o: FormatRun): Promise<void> {
  await kafka.createTopic(o.topic, 3);
  await kafka.createTopic(`${o.ns}-dlq`, 1);
  const b = await bridge(o.ns, o.routesFile);
  const t0 = Date.now();
  await publishMessages(mosq.url, interleave(o.good, o.bads, 300));
  await settled(b, o.good.length + o.bads.length);
  const throughMs = Date.now() - t0;
  const id = await registry.latestId(`${o.topic}-value`);
  const recs = await readTyped({ bootstrap: kafka.bootstrap, registryUrl: registry.url, topic: o.topic, format: o.format, expected: o.good.length, ...(o.message ? { message: o.message } : {}) });
  expectDecoded(recs, o.good.length, id);
  const order = checkKeyOrder(recs, (r) => r.key ?? '', o.seqOf);
  console.log(`[schema-registry] ${o.format}: ${o.good.length} good + ${o.bads.length} bad through in ${throughMs} ms; read back ${recs.length}, distinct ${order.distinct}, duplicates ${order.duplicates}, order violations ${order.orderViolations}, schema id ${id}`);
  expect(order).toEqual({ distinct: o.good.length, duplicates: 0, orderViolations: 0, splitKeys: [] });
  for (const r of recs) o.check(r);
  await expectMismatches(b, o.ns, o.bads);
}

describe('schema registry formats, read back by an independent decoder', () => {
  it('avro (examples/routes/cyberpartner-avro.yaml): 10,000 heartbeats with mismatches interleaved', async () => {
    const ns = 'avro';
    const badges = 100;
    const per = 100;
    const topicOf = (b: number) => `cackalacky/badge/egress/badge-${String(b).padStart(3, '0')}/heartbeat`;
    const body = (b: number, seq: number) => ({ ts: 1_767_000_000 + seq * 300 + b / 1000, seq, free_heap: 100_000 + b * 10 + seq });
    const good: PublishItem[] = [];
    for (let seq = 0; seq < per; seq++) for (let b = 0; b < badges; b++) good.push({ topic: topicOf(b), payload: JSON.stringify(body(b, seq)) });
    const bads = badsFor(30, (i) => topicOf(i % badges), [
      { payload: JSON.stringify({ ts: 1, seq: 'seven' }), detailHas: 'seq' },
      { payload: JSON.stringify({ ts: 1, firmware: '1.2' }), detailHas: '"firmware" not in the schema' },
      { payload: JSON.stringify({ ts: 1, free_heap: 1.5 }), detailHas: 'free_heap' },
    ]);
    await runFormat({
      ns,
      routesFile: path.join(examples, 'cyberpartner-avro.yaml'),
      topic: 'ingress-heartbeat',
      format: 'avro',
      good,
      bads,
      seqOf: (r) => Number(r.value?.seq),
      check: (r) => {
        const v = r.value as Record<string, unknown>;
        const bnum = Number(/badge-(\d+)/.exec(r.key ?? '')?.[1]);
        const sent = body(bnum, Number(v.seq));
        expect(v).toEqual({
          ...sent,
          badge_id: r.key,
          event_source: 'badge',
          event_uuid: uuidFrom(r.headers['mqtt.message_id']!),
          event_timestamp: toIso8601(sent.ts),
          message_received_ts: toIso8601(Number(r.headers['mqtt.received_at'])),
          event_type: 'heartbeat',
          event_subtype: 'heap',
        });
        expect(r.headers['mqtt.topic']).toBe(topicOf(bnum));
      },
    });
  }, 240_000);

  it('protobuf (examples/routes/industrial-sensors-protobuf.yaml): 10,000 sensor readings with mismatches interleaved', async () => {
    const ns = 'protobuf';
    const sites = 20;
    const per = 500;
    const base = Date.parse('2026-12-01T00:00:00Z');
    const topicOf = (s: number, i: number) => `FCTS/FAE/site-${String(s).padStart(2, '0')}/SolvExtract/tag-${i % 5}`;
    const body = (s: number, i: number) => ({ site_code: `site-${String(s).padStart(2, '0')}`, sensor_id: `sensor-${i % 7}`, timestamp: new Date(base + i * 1000).toISOString(), value: i * 0.25 - 10 });
    const good: PublishItem[] = [];
    for (let i = 0; i < per; i++) for (let s = 0; s < sites; s++) good.push({ topic: topicOf(s, i), payload: JSON.stringify(body(s, i)) });
    const bads = badsFor(30, (i) => topicOf(i % sites, i), [
      { payload: JSON.stringify({ site_code: 's', sensor_id: 'x', timestamp: 't', value: 'hot' }), detailHas: 'value: a string is not a number' },
      { payload: JSON.stringify({ site_code: 's', unit: 'bar', value: 1 }), detailHas: 'unit: not a field of fcts.fae.solvextract.SensorReading' },
      { payload: JSON.stringify({ site_code: 5, value: 1 }), detailHas: 'site_code: an integer is not a string' },
    ]);
    await runFormat({
      ns,
      routesFile: path.join(examples, 'industrial-sensors-protobuf.yaml'),
      topic: 'fcts-fae-solvextract-pb',
      format: 'protobuf',
      message: 'fcts.fae.solvextract.SensorReading',
      good,
      bads,
      seqOf: (r) => Date.parse(String(r.value?.timestamp)),
      check: (r) => {
        const v = r.value as Record<string, unknown>;
        const s = Number(/site-(\d+)/.exec(r.key ?? '')?.[1]);
        const i = (Date.parse(String(v.timestamp)) - base) / 1000;
        expect(v).toEqual({ ...body(s, i), pi_tag: `tag-${i % 5}` });
        expect(r.headers['mqtt.topic']).toBe(topicOf(s, i));
      },
    });
  }, 240_000);

  it('json_schema (draft-07, formats checked): 10,000 events with mismatches interleaved', async () => {
    const ns = 'jsonschema';
    const dir = makeTempDir('sr-json-');
    fs.writeFileSync(
      path.join(dir, 'event.json'),
      JSON.stringify({
        $schema: 'http://json-schema.org/draft-07/schema#',
        title: 'BadgeEvent',
        type: 'object',
        required: ['badge_id', 'seq', 'ts', 'kind', 'at'],
        additionalProperties: false,
        properties: {
          badge_id: { type: 'string' },
          seq: { type: 'integer', minimum: 0 },
          ts: { type: 'number' },
          kind: { enum: ['touch', 'shake', 'idle'] },
          at: { type: 'string', format: 'date-time' },
          tags: { type: 'array', items: { type: 'string' } },
        },
      }),
    );
    fs.writeFileSync(
      path.join(dir, 'routes.yaml'),
      `routes:
  - name: events
    match: ${ns}/{badge_id}/event
    topic: ${ns}-events
    key: "{badge_id}"
    format: json_schema
    schema: event.json
    enrich: { badge_id: "{badge_id}", at: "{payload.ts|iso8601}" }
`,
    );
    const badges = 50;
    const per = 200;
    const kinds = ['touch', 'shake', 'idle'];
    const topicOf = (b: number) => `${ns}/b${b}/event`;
    const body = (b: number, seq: number) => ({ seq, ts: 1_767_000_000_000 + seq * 1000 + b, kind: kinds[(b + seq) % 3], tags: seq % 10 === 0 ? ['tenth', `b${b}`] : [] });
    const good: PublishItem[] = [];
    for (let seq = 0; seq < per; seq++) for (let b = 0; b < badges; b++) good.push({ topic: topicOf(b), payload: JSON.stringify(body(b, seq)) });
    const bads = badsFor(30, (i) => topicOf(i % badges), [
      { payload: JSON.stringify({ seq: -1, ts: 1, kind: 'idle' }), detailHas: '/seq must be >= 0' },
      { payload: JSON.stringify({ seq: 1, ts: 1, kind: 'sleep' }), detailHas: '/kind must be equal to one of the allowed values' },
      { payload: JSON.stringify({ seq: 1, ts: 1, kind: 'idle', battery: 3 }), detailHas: 'must NOT have additional properties ("battery")' },
    ]);
    await runFormat({
      ns,
      routesFile: path.join(dir, 'routes.yaml'),
      topic: `${ns}-events`,
      format: 'json_schema',
      good,
      bads,
      seqOf: (r) => Number(r.value?.seq),
      check: (r) => {
        const v = r.value as Record<string, unknown>;
        const bn = Number(/^b(\d+)$/.exec(r.key ?? '')?.[1]);
        const sent = body(bn, Number(v.seq));
        expect(v).toEqual({ ...sent, badge_id: r.key, at: toIso8601(sent.ts) });
      },
    });
  }, 240_000);
});

describe('a schema the registry refuses at start', () => {
  it('an incompatible change (BACKWARD, new field without a default): one clear message, exit code 2, nothing connected', async () => {
    const subject = 'refused-readings-value';
    const v1 = { type: 'record', name: 'Reading', fields: [{ name: 'value', type: 'double' }] };
    const r = await fetch(`${registry.url}/subjects/${subject}/versions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema: JSON.stringify(v1) }),
    });
    expect(r.status).toBe(200);
    await registry.setCompatibility(subject, 'BACKWARD');
    const dir = makeTempDir('sr-refused-');
    const v2 = { type: 'record', name: 'Reading', fields: [{ name: 'value', type: 'double' }, { name: 'unit', type: 'string' }] };
    fs.writeFileSync(path.join(dir, 'reading-v2.avsc'), JSON.stringify(v2));
    fs.writeFileSync(path.join(dir, 'routes.yaml'), 'routes:\n  - name: readings\n    match: refused/{site}\n    topic: refused-readings\n    format: avro\n    schema: reading-v2.avsc\n');
    const b = await startBridgeProcess({
      logDir: dir,
      waitReady: false,
      env: {
        MQTT_BROKER: '127.0.0.1',
        MQTT_PORT: String(mosq.port),
        MQTT_CLIENT_ID: 'sr-refused',
        KAFKA_BROKER: '127.0.0.1',
        KAFKA_PORT: String(kafka.port),
        ROUTES_FILE: path.join(dir, 'routes.yaml'),
        SCHEMA_REGISTRY_URL: registry.url,
      },
    });
    bridges.push(b);
    const exit = await b.proc.waitExit(60_000);
    const out = fs.readFileSync(b.logFile, 'utf8');
    const stderrLine = out.split('\n').find((l) => l.startsWith('mqtt-kafka-spool: '));
    console.log(`[schema-registry] refused at start: exit ${exit.code}; ${stderrLine}`);
    expect(exit.code).toBe(2);
    expect(out).toContain(`route readings: the schema registry refused subject ${subject}: HTTP 409`);
    expect(out).toMatch(/Incompatible/);
    expect(out).toContain('BRIDGE_ERR_SCHEMA_REFUSED');
    // It stopped before connecting: no "bridge starting" line, no MQTT session.
    expect(out).not.toContain('bridge starting');
  }, 120_000);
});
