import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uuidFrom } from '../../src/bridge/routes/values.js';
import {
  badgeId,
  DataType,
  encodePayload,
  metric,
  checkBadges,
  makeTempDir,
  publishBadges,
  repoRoot,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  type BridgeLogLine,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
  type ReadRecord,
} from '../harness/index.js';

/**
 * The shipped routes profiles (examples/routes/*.yaml) end to end against real Mosquitto and
 * Kafka: the bridge runs as its own process with ROUTES_FILE pointing at the file as shipped,
 * realistic messages for each system are published, and an independent consumer (kcat) reads
 * the records back. Subscriptions come from the rules unless the profile's own comment says to
 * set MQTT_TOPIC.
 */

let mosq: Mosquitto;
let kafka: Kafka;
const bridges: BridgeProcess[] = [];

const CYBERPARTNER_TOPICS = [
  'ingress-heartbeat',
  'ingress-achievement',
  'ingress-game-play',
  'ingress-cp-create',
  'ingress-cp-death',
  'ingress-cp-update-state',
  'ingress-cp-update-inventory',
  'ingress-store',
  'ingress-world-event',
  'ingress-kiosk',
  'ingress-deadbeef',
];
const UNS_TOPICS = ['ent1_plant1_area1_line1_press7', 'ent1_plant_2_area1_line1_press7', 'ent1_plant1_status', 'spBv1.0_grp1_NDATA_edge1'];

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  // Auto creation is off in the test broker: every topic a profile writes to exists up front.
  const topics: [string, number][] = [
    ...CYBERPARTNER_TOPICS.map((t): [string, number] => [t, 3]),
    ['cp-dead-letter', 1],
    ['mqtt', 3],
    ...UNS_TOPICS.map((t): [string, number] => [t, 1]),
    ['uns-dead-letter', 1],
    ['fcts-fae-solvextract', 3],
    ['sensors-dead-letter', 1],
    ['sensors-wide-dead-letter', 1],
    ['lib.server.lobby', 3],
    ['lobby-dead-letter', 1],
  ];
  for (const [t, p] of topics) await kafka.createTopic(t, p);
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

const profile = (file: string): string => path.join(repoRoot, 'examples', 'routes', file);

async function bridge(over: Record<string, string>): Promise<BridgeProcess> {
  const dir = makeTempDir('profiles-');
  const b = await startBridgeProcess({
    logDir: dir,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_WORKERS: '4',
      SPOOL_PATH: `${dir}/spool.db`,
      ...over,
    },
  });
  bridges.push(b);
  return b;
}

const logLines = (b: BridgeProcess): BridgeLogLine[] => b.logLines();

/** The topic filters the bridge subscribed to (its 'subscribed' log line; /readyz 200 implies it was written). */
async function subscriptions(b: BridgeProcess): Promise<string[]> {
  // Readiness can be observed a moment before the log line reaches the file.
  await b.waitFor('a "subscribed" log line', async () => logLines(b).some((l) => l.msg === 'subscribed'), 10_000);
  const line = logLines(b).find((l) => l.msg === 'subscribed');
  expect(line, 'a "subscribed" log line').toBeDefined();
  return [...(line!.topics as string[])].sort();
}

/** Waits until the bridge received `n` messages and every one of them is settled (written, dead-lettered or skipped). */
async function settled(b: BridgeProcess, n: number): Promise<void> {
  await b.waitFor(`${n} messages received and settled`, async () => (await b.metric('mqtt_kafka_messages_received_total')) >= n && (await b.metric('mqtt_kafka_in_flight_messages')) === 0 && (await b.metric('mqtt_kafka_unacked_messages')) === 0);
}

async function publishAll(msgs: readonly { topic: string; payload: string | Buffer; userProperties?: Record<string, string> }[]): Promise<void> {
  const c = await mqtt.connectAsync(mosq.url, { protocolVersion: 5, clientId: `profiles-pub-${process.pid}-${Date.now()}` });
  try {
    // One at a time: the broker then delivers them to the bridge in this order.
    for (const m of msgs) await c.publishAsync(m.topic, m.payload, { qos: 1, ...(m.userProperties ? { properties: { userProperties: m.userProperties } } : {}) });
  } finally {
    await c.endAsync();
  }
}

/** Reads a topic with kcat; `bytes` holds each value's exact bytes. */
async function readTopicBytes(topic: string, expected: number, timeoutMs = 30_000): Promise<(ReadRecord & { bytes: Buffer | null })[]> {
  return kafka.readTopic(topic, { expected, timeoutMs });
}

function expectStandardHeaders(r: ReadRecord, mqttTopic: string): void {
  expect(r.headers['mqtt.topic']).toBe(mqttTopic);
  expect(r.headers['mqtt.qos']).toBe('1');
  expect(r.headers['mqtt.retain']).toBe('false');
  expect(r.headers['mqtt.dup']).toBe('false');
  expect(Number(r.headers['mqtt.received_at'])).toBeGreaterThan(Date.now() - 600_000);
  expect(r.headers['mqtt.message_id']).toMatch(/.+-[0-9a-z]+$/);
}

describe('cyberpartner.yaml', () => {
  // Realistic payloads from the translators' inputs; ts in epoch seconds (NTP), one in milliseconds.
  const events = [
    { path: 'heartbeat', topic: 'ingress-heartbeat', rule: 'heartbeat', type: 'heartbeat', subtype: 'heap', payload: { ts: 1718906645, free_heap: 81234, uptime_s: 3605 }, iso: '2024-06-20T18:04:05.000Z' },
    { path: 'achievement/first_steps', topic: 'ingress-achievement', rule: 'achievement', type: 'achievement', subtype: 'first_steps', payload: { ts: 1718906646.25, achievement_id: 7, points: 50 }, iso: '2024-06-20T18:04:06.250Z' },
    { path: 'game/button.touch', topic: 'ingress-game-play', rule: 'game-play', type: 'game.play', subtype: 'button.touch', payload: { ts: 1718906647.5, button: 'A', duration_ms: 120 }, iso: '2024-06-20T18:04:07.500Z' },
    { path: 'cp/create', topic: 'ingress-cp-create', rule: 'cp-create', type: 'cp.create', subtype: 'cp.create', payload: { ts: 1718906648, name: 'Blinky', species: 'axolotl', stats: { hunger: 10, joy: 90 } }, iso: '2024-06-20T18:04:08.000Z' },
    { path: 'cp/death', topic: 'ingress-cp-death', rule: 'cp-death', type: 'cp.death', subtype: 'cp.death', payload: { ts: 1718906649, cause: 'starvation', age_days: 2 }, iso: '2024-06-20T18:04:09.000Z' },
    { path: 'cp/state', topic: 'ingress-cp-update-state', rule: 'cp-update-state', type: 'cp.update.state', subtype: 'cp.update.state', payload: { ts: 1718906650, state: { hunger: 40, thirst: 12, mood: 'sleepy' } }, iso: '2024-06-20T18:04:10.000Z' },
    { path: 'cp/inventory', topic: 'ingress-cp-update-inventory', rule: 'cp-update-inventory', type: 'cp.update.inventory', subtype: 'cp.update.inventory', payload: { ts: 1718906651, items: [{ sku: 'apple', qty: 3 }, { sku: 'potion', qty: 1 }] }, iso: '2024-06-20T18:04:11.000Z' },
    { path: 'store/purchase', topic: 'ingress-store', rule: 'store', type: 'store', subtype: 'store.purchase', payload: { ts: 1718906652, sku: 'apple', price: 5, currency: 'coins' }, iso: '2024-06-20T18:04:12.000Z' },
    { path: 'world/day/mass.locusts', topic: 'ingress-world-event', rule: 'world-event', type: 'world.day', subtype: 'mass.locusts', payload: { ts: 1718906653, severity: 3 }, iso: '2024-06-20T18:04:13.000Z' },
    { path: 'world/random/solar.flare', topic: 'ingress-world-event', rule: 'world-event', type: 'world.random', subtype: 'solar.flare', payload: { ts: 1718906654, severity: 1 }, iso: '2024-06-20T18:04:14.000Z' },
    { path: 'kiosk/checkin', topic: 'ingress-kiosk', rule: 'kiosk', type: 'kiosk', subtype: 'kiosk.checkin', payload: { ts: 1718906655, kiosk_id: 'k-03' }, iso: '2024-06-20T18:04:15.000Z' },
    { path: 'deadbeef', topic: 'ingress-deadbeef', rule: 'deadbeef', type: 'security.deadbeef', subtype: 'ibutton.spoof', payload: { ts: 1718906656789, ibutton: 'DEADBEEF00000001' }, iso: '2024-06-20T18:04:16.789Z' },
  ] as const;

  it('maps every event type to its topic, keyed by badge_id, with the enrichment fields; subscribes to the rules\' filters', async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'profile-cyberpartner', ROUTES_FILE: profile('cyberpartner.yaml'), DLQ_TOPIC: 'cp-dead-letter' });
    expect(await subscriptions(b)).toEqual(
      [
        'cackalacky/badge/egress/+/heartbeat',
        'cackalacky/badge/egress/+/achievement/+',
        'cackalacky/badge/egress/+/game/+',
        'cackalacky/badge/egress/+/cp/create',
        'cackalacky/badge/egress/+/cp/death',
        'cackalacky/badge/egress/+/cp/state',
        'cackalacky/badge/egress/+/cp/inventory',
        'cackalacky/badge/egress/+/store/+',
        'cackalacky/badge/egress/+/world/+/+',
        'cackalacky/badge/egress/+/kiosk/+',
        'cackalacky/badge/egress/+/deadbeef',
      ].sort(),
    );

    const badges = ['cp-1a2b', 'cp-3c4d'];
    const sent = events.flatMap((e, i) => {
      const badge = badges[i % 2]!;
      return [{ ...e, badge, mqttTopic: `cackalacky/badge/egress/${badge}/${e.path}` }];
    });
    // Not matched by any rule, so not subscribed to either: the broker never delivers it (the
    // profile says MQTT_TOPIC=cackalacky/badge/egress/# is what makes such topics dead letters).
    await publishAll([...sent.map((s) => ({ topic: s.mqttTopic, payload: JSON.stringify(s.payload) })), { topic: 'cackalacky/badge/egress/cp-1a2b/typo', payload: '{"ts":1}' }]);
    await settled(b, sent.length);

    const uuids = new Set<string>();
    const read = await Promise.all(CYBERPARTNER_TOPICS.map((t) => kafka.readTopic(t, { expected: sent.filter((s) => s.topic === t).length })));
    for (const [i, topic] of CYBERPARTNER_TOPICS.entries()) {
      const want = sent.filter((s) => s.topic === topic);
      const got = read[i]!.filter((r) => r.key?.startsWith('cp-'));
      expect(got.map((r) => r.headers['mqtt.topic']).sort(), topic).toEqual(want.map((s) => s.mqttTopic).sort());
      for (const r of got) {
        const s = want.find((w) => w.mqttTopic === r.headers['mqtt.topic'])!;
        expect(r.topic).toBe(s.topic);
        expect(r.key).toBe(s.badge);
        expectStandardHeaders(r, s.mqttTopic);
        const value = JSON.parse(r.value!) as Record<string, unknown>;
        expect(value).toEqual({
          ...s.payload,
          badge_id: s.badge,
          event_uuid: uuidFrom(r.headers['mqtt.message_id']!),
          event_timestamp: s.iso,
          message_received_ts: new Date(Number(r.headers['mqtt.received_at'])).toISOString(),
          event_source: 'badge',
          event_type: s.type,
          event_subtype: s.subtype,
        });
        expect(value.event_uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        uuids.add(value.event_uuid as string);
      }
    }
    expect(uuids.size).toBe(sent.length);
    // Every rule counted its own message; the typo'd topic never arrived; nothing dead-lettered.
    for (const s of new Set(sent.map((x) => x.rule))) {
      expect(await b.metric('mqtt_kafka_messages_received_total', { route: s }), s).toBe(sent.filter((x) => x.rule === s).length);
    }
    expect(await b.metric('mqtt_kafka_messages_received_total')).toBe(sent.length);
    expect(await b.metric('mqtt_kafka_dead_letter_total')).toBe(0);
    expect(await b.metric('mqtt_kafka_records_written_total')).toBe(sent.length);
    await b.proc.stop('SIGTERM');
  });

  it('keeps per-badge order on one topic for a few hundred messages', async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'profile-cyberpartner-order', ROUTES_FILE: profile('cyberpartner.yaml'), DLQ_TOPIC: 'cp-dead-letter' });
    const BADGES = 20;
    const PER_BADGE = 20;
    const published = await publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE, topic: (id) => `cackalacky/badge/egress/${id}/game/button.touch` });
    await settled(b, published);
    // ingress-game-play also holds the first test's record (key cp-...): only the simulator's badges count here.
    const records = (await kafka.readTopic('ingress-game-play', { expected: published + 1 })).filter((r) => r.key?.startsWith('badge-'));
    const check = checkBadges(records, BADGES, PER_BADGE);
    expect(check.missing).toEqual([]);
    expect(check.outOfOrder).toEqual([]);
    expect(check.splitPartitions).toEqual([]);
    expect(check.duplicates).toBe(0);
    for (const r of records) {
      const v = JSON.parse(r.value!) as { badge_id: string; event_type: string; event_subtype: string; seq: number };
      expect(r.key).toBe(v.badge_id);
      expect(v.event_type).toBe('game.play');
      expect(v.event_subtype).toBe('button.touch');
    }
    // The 20 badges are spread over the 3 partitions, not all on one.
    expect(new Set(records.map((r) => r.partition)).size).toBeGreaterThan(1);
    expect(new Set(records.map((r) => r.key))).toEqual(new Set(Array.from({ length: BADGES }, (_, i) => badgeId(i))));
    await b.proc.stop('SIGTERM');
  });
});

describe('metamorphosis.yaml', () => {
  it("writes every MQTT message to topic mqtt as Metamorphosis' envelope, keyed by the MQTT topic", async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'profile-metamorphosis', ROUTES_FILE: profile('metamorphosis.yaml') });
    expect(await subscriptions(b)).toEqual(['#']);
    const binary = Buffer.from([0x08, 0x96, 0x01, 0x00, 0xff, 0xfe, 0x0a]);
    const msgs = [
      { topic: 'test/sensor/temp', payload: '{"celsius":21.5}' },
      { topic: 'test/binary', payload: binary },
      { topic: 'factory/line-2/counter', payload: 'count=1024', userProperties: { origin: 'plc-7' } },
      ...Array.from({ length: 30 }, (_, i) => ({ topic: 'test/seq', payload: `seq ${i}` })),
    ];
    await publishAll(msgs);
    await settled(b, msgs.length);

    const records = await readTopicBytes('mqtt', msgs.length);
    expect(records).toHaveLength(msgs.length);
    for (const r of records) {
      expect(r.topic).toBe('mqtt');
      const env = JSON.parse(r.value!) as { topic: string; content: string };
      expect(Object.keys(env).sort()).toEqual(['content', 'topic']);
      expect(r.key).toBe(env.topic);
      expectStandardHeaders(r, env.topic);
    }
    const byTopic = (t: string) => records.filter((r) => r.key === t).map((r) => JSON.parse(r.value!) as { topic: string; content: string });
    expect(byTopic('test/sensor/temp')).toEqual([{ topic: 'test/sensor/temp', content: Buffer.from('{"celsius":21.5}').toString('base64') }]);
    expect(Buffer.from(byTopic('test/binary')[0]!.content, 'base64')).toEqual(binary);
    expect(byTopic('factory/line-2/counter')).toEqual([{ topic: 'factory/line-2/counter', content: Buffer.from('count=1024').toString('base64') }]);
    expect(records.find((r) => r.key === 'factory/line-2/counter')!.headers.origin).toBe('plc-7');
    // One MQTT topic = one key = one partition, in publish order.
    const seq = records.filter((r) => r.key === 'test/seq');
    expect(new Set(seq.map((r) => r.partition)).size).toBe(1);
    expect(seq.map((r) => Buffer.from((JSON.parse(r.value!) as { content: string }).content, 'base64').toString())).toEqual(Array.from({ length: 30 }, (_, i) => `seq ${i}`));
    expect(await b.metric('mqtt_kafka_messages_received_total', { route: 'metamorphosis' })).toBe(msgs.length);
    expect(await b.metric('mqtt_kafka_dead_letter_total')).toBe(0);
    await b.proc.stop('SIGTERM');
  });
});

describe('unified-namespace.yaml', () => {
  it("maps '/' to '_', drops the ignored attributes, copies the timestamp attribute into a header", async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'profile-uns', ROUTES_FILE: profile('unified-namespace.yaml'), DLQ_TOPIC: 'uns-dead-letter' });
    // spBv1.0/# and +/+/+/+/+ are covered by #: one subscription, so the broker delivers one copy.
    expect(await subscriptions(b)).toEqual(['#']);

    const device = {
      timestamp: 1718906645123,
      value: 187.25,
      unit: 'bar',
      credentials: { user: 'plc', password: 'hunter2' },
      meta: { sensor: { raw: 'AAEC', model: 'PT-100' }, plc: { raw: [0, 1, 2], addr: 'DB1.DBD4' } },
    };
    const deviceSpace = { timestamp: '2024-06-20T18:04:05.000Z', value: 3, credentials: 'x' };
    const status = '{"timestamp": "2024-06-20T18:04:05Z",  "state": "running", "credentials": "kept: not a device-level topic"}';
    const sparkplug = encodePayload({ timestamp: '1718906645060', seq: '3', metrics: [metric({ name: 'RPM', timestamp: 10, datatype: DataType.Float }, 1450.5)] });
    await publishAll([
      { topic: 'ent1/plant1/area1/line1/press7', payload: JSON.stringify(device) },
      { topic: 'ent1/plant 2/area1/line1/press7', payload: JSON.stringify(deviceSpace) },
      { topic: 'ent1/plant1/status', payload: status },
      { topic: 'spBv1.0/grp1/NDATA/edge1', payload: sparkplug },
      // The timestamp attribute is required: without it, a dead letter (not lost).
      { topic: 'ent1/plant1/area1/line1/press7', payload: '{"value": 1}' },
    ]);
    await settled(b, 5);

    const [press] = await kafka.readTopic('ent1_plant1_area1_line1_press7', { expected: 1 });
    expect(press!.key).toBe('ent1/plant1/area1/line1/press7');
    expectStandardHeaders(press!, 'ent1/plant1/area1/line1/press7');
    expect(press!.headers.timestamp).toBe('1718906645123');
    expect(press!.headers['uns.site']).toBe('plant1');
    expect(JSON.parse(press!.value!)).toEqual({ timestamp: 1718906645123, value: 187.25, unit: 'bar', meta: { sensor: { model: 'PT-100' }, plc: { addr: 'DB1.DBD4' } } });

    // A character Kafka does not allow (the space) becomes '_' as well.
    const [spaced] = await kafka.readTopic('ent1_plant_2_area1_line1_press7', { expected: 1 });
    expect(spaced!.key).toBe('ent1/plant 2/area1/line1/press7');
    expect(spaced!.headers.timestamp).toBe('2024-06-20T18:04:05.000Z');
    expect(spaced!.headers['uns.site']).toBe('plant 2');
    expect(JSON.parse(spaced!.value!)).toEqual({ timestamp: '2024-06-20T18:04:05.000Z', value: 3 });

    // Not a device-level topic: the general rule, nothing dropped, bytes unchanged.
    const [st] = await kafka.readTopic('ent1_plant1_status', { expected: 1 });
    expect(st!.value).toBe(status);
    expect(st!.headers.timestamp).toBe('2024-06-20T18:04:05Z');
    expect(st!.headers['uns.site']).toBeUndefined();

    // Sparkplug B (protobuf) decoded into a JSON record, keyed group/edge_node; no timestamp header.
    const [spb] = await kafka.readTopic('spBv1.0_grp1_NDATA_edge1', { expected: 1 });
    expect(spb!.key).toBe('grp1/edge1');
    expectStandardHeaders(spb!, 'spBv1.0/grp1/NDATA/edge1');
    expect(spb!.headers).toMatchObject({ 'sparkplug.message_type': 'NDATA', 'sparkplug.group': 'grp1', 'sparkplug.edge_node': 'edge1' });
    expect(spb!.headers.timestamp).toBeUndefined();
    expect(JSON.parse(spb!.value!)).toEqual({
      group: 'grp1', message_type: 'NDATA', edge_node: 'edge1', device: null, timestamp: 1718906645060, seq: 3,
      metrics: [{ name: 'RPM', alias: null, timestamp: 10, datatype: DataType.Float, type: 'Float', is_null: false, value: 1450.5 }],
    });

    const [dead] = await kafka.readTopic('uns-dead-letter', { expected: 1 });
    expect(dead!.headers['dlq.reason']).toBe('missing_field');
    expect(dead!.headers['dlq.route']).toBe('uns-device');
    expect(dead!.value).toBe('{"value": 1}');
    expect(await b.metric('mqtt_kafka_dead_letter_total', { reason: 'missing_field' })).toBe(1);
    expect(await b.metric('mqtt_kafka_messages_received_total', { route: 'uns-device' })).toBe(3);
    expect(await b.metric('mqtt_kafka_messages_received_total', { route: 'uns' })).toBe(1);
    expect(await b.metric('mqtt_kafka_messages_received_total', { route: 'sparkplug' })).toBe(1);
    // Exactly one record per topic: nothing arrived twice through overlapping subscriptions.
    for (const t of UNS_TOPICS) expect((await kafka.readTopic(t, { expected: 1 })).length, t).toBe(1);
    await b.proc.stop('SIGTERM');
  });
});

describe('industrial-sensors.yaml', () => {
  const reading = (site: string, tag: string, value: unknown, ts: unknown = '2024-06-20T18:04:05.250Z') =>
    JSON.stringify({ site_code: site, sensor_id: tag, timestamp: ts, value, quality: 'good' });

  it('writes valid readings byte for byte keyed by site (subscription derived from the rule); invalid payloads are dead letters', async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'profile-sensors', ROUTES_FILE: profile('industrial-sensors.yaml'), DLQ_TOPIC: 'sensors-dead-letter' });
    expect(await subscriptions(b)).toEqual(['FCTS/FAE/+/SolvExtract/+']);
    const good = [
      { topic: 'FCTS/FAE/S101/SolvExtract/FI-1001.PV', payload: reading('S101', 'FI-1001.PV', 12.5) },
      { topic: 'FCTS/FAE/S102/SolvExtract/TI-2040.PV', payload: reading('S102', 'TI-2040.PV', 41, 1718906645) },
      { topic: 'FCTS/FAE/S101/SolvExtract/PI-1007.PV', payload: reading('S101', 'PI-1007.PV', -0.75) },
      { topic: 'FCTS/FAE/S101/SolvExtract/FI-1001.PV', payload: reading('S101', 'FI-1001.PV', 13.0) },
    ];
    const bad = [
      { topic: 'FCTS/FAE/S101/SolvExtract/FI-1001.PV', payload: '{"site_code":"S101","sensor_id":"FI-1001.PV","timestamp":1718906645', reason: 'invalid_json' },
      { topic: 'FCTS/FAE/S101/SolvExtract/FI-1001.PV', payload: '{"site_code":"S101","sensor_id":"FI-1001.PV","timestamp":1718906645}', reason: 'missing_field' },
      { topic: 'FCTS/FAE/S102/SolvExtract/TI-2040.PV', payload: reading('S102', 'TI-2040.PV', '41.0'), reason: 'wrong_type' },
    ];
    // Interleaved: bad input does not hold the good records of the same site back.
    await publishAll([good[0]!, bad[0]!, good[1]!, bad[1]!, good[2]!, bad[2]!, good[3]!]);
    // A malformed topic (no PI tag level) is outside the derived subscription: never delivered.
    await publishAll([{ topic: 'FCTS/FAE/S101/SolvExtract', payload: reading('S101', 'x', 1) }]);
    await settled(b, good.length + bad.length);

    const records = await kafka.readTopic('fcts-fae-solvextract', { expected: good.length });
    const mine = records.filter((r) => r.key === 'S101' || r.key === 'S102');
    expect(mine.map((r) => r.value).sort()).toEqual(good.map((g) => g.payload).sort());
    for (const r of mine) {
      const g = JSON.parse(r.value!) as { site_code: string; sensor_id: string };
      expect(r.key).toBe(g.site_code);
      expect(r.headers.site).toBe(g.site_code);
      expect(r.headers.pi_tag).toBe(g.sensor_id);
      expectStandardHeaders(r, `FCTS/FAE/${g.site_code}/SolvExtract/${g.sensor_id}`);
    }
    // Per-site order: S101's three readings in publish order, on one partition.
    const s101 = mine.filter((r) => r.key === 'S101');
    expect(new Set(s101.map((r) => r.partition)).size).toBe(1);
    expect(s101.map((r) => r.value)).toEqual([good[0]!.payload, good[2]!.payload, good[3]!.payload]);

    const dead = await kafka.readTopic('sensors-dead-letter', { expected: bad.length });
    expect(dead).toHaveLength(bad.length);
    for (const x of bad) {
      const d = dead.find((r) => r.headers['dlq.reason'] === x.reason)!;
      expect(d, x.reason).toBeDefined();
      expect(d.value).toBe(x.payload);
      expect(d.key).toBe(x.topic);
      expect(d.headers['mqtt.topic']).toBe(x.topic);
      expect(d.headers['dlq.route']).toBe('solvextract');
      expect(await b.metric('mqtt_kafka_dead_letter_total', { reason: x.reason })).toBe(1);
    }
    expect(await b.metric('mqtt_kafka_messages_received_total')).toBe(good.length + bad.length);
    await b.proc.stop('SIGTERM');
  });

  it('with MQTT_TOPIC=FCTS/FAE/# (as the profile says) a malformed topic is dead-lettered as unmatched, not lost', async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'profile-sensors-wide', ROUTES_FILE: profile('industrial-sensors.yaml'), DLQ_TOPIC: 'sensors-wide-dead-letter', MQTT_TOPIC: 'FCTS/FAE/#' });
    expect(await subscriptions(b)).toEqual(['FCTS/FAE/#']);
    const malformed = [
      { topic: 'FCTS/FAE/S201/SolvExtract', payload: reading('S201', 'FI-1', 1) },
      { topic: 'FCTS/FAE/S201/Leach/FI-1', payload: reading('S201', 'FI-1', 2) },
      { topic: 'FCTS/FAE/S201/SolvExtract/FI-1/extra', payload: reading('S201', 'FI-1', 3) },
    ];
    const good = { topic: 'FCTS/FAE/S201/SolvExtract/FI-1', payload: reading('S201', 'FI-1', 4) };
    await publishAll([...malformed, good]);
    await settled(b, malformed.length + 1);

    const dead = await kafka.readTopic('sensors-wide-dead-letter', { expected: malformed.length });
    expect(dead.map((d) => d.headers['mqtt.topic']).sort()).toEqual(malformed.map((m) => m.topic).sort());
    for (const d of dead) {
      expect(d.headers['dlq.reason']).toBe('unmatched');
      expect(d.headers['dlq.route']).toBe('unmatched');
      expect(d.value).toBe(malformed.find((m) => m.topic === d.headers['mqtt.topic'])!.payload);
    }
    expect(await b.metric('mqtt_kafka_dead_letter_total', { reason: 'unmatched' })).toBe(malformed.length);
    const records = (await kafka.readTopic('fcts-fae-solvextract', { expected: 1 })).filter((r) => r.key === 'S201');
    expect(records.map((r) => r.value)).toEqual([good.payload]);
    await b.proc.stop('SIGTERM');
  });
});

describe('game-lobby.yaml', () => {
  it('forwards only "Cleaning Game Records" keyed by game_token; every other log line is a counted skip', async () => {
    const b = await bridge({ MQTT_CLIENT_ID: 'profile-lobby', ROUTES_FILE: profile('game-lobby.yaml'), DLQ_TOPIC: 'lobby-dead-letter' });
    expect(await subscriptions(b)).toEqual(['lib/server/lobby']);
    const log = (message: string, extra: Record<string, unknown> = {}) => JSON.stringify({ level: 'info', time: '2024-06-20T18:04:05.250Z', service: 'lobby', message, ...extra });
    const cleaned = [
      log('Cleaning Game Records', { game_token: 'g-8c1f', user_token: 'u-42', players: 4 }),
      log('Cleaning Game Records', { game_token: 4711, user_token: 99 }),
      log('Cleaning Game Records', { game_token: 'g-8c1f', user_token: 'u-43', players: 4 }),
    ];
    const others = [
      log('Player joined lobby', { game_token: 'g-8c1f', user_token: 'u-42' }),
      log('Matchmaking started', { game_token: 'g-8c1f' }),
      log('Game started', { game_token: 'g-8c1f', user_token: 'u-42' }),
      log('cleaning game records', { game_token: 'g-lower', user_token: 'u-1' }), // filter is case-sensitive
      log('Cleaning Game Records (dry run)', { game_token: 'g-dry', user_token: 'u-1' }),
      JSON.stringify({ level: 'debug', msg: 'heartbeat' }), // no message field at all
      log('Player left lobby', { user_token: 'u-42' }),
    ];
    // A "Cleaning Game Records" without game_token cannot be keyed: a dead letter, not a skip.
    const noToken = log('Cleaning Game Records', { user_token: 'u-44' });
    await publishAll(
      [others[0], others[1], cleaned[0], others[2], others[3], cleaned[1], others[4], others[5], noToken, cleaned[2], others[6]].map((p) => ({ topic: 'lib/server/lobby', payload: p! })),
    );
    const total = cleaned.length + others.length + 1;
    await settled(b, total);

    const records = await kafka.readTopic('lib.server.lobby', { expected: cleaned.length });
    expect(records).toHaveLength(cleaned.length);
    for (const r of records) {
      expect(r.topic).toBe('lib.server.lobby');
      expectStandardHeaders(r, 'lib/server/lobby');
    }
    expect(records.filter((r) => r.key === '4711').map((r) => r.value)).toEqual([cleaned[1]]);
    // One game's records in order on one partition; values byte for byte (no enrich/drop).
    expect(records.filter((r) => r.key === 'g-8c1f').map((r) => r.value)).toEqual([cleaned[0], cleaned[2]]);

    expect(await b.metric('mqtt_kafka_skipped_total', { route: 'lobby-game-cleaned', reason: 'filtered' })).toBe(others.length);
    expect(await b.metric('mqtt_kafka_skipped_total')).toBe(others.length);
    expect(await b.metric('mqtt_kafka_records_written_total')).toBe(cleaned.length + 1); // + the dead letter
    expect(await b.metric('mqtt_kafka_messages_received_total', { route: 'lobby-game-cleaned' })).toBe(total);
    expect(await b.metric('mqtt_kafka_dead_letter_total', { reason: 'missing_field' })).toBe(1);
    const [dead] = await kafka.readTopic('lobby-dead-letter', { expected: 1 });
    expect(dead!.value).toBe(noToken);
    expect(dead!.headers['dlq.detail']).toContain('game_token');
    await b.proc.stop('SIGTERM');
  });
});
