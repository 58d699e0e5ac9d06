import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkKeyOrder,
  makeTempDir,
  publishMessages,
  readTyped,
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
 * The schema registry goes away mid-stream. Records of subjects the bridge already resolved
 * (cached schema ids) must keep flowing; records of a subject first seen during the outage must
 * be held (not acknowledged, not dead-lettered) and written, in per-key order, once the registry
 * answers again; /readyz, the metrics and exactly one fault log line say so. The registry keeps
 * its schemas in a file (as a production registry does), so its ids survive the restart.
 */

let mosq: Mosquitto;
let kafka: Kafka;
let registry: SchemaRegistry;
const bridges: BridgeProcess[] = [];

beforeAll(async () => {
  [mosq, kafka, registry] = await Promise.all([startMosquitto(), startKafka(), startRegistry({ persistent: true })]);
}, 180_000);

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop(), registry?.stop()]);
});

const SCHEMA = {
  type: 'record',
  name: 'Tick',
  fields: [
    { name: 'badge', type: 'string' },
    { name: 'seq', type: 'long' },
    { name: 'phase', type: 'string' },
  ],
};

describe('schema registry outage', () => {
  it('registry stopped mid-stream: cached subjects flow on, a new subject is held and written after it returns; nothing lost, nothing dead-lettered', async () => {
    const ns = 'flt';
    const dir = makeTempDir('sr-fault-');
    fs.writeFileSync(path.join(dir, 'tick.avsc'), JSON.stringify(SCHEMA));
    fs.writeFileSync(
      path.join(dir, 'routes.yaml'),
      `routes:
  - name: static
    match: ${ns}/{badge}/static
    topic: ${ns}-static
    key: "{badge}"
    format: avro
    schema: tick.avsc
  - name: streams
    match: ${ns}/{badge}/stream/{stream}
    topic: ${ns}-stream-{stream}
    key: "{badge}"
    format: avro
    schema: tick.avsc
`,
    );
    const topics = [`${ns}-static`, `${ns}-stream-old`, `${ns}-stream-new`];
    for (const t of topics) await kafka.createTopic(t, 3);
    await kafka.createTopic(`${ns}-dlq`, 1);
    const b = await startBridgeProcess({
      logDir: dir,
      env: {
        MQTT_BROKER: '127.0.0.1',
        MQTT_PORT: String(mosq.port),
        MQTT_CLIENT_ID: `sr-${ns}`,
        KAFKA_BROKER: '127.0.0.1',
        KAFKA_PORT: String(kafka.port),
        ROUTES_FILE: path.join(dir, 'routes.yaml'),
        DLQ_TOPIC: `${ns}-dlq`,
        SCHEMA_REGISTRY_URL: registry.url,
        SCHEMA_REGISTRY_TIMEOUT_MS: '1000',
        SCHEMA_REGISTRY_RETRY_MS: '500',
      },
    });
    bridges.push(b);

    const badges = 40;
    const seqs = new Map<string, number>();
    const tick = (badge: number, stream: string | undefined, phase: string): PublishItem => {
      const id = `b${badge}`;
      const topic = stream === undefined ? `${ns}/${id}/static` : `${ns}/${id}/stream/${stream}`;
      const k = `${topic}`;
      const seq = seqs.get(k) ?? 0;
      seqs.set(k, seq + 1);
      return { topic, payload: JSON.stringify({ badge: id, seq, phase }) };
    };
    // Before: the static topic and stream "old" (resolved at start, and at first sight).
    const before: PublishItem[] = [];
    for (let i = 0; i < 50; i++) for (let bd = 0; bd < badges; bd++) before.push(tick(bd, i % 2 === 0 ? undefined : 'old', 'before'));
    await publishMessages(mosq.url, before);
    await b.waitFor('the first phase written', async () => (await b.metric('mqtt_kafka_records_written_total')) >= before.length && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 60_000);

    // Outage: the registry process stops. Then the static topic, stream "old" and a new stream.
    await registry.stop();
    const outageStart = Date.now();
    const during: PublishItem[] = [];
    for (let i = 0; i < 60; i++) for (let bd = 0; bd < badges; bd++) during.push(tick(bd, [undefined, 'old', 'new'][i % 3], 'during'));
    await publishMessages(mosq.url, during);
    const cachedDuring = during.filter((m) => !m.topic.endsWith('/new')).length;
    const newDuring = during.length - cachedDuring;
    // The cached subjects are written although the registry is down; the new one is held.
    await b.waitFor('cached subjects written during the outage', async () => (await b.metric('mqtt_kafka_records_written_total')) >= before.length + cachedDuring, 60_000);
    await b.waitFor('the new subject held', async () => (await b.metric('mqtt_kafka_schema_held_records')) === newDuring, 30_000);
    // Let the outage last a few retry rounds.
    await new Promise((r) => setTimeout(r, 4000));
    const ready = await b.readyz();
    const held = await b.metric('mqtt_kafka_schema_held_records');
    const up = await b.metric('mqtt_kafka_schema_registry_up');
    const writtenDuring = (await b.metric('mqtt_kafka_records_written_total')) - before.length;
    const unreachable = await b.metric('mqtt_kafka_schema_registry_requests_total', { result: 'unreachable' });
    const deadDuring = await b.metric('mqtt_kafka_dead_letter_total');
    expect(ready.status).toBe(503);
    expect(ready.body.schemaRegistry).toEqual({ up: false, waitingSubjects: 1, refusedSubjects: 0, heldRecords: newDuring });
    expect(held).toBe(newDuring);
    expect(up).toBe(0);
    expect(writtenDuring).toBe(cachedDuring);
    expect(deadDuring).toBe(0);

    await registry.start();
    const outageMs = Date.now() - outageStart;
    const back = Date.now();
    await b.waitFor('everything written after the registry returned', async () => (await b.metric('mqtt_kafka_records_written_total')) >= before.length + during.length && (await b.metric('mqtt_kafka_unacked_messages')) === 0, 60_000);
    const drainMs = Date.now() - back;
    await b.waitFor('ready again', async () => (await b.readyz()).status === 200, 30_000);

    // Read everything back through the registry with the independent reader.
    const expected = new Map<string, number>();
    for (const m of [...before, ...during]) {
      const t = m.topic.endsWith('/static') ? `${ns}-static` : `${ns}-stream-${m.topic.split('/').pop()}`;
      expected.set(t, (expected.get(t) ?? 0) + 1);
    }
    let lost = 0;
    let duplicates = 0;
    let orderViolations = 0;
    const perTopic: string[] = [];
    for (const t of topics) {
      const n = expected.get(t) ?? 0;
      const recs: TypedRecord[] = await readTyped({ bootstrap: kafka.bootstrap, registryUrl: registry.url, topic: t, format: 'avro', expected: n });
      expect(recs.filter((r) => r.error !== undefined).slice(0, 3)).toEqual([]);
      const o = checkKeyOrder(recs, (r) => String(r.value?.badge), (r) => Number(r.value?.seq));
      lost += n - o.distinct;
      duplicates += o.duplicates;
      orderViolations += o.orderViolations;
      perTopic.push(`${t} ${o.distinct}/${n}`);
      expect(o.splitKeys).toEqual([]);
      // Each badge's seqs are exactly 0..k-1.
      for (const r of recs) expect(r.key).toBe(r.value?.badge);
    }
    const newId = await registry.latestId(`${ns}-stream-new-value`);
    const dlq = await kafka.readTopic(`${ns}-dlq`, { timeoutMs: 5000 });
    const lines = b.logLines().filter((l) => l.fault === 'schema_registry');
    const starts = lines.filter((l) => l.level === 'warn' && l.msg.startsWith('schema registry unreachable'));
    const ends = lines.filter((l) => l.level === 'info' && l.msg.startsWith('schema registry reachable again'));
    console.log(
      `[schema-registry-faults] published ${before.length} before + ${during.length} during the outage (${cachedDuring} to cached subjects, ${newDuring} to a new one); ` +
        `written during the outage ${writtenDuring}, held ${held}; outage ${outageMs} ms, all written ${drainMs} ms after the registry was back; ` +
        `lost ${lost}, duplicates ${duplicates}, order violations ${orderViolations}, dead letters ${dlq.length}; ` +
        `unreachable attempts ${unreachable}; fault lines: ${starts.length} start, ${ends.length} end; read back ${perTopic.join(', ')}; new subject id ${newId}`,
    );
    expect(lost).toBe(0);
    expect(duplicates).toBe(0);
    expect(orderViolations).toBe(0);
    expect(dlq.length).toBe(0);
    expect(await b.metric('mqtt_kafka_dead_letter_total')).toBe(0);
    expect(starts.length).toBe(1);
    await b.waitFor('the fault end line', async () => b.logLines().some((l) => l.fault === 'schema_registry' && l.level === 'info'), 15_000);
  }, 300_000);
});
