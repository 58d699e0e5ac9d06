import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileRoutes, loadRoutesFile, parseRoutesYaml, uuidFrom } from '../../src/bridge/routes/index.js';
import type { TransformResult } from '../../src/bridge/types.js';
import type { InboundMessage } from '../../src/mqtt/types.js';
import { DataType, encodePayload, metric } from '../harness/sparkplug.js';

/** The example route files (examples/routes/*.yaml), each loaded with the real loader. */
const opts = { separator: '_', maxMessageBytes: 1_048_576 } as const;
const file = (name: string): string => fileURLToPath(new URL(`../../examples/routes/${name}.yaml`, import.meta.url));
const load = (name: string) => loadRoutesFile(file(name), opts);

const RECEIVED = Date.UTC(2025, 5, 20, 18, 4, 5, 678);
const msg = (topic: string, payload: unknown, id = 'bridge-7f3a:1042'): InboundMessage => ({
  seq: 1042,
  id,
  topic,
  payload: Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)),
  qos: 1,
  retain: false,
  dup: false,
  receivedAtMs: RECEIVED,
});

function record(r: TransformResult): { topic: string; key: string | null; route: string; headers: Readonly<Record<string, string>>; value: Buffer } {
  if (r.kind !== 'record') throw new Error(`expected a record, got ${JSON.stringify(r)}`);
  return r;
}
const json = (r: TransformResult): unknown => JSON.parse(record(r).value.toString('utf8'));

describe('cyberpartner.yaml (seed 000)', () => {
  const t = load('cyberpartner');
  const badge = 'b4dg3-00a1';
  const ts = 1_718_906_645.25; // NTP epoch seconds from the badge
  const base = {
    badge_id: badge,
    event_source: 'badge',
    event_uuid: uuidFrom('bridge-7f3a:1042'),
    event_timestamp: '2024-06-20T18:04:05.250Z',
    message_received_ts: '2025-06-20T18:04:05.678Z',
  };

  it.each([
    ['heartbeat', 'heartbeat', { heap_free: 81234 }, 'heartbeat', 'ingress-heartbeat', 'heartbeat', 'heap'],
    ['achievement/first_blood', 'achievement', {}, 'achievement', 'ingress-achievement', 'achievement', 'first_blood'],
    ['game/button.touch', 'game-play', { button: 'A' }, 'game-play', 'ingress-game-play', 'game.play', 'button.touch'],
    ['cp/create', 'cp-create', {}, 'cp-create', 'ingress-cp-create', 'cp.create', 'cp.create'],
    ['cp/death', 'cp-death', { cause: 'starved' }, 'cp-death', 'ingress-cp-death', 'cp.death', 'cp.death'],
    ['cp/state', 'cp-update-state', { hunger: 3, mood: 'ok' }, 'cp-update-state', 'ingress-cp-update-state', 'cp.update.state', 'cp.update.state'],
    ['cp/inventory', 'cp-update-inventory', { items: [{ id: 7, n: 2 }] }, 'cp-update-inventory', 'ingress-cp-update-inventory', 'cp.update.inventory', 'cp.update.inventory'],
    ['store/purchase', 'store', { item: 7, price: 40 }, 'store', 'ingress-store', 'store', 'store.purchase'],
    ['world/random/mass.locusts', 'world-event', {}, 'world-event', 'ingress-world-event', 'world.random', 'mass.locusts'],
    ['world/day/day.3', 'world-event', {}, 'world-event', 'ingress-world-event', 'world.day', 'day.3'],
    ['kiosk/checkin', 'kiosk', { kiosk: 'k2' }, 'kiosk', 'ingress-kiosk', 'kiosk', 'kiosk.checkin'],
    ['deadbeef', 'deadbeef', { ibutton: 'deadbeef' }, 'deadbeef', 'ingress-deadbeef', 'security.deadbeef', 'ibutton.spoof'],
  ])('%s -> %s', (suffix, _rule, extra, route, topic, eventType, eventSubtype) => {
    const r = t.apply(msg(`cackalacky/badge/egress/${badge}/${suffix}`, { ts, ...extra }));
    expect(record(r)).toMatchObject({ route, topic, key: badge, headers: {} });
    expect(json(r)).toEqual({ ts, ...extra, ...base, event_type: eventType, event_subtype: eventSubtype });
  });

  it('millisecond timestamps work too; a payload without ts is dead-lettered', () => {
    expect(json(t.apply(msg(`cackalacky/badge/egress/${badge}/cp/create`, { ts: 1_718_906_645_250 })))).toMatchObject({
      event_timestamp: '2024-06-20T18:04:05.250Z',
    });
    expect(t.apply(msg(`cackalacky/badge/egress/${badge}/cp/create`, { hp: 1 }))).toEqual({ kind: 'dead', route: 'cp-create', reason: 'missing_field', detail: 'ts' });
  });

  it('a replay of the same receipt keeps its event_uuid; another receipt gets another', () => {
    const m = msg(`cackalacky/badge/egress/${badge}/heartbeat`, { ts });
    const a = json(t.apply(m)) as { event_uuid: string };
    expect((json(t.apply(m)) as { event_uuid: string }).event_uuid).toBe(a.event_uuid);
    expect((json(t.apply(msg(m.topic, { ts }, 'bridge-7f3a:1043'))) as { event_uuid: string }).event_uuid).not.toBe(a.event_uuid);
  });

  it('unknown badge events are dead-lettered as unmatched', () => {
    expect(t.apply(msg(`cackalacky/badge/egress/${badge}/cp/resurrect`, { ts }))).toMatchObject({ kind: 'dead', route: 'unmatched', reason: 'unmatched' });
  });
});

describe('metamorphosis.yaml (seed 002)', () => {
  const t = load('metamorphosis');
  it('wraps every message in the {topic, content(base64)} envelope on topic "mqtt", key = MQTT topic', () => {
    const payload = Buffer.from([0x00, 0x01, 0xfe, 0xff]);
    const r = record(t.apply(msg('test/sensors/7', payload)));
    expect(r).toMatchObject({ route: 'metamorphosis', topic: 'mqtt', key: 'test/sensors/7' });
    expect(JSON.parse(r.value.toString())).toEqual({ topic: 'test/sensors/7', content: 'AAH+/w==' });
    expect(t.subscriptions).toEqual(['#']);
  });
});

describe('unified-namespace.yaml (seed 001)', () => {
  const t = load('unified-namespace');
  const reading = {
    timestamp: 1_718_906_645_000,
    value: 71.5,
    credentials: { user: 'plc', password: 'hunter2' },
    meta: { sensor: { raw: 'AB12', unit: 'C' }, line: { raw: 'x' } },
  };

  it("maps '/' to '_', drops ignored attributes, exposes the timestamp attribute as a header", () => {
    const r = t.apply(msg('ent1/plant1/area1/line1/press7', reading));
    expect(record(r)).toMatchObject({
      route: 'uns-device',
      topic: 'ent1_plant1_area1_line1_press7',
      key: 'ent1/plant1/area1/line1/press7',
      headers: { timestamp: '1718906645000', 'uns.site': 'plant1' },
    });
    expect(json(r)).toEqual({ timestamp: 1_718_906_645_000, value: 71.5, meta: { sensor: { unit: 'C' }, line: {} } });
  });

  it('other namespace levels: nothing dropped; timestamp required', () => {
    const r = t.apply(msg('ent1/plant1/kpi', { timestamp: '2025-06-20T18:04:05Z', oee: 0.82 }));
    expect(record(r)).toMatchObject({ route: 'uns', topic: 'ent1_plant1_kpi', headers: { timestamp: '2025-06-20T18:04:05Z' } });
    expect(t.apply(msg('ent1/plant1/kpi', { oee: 0.82 }))).toEqual({ kind: 'dead', route: 'uns', reason: 'missing_field', detail: 'timestamp' });
  });

  it('Sparkplug B (protobuf) becomes a JSON record with metric names from the BIRTH, keyed group/edge_node/device', () => {
    const sp = load('unified-namespace');
    const birth = encodePayload({ timestamp: '1718906645000', seq: '1', metrics: [metric({ name: 'Inputs/Pressure', alias: 3, datatype: DataType.Double }, 1.5)] });
    expect(record(sp.apply(msg('spBv1.0/grp/DBIRTH/edge1/dev1', birth)))).toMatchObject({ route: 'sparkplug', topic: 'spBv1.0_grp_DBIRTH_edge1_dev1', key: 'grp/edge1/dev1' });
    const pb = encodePayload({ timestamp: '1718906646000', seq: '2', metrics: [{ alias: '3', timestamp: '1718906645999', double_value: 187.25 }] });
    const r = record(sp.apply(msg('spBv1.0/grp/DDATA/edge1/dev1', pb)));
    expect(r).toMatchObject({ route: 'sparkplug', topic: 'spBv1.0_grp_DDATA_edge1_dev1', key: 'grp/edge1/dev1', headers: { 'sparkplug.message_type': 'DDATA' } });
    expect(JSON.parse(r.value.toString())).toEqual({
      group: 'grp', message_type: 'DDATA', edge_node: 'edge1', device: 'dev1', timestamp: 1718906646000, seq: 2,
      metrics: [{ name: 'Inputs/Pressure', alias: 3, timestamp: 1718906645999, datatype: DataType.Double, type: 'Double', is_null: false, value: 187.25 }],
    });
    // Not Sparkplug B: a dead letter with the original bytes, never forwarded raw.
    expect(sp.apply(msg('spBv1.0/grp/DDATA/edge1/dev1', Buffer.from('{"value": 1}')))).toMatchObject({ kind: 'dead', route: 'sparkplug', reason: 'invalid_sparkplug' });
  });

  it("variant with '.' as separator", () => {
    const doc = parseRoutesYaml(readFileSync(file('unified-namespace'), 'utf8').replaceAll('kafka:_', 'kafka:.'), 'uns-dots.yaml');
    const dots = compileRoutes(doc, 'uns-dots.yaml', opts);
    expect(record(dots.apply(msg('ent1/plant1/area1/line1/press7', reading))).topic).toBe('ent1.plant1.area1.line1.press7');
  });
});

describe('industrial-sensors.yaml (seed 003)', () => {
  const t = load('industrial-sensors');
  const reading = { site_code: 'MOR', sensor_id: 'PT-1042', timestamp: '2025-06-20T18:04:05Z', value: 13.37 };

  it('valid reading -> fcts-fae-solvextract, key = site, payload unchanged, topic parts as headers', () => {
    const payload = JSON.stringify(reading);
    const r = record(t.apply(msg('FCTS/FAE/MOR/SolvExtract/SX_PLS_FLOW', payload)));
    expect(r).toMatchObject({ route: 'solvextract', topic: 'fcts-fae-solvextract', key: 'MOR', headers: { site: 'MOR', pi_tag: 'SX_PLS_FLOW' } });
    expect(r.value.toString()).toBe(payload);
  });

  it('strict validation: every problem is a dead letter with its reason, never lost', () => {
    const topic = 'FCTS/FAE/MOR/SolvExtract/SX_PLS_FLOW';
    const { value: _v, ...noValue } = reading;
    expect(t.apply(msg(topic, noValue))).toMatchObject({ kind: 'dead', reason: 'missing_field', detail: 'value' });
    expect(t.apply(msg(topic, { ...reading, value: '13.37' }))).toMatchObject({ kind: 'dead', reason: 'wrong_type' });
    expect(t.apply(msg(topic, { ...reading, timestamp: 1_718_906_645 })).kind).toBe('record');
    expect(t.apply(msg(topic, 'not json'))).toMatchObject({ kind: 'dead', reason: 'invalid_json' });
  });

  it('malformed topics (not 5 levels, wrong branch) -> dead_letter unmatched', () => {
    for (const topic of ['FCTS/FAE/MOR/SolvExtract', 'FCTS/FAE/MOR/SolvExtract/a/b', 'FCTS/FAE/MOR/Other/SX']) {
      expect(t.apply(msg(topic, reading))).toMatchObject({ kind: 'dead', route: 'unmatched', reason: 'unmatched' });
    }
  });
});

describe('game-lobby.yaml (seed 004)', () => {
  const t = load('game-lobby');
  it('forwards only "Cleaning Game Records", keyed by game_token', () => {
    const clean = { message: 'Cleaning Game Records', game_token: 'g-8c1f', user_token: 'u-42', level: 'INFO' };
    const r = record(t.apply(msg('lib/server/lobby', clean)));
    expect(r).toMatchObject({ route: 'lobby-game-cleaned', topic: 'lib.server.lobby', key: 'g-8c1f' });
    expect(JSON.parse(r.value.toString())).toEqual(clean);
  });

  it('every other log record is skipped as filtered', () => {
    expect(t.apply(msg('lib/server/lobby', { message: 'Player joined', user_token: 'u-42' }))).toEqual({ kind: 'skip', route: 'lobby-game-cleaned', reason: 'filtered' });
  });

  it('a cleaning record without a game_token is dead-lettered', () => {
    expect(t.apply(msg('lib/server/lobby', { message: 'Cleaning Game Records', user_token: 'u' }))).toMatchObject({ kind: 'dead', reason: 'missing_field', detail: 'game_token' });
  });
});
