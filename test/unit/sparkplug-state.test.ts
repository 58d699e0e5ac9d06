import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { compileRoutes, type RoutesTransform } from '../../src/bridge/routes/index.js';
import type { TransformResult } from '../../src/bridge/types.js';
import type { InboundMessage } from '../../src/mqtt/types.js';
import { Telemetry } from '../../src/observability/telemetry.js';
import type { SparkplugTelemetry } from '../../src/sparkplug/index.js';
import { openSqliteSpool } from '../../src/spool/sqlite-spool.js';
import type { Spool, StateStore } from '../../src/spool/types.js';
import { MemoryState, metric as metricOf } from './fakes.js';
import { DataType as T, encodePayload, metric, valueField, type PbObject, type SimMetric } from '../harness/sparkplug.js';

/**
 * BIRTH certificates, DEATHs, rebirths, restarts and seq checks, through a `format: sparkplug`
 * rule as the bridge runs it (one transform, messages applied in receive order).
 */

const opts = { separator: '_', maxMessageBytes: 1_000_000 } as const;
const ROUTES = { routes: [{ name: 'spb', match: 'spBv1.0/#', topic: 'sparkplug', format: 'sparkplug' }] };
const logger = pino({ level: 'silent' });

let seqNo = 0;
const msg = (topic: string, p: PbObject | Buffer, over: Partial<InboundMessage> = {}): InboundMessage => ({
  seq: seqNo, id: `inst:${seqNo++}`, topic, payload: Buffer.isBuffer(p) ? p : encodePayload(p), qos: 1, retain: false, dup: false, receivedAtMs: 1_750_000_000_000, ...over,
});

interface Metric { name: string | null; alias: number | null; value: unknown; datatype: number | null }
function record(r: TransformResult): { metrics: Metric[]; key: string | null; headers: Readonly<Record<string, string>>; json: Record<string, unknown> } {
  if (r.kind !== 'record') throw new Error(`expected a record, got ${JSON.stringify(r)}`);
  const json = JSON.parse(r.value.toString()) as { metrics: Metric[] };
  return { metrics: json.metrics, key: r.key, headers: r.headers, json };
}
const names = (r: TransformResult): (string | null)[] => record(r).metrics.map((m) => m.name);

/** Events the decoder reports, as a test double of the Telemetry sink. */
class Events implements SparkplugTelemetry {
  readonly log: string[] = [];
  sparkplugMessage(): void {}
  sparkplugUnresolved(group: string, ctx: { edgeNode: string; device: string | null; metrics: number; first: boolean }): void {
    this.log.push(`unresolved ${group}/${ctx.edgeNode}/${ctx.device ?? '-'} ${ctx.metrics}${ctx.first ? ' first' : ''}`);
  }
  sparkplugSeq(group: string, kind: string, ctx: { expected: number | undefined; got: string | null; first: boolean }): void {
    this.log.push(`seq ${group} ${kind} expected=${ctx.expected} got=${ctx.got}${ctx.first ? ' first' : ''}`);
  }
  sparkplugBdSeqMismatch(group: string, ctx: { edgeNode: string; birth: string | null; death: string | null }): void {
    this.log.push(`bdseq ${group}/${ctx.edgeNode} ${ctx.birth}!=${ctx.death}`);
  }
  sparkplugStateError(op: string): void {
    this.log.push(`state ${op}`);
  }
}

function setup(state: StateStore = new MemoryState()): { t: RoutesTransform; events: Events; state: StateStore } {
  const t = compileRoutes(ROUTES, 'inline', opts);
  const events = new Events();
  t.attach!({ state, telemetry: events });
  return { t, events, state };
}

// An edge node "e1" in group "g" with two devices; aliases differ per node/device.
const NODE_DEFS: SimMetric[] = [{ name: 'Node Control/Rebirth', alias: 1, datatype: T.Boolean }, { name: 'uptime', alias: 2, datatype: T.UInt64 }];
const D1_DEFS: SimMetric[] = [{ name: 'temperature', alias: 10, datatype: T.Double }, { name: 'count', alias: 11, datatype: T.Int64 }];
const nbirth = (bdSeq = 0, defs = NODE_DEFS): PbObject => ({ timestamp: '1750000000000', seq: '0', metrics: [metric({ name: 'bdSeq', datatype: T.Int64 }, bdSeq), ...defs.map((d) => metric(d, d.datatype === T.Boolean ? false : 1))] });
const dbirth = (seq: number, defs = D1_DEFS): PbObject => ({ seq: String(seq), metrics: defs.map((d) => metric(d, d.datatype === T.Double ? 20.5 : 1)) });
const data = (seq: number | null, aliases: [number, number, unknown][]): PbObject => ({
  ...(seq === null ? {} : { seq: String(seq) }),
  metrics: aliases.map(([alias, dt, v]) => ({ alias: String(alias), ...valueField(dt, v) })),
});
const ndeath = (bdSeq: number): PbObject => ({ metrics: [metric({ name: 'bdSeq', datatype: T.Int64 }, bdSeq)] });

const dirs: string[] = [];
const spools: Spool[] = [];
afterEach(() => {
  for (const s of spools.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function openSpool(dir: string): Spool {
  const s = openSqliteSpool(
    { path: join(dir, 'spool.db'), replayIntervalMs: 1000, maxBytes: 1e9, maxAgeMs: 0, fullPolicy: 'block', commitLingerMs: 1, minFreeBytes: 0, minFreePercent: 0, reserveBytes: 0 },
    { logger, onCommitted: () => undefined, onDroppedPending: () => undefined, onDroppedRows: () => undefined, onWriteError: () => undefined },
  );
  spools.push(s);
  return s;
}

describe('sparkplug: every message type', () => {
  it('NBIRTH, DBIRTH, NDATA, DDATA, NCMD, DCMD, DDEATH, NDEATH: key group/node[/device], sparkplug.* headers', () => {
    const { t } = setup();
    const cases: [string, PbObject, string, Record<string, string>][] = [
      ['spBv1.0/g/NBIRTH/e1', nbirth(), 'g/e1', { 'sparkplug.message_type': 'NBIRTH' }],
      ['spBv1.0/g/DBIRTH/e1/d1', dbirth(1), 'g/e1/d1', { 'sparkplug.message_type': 'DBIRTH', 'sparkplug.device': 'd1' }],
      ['spBv1.0/g/NDATA/e1', data(2, [[2, T.UInt64, 77]]), 'g/e1', { 'sparkplug.message_type': 'NDATA' }],
      ['spBv1.0/g/DDATA/e1/d1', data(3, [[10, T.Double, 21]]), 'g/e1/d1', { 'sparkplug.message_type': 'DDATA' }],
      ['spBv1.0/g/NCMD/e1', { metrics: [{ alias: '1', boolean_value: true }] }, 'g/e1', { 'sparkplug.message_type': 'NCMD' }],
      ['spBv1.0/g/DCMD/e1/d1', { metrics: [{ alias: '10', double_value: 5 }] }, 'g/e1/d1', { 'sparkplug.message_type': 'DCMD' }],
      ['spBv1.0/g/DDEATH/e1/d1', { seq: '4', metrics: [] }, 'g/e1/d1', { 'sparkplug.message_type': 'DDEATH' }],
      ['spBv1.0/g/NDEATH/e1', ndeath(0), 'g/e1', { 'sparkplug.message_type': 'NDEATH', 'sparkplug.bdseq': 'match' }],
    ];
    const expectedNames = [['bdSeq', 'Node Control/Rebirth', 'uptime'], ['temperature', 'count'], ['uptime'], ['temperature'], ['Node Control/Rebirth'], ['temperature'], [], ['bdSeq']];
    cases.forEach(([topic, p, key, headers], i) => {
      const r = record(t.apply(msg(topic, p)));
      const type = topic.split('/')[2]!;
      expect(r.key, topic).toBe(key);
      expect(r.headers, topic).toMatchObject({ 'sparkplug.group': 'g', 'sparkplug.edge_node': 'e1', ...headers });
      expect(r.headers['sparkplug.unresolved'], topic).toBeUndefined();
      expect(r.headers['sparkplug.seq_error'], topic).toBeUndefined();
      expect(r.json).toMatchObject({ group: 'g', message_type: type, edge_node: 'e1', device: topic.split('/')[4] ?? null });
      expect(r.metrics.map((m) => m.name), topic).toEqual(expectedNames[i]);
    });
  });

  it('STATE (JSON from a host application) passes unchanged, keyed STATE/<host_id>', () => {
    const { t } = setup();
    const payload = Buffer.from('{"online": true, "timestamp": 1750000000000}');
    const r = t.apply(msg('spBv1.0/STATE/scada-1', payload));
    expect(r).toMatchObject({ kind: 'record', key: 'STATE/scada-1', headers: { 'sparkplug.message_type': 'STATE', 'sparkplug.host_id': 'scada-1' } });
    expect(r.kind === 'record' && r.value).toEqual(payload);
  });
});

describe('sparkplug: alias resolution', () => {
  it('alias-only DATA gets names and datatypes from the BIRTH of its node or device (a device alias is not a node alias)', () => {
    const { t, events } = setup();
    t.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth()));
    t.apply(msg('spBv1.0/g/DBIRTH/e1/d1', dbirth(1)));
    const d = record(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(2, [[10, T.Double, 22.5], [11, T.Int64, -7]]))));
    expect(d.metrics).toMatchObject([{ name: 'temperature', alias: 10, datatype: T.Double, value: 22.5 }, { name: 'count', alias: 11, datatype: T.Int64, value: '-7' }]);
    // Alias 10 exists only on the device: on the node it is unresolved, delivered with its alias.
    const n = record(t.apply(msg('spBv1.0/g/NDATA/e1', data(3, [[2, T.UInt64, 5], [10, T.Double, 1]]))));
    expect(n.metrics).toMatchObject([{ name: 'uptime', value: '5' }, { name: null, alias: 10, datatype: null, value: 1 }]);
    expect(n.headers['sparkplug.unresolved']).toBe('1');
    expect(events.log).toEqual(['unresolved g/e1/- 1 first']);
  });

  it('DATA before any BIRTH is delivered with aliases only, flagged and counted; logged once per node until its BIRTH', () => {
    const { t, events } = setup();
    for (let i = 0; i < 3; i++) {
      const r = record(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(i, [[10, T.Double, i], [11, T.Int64, i]]))));
      expect(r.metrics.map((m) => [m.name, m.alias])).toEqual([[null, 10], [null, 11]]);
      expect(r.headers['sparkplug.unresolved']).toBe('2');
    }
    t.apply(msg('spBv1.0/g/DBIRTH/e1/d1', dbirth(3)));
    expect(names(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(4, [[10, T.Double, 1]]))))).toEqual(['temperature']);
    t.apply(msg('spBv1.0/g/DDEATH/e1/d1', { seq: '5', metrics: [] }));
    t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(6, [[10, T.Double, 1]])));
    expect(events.log).toEqual(['unresolved g/e1/d1 2 first', 'unresolved g/e1/d1 2', 'unresolved g/e1/d1 2', 'unresolved g/e1/d1 1 first']);
  });

  it('a rebirth with changed aliases replaces the old ones', () => {
    const { t } = setup();
    t.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth()));
    t.apply(msg('spBv1.0/g/DBIRTH/e1/d1', dbirth(1)));
    expect(names(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(2, [[10, T.Double, 1], [11, T.Int64, 2]]))))).toEqual(['temperature', 'count']);
    // DBIRTH again: the aliases swapped, and a new metric with alias 12.
    t.apply(msg('spBv1.0/g/DBIRTH/e1/d1', dbirth(3, [{ name: 'temperature', alias: 11, datatype: T.Double }, { name: 'count', alias: 10, datatype: T.Int64 }, { name: 'pressure', alias: 12, datatype: T.Float }])));
    const r = record(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(4, [[10, T.Int64, 3], [11, T.Double, 4.5], [12, T.Float, 1.1]]))));
    expect(r.metrics).toMatchObject([{ name: 'count', value: '3' }, { name: 'temperature', value: 4.5 }, { name: 'pressure', value: 1.1 }]);
  });

  it('a new NBIRTH makes the DBIRTHs of the earlier session stale: DDATA stays unresolved until the device is born again', () => {
    const { t, state } = setup();
    t.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth(0)));
    t.apply(msg('spBv1.0/g/DBIRTH/e1/d1', dbirth(1)));
    t.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth(1)));
    const r = record(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(1, [[10, T.Double, 1]]))));
    expect(r.metrics[0]!.name).toBeNull();
    expect(state.get('sparkplug/g/e1/d1')).toBeUndefined(); // the stale certificate was cleaned up
    t.apply(msg('spBv1.0/g/DBIRTH/e1/d1', dbirth(2)));
    expect(names(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(3, [[10, T.Double, 1]]))))).toEqual(['temperature']);
  });
});

describe('sparkplug: DEATH', () => {
  it('DDEATH forgets the device; NDEATH with the NBIRTH\'s bdSeq forgets the node and its devices', () => {
    const { t, state } = setup();
    t.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth(5)));
    t.apply(msg('spBv1.0/g/DBIRTH/e1/d1', dbirth(1)));
    t.apply(msg('spBv1.0/g/DBIRTH/e1/d2', dbirth(2)));
    expect(state.list('sparkplug/').map(([k]) => k)).toEqual(['sparkplug/g/e1', 'sparkplug/g/e1/d1', 'sparkplug/g/e1/d2']);
    t.apply(msg('spBv1.0/g/DDEATH/e1/d1', { seq: '3', metrics: [] }));
    expect(state.list('sparkplug/').map(([k]) => k)).toEqual(['sparkplug/g/e1', 'sparkplug/g/e1/d2']);
    expect(record(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(4, [[10, T.Double, 1]])))).headers['sparkplug.unresolved']).toBe('1');
    const death = record(t.apply(msg('spBv1.0/g/NDEATH/e1', ndeath(5))));
    expect(death.headers['sparkplug.bdseq']).toBe('match');
    expect(state.list('sparkplug/')).toEqual([]);
    expect(record(t.apply(msg('spBv1.0/g/DDATA/e1/d2', data(5, [[10, T.Double, 1]])))).headers['sparkplug.unresolved']).toBe('1');
  });

  it('an NDEATH with another bdSeq (a stale Will after the node came back) keeps the BIRTH: flagged mismatch and counted', () => {
    const { t, events, state } = setup();
    t.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth(6)));
    const r = record(t.apply(msg('spBv1.0/g/NDEATH/e1', ndeath(5))));
    expect(r.headers['sparkplug.bdseq']).toBe('mismatch');
    expect(events.log).toEqual(['bdseq g/e1 6!=5']);
    expect(state.get('sparkplug/g/e1')).toBeDefined();
    expect(names(t.apply(msg('spBv1.0/g/NDATA/e1', data(1, [[2, T.UInt64, 1]]))))).toEqual(['uptime']);
    // Without a stored BIRTH there is nothing to compare.
    expect(record(t.apply(msg('spBv1.0/g/NDEATH/e9', ndeath(1)))).headers['sparkplug.bdseq']).toBe('no_birth');
  });
});

describe('sparkplug: state survives a restart (spool database)', () => {
  it('a restart between BIRTH and DATA: the new process reads the certificates back from disk', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sparkplug-state-'));
    dirs.push(dir);
    const first = openSpool(dir);
    const a = setup(first.state).t;
    a.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth(3)));
    a.apply(msg('spBv1.0/g/DBIRTH/e1/d1', dbirth(1)));
    a.apply(msg('spBv1.0/g/DBIRTH/e1/d2', dbirth(2, [{ name: 'level', alias: 10, datatype: T.UInt64 }])));
    a.apply(msg('spBv1.0/g/DDEATH/e1/d2', { seq: '3', metrics: [] }));
    first.close();
    spools.splice(spools.indexOf(first), 1);

    const second = openSpool(dir);
    const { t, events } = setup(second.state);
    const r = record(t.apply(msg('spBv1.0/g/DDATA/e1/d1', data(4, [[10, T.Double, 23.5], [11, T.Int64, '-9223372036854775808']]))));
    expect(r.metrics).toMatchObject([{ name: 'temperature', value: 23.5 }, { name: 'count', value: '-9223372036854775808' }]);
    expect(names(t.apply(msg('spBv1.0/g/NDATA/e1', data(5, [[2, T.UInt64, '18446744073709551615']]))))).toEqual(['uptime']);
    // The DDEATH before the restart holds too, and so does the NBIRTH's bdSeq.
    expect(record(t.apply(msg('spBv1.0/g/DDATA/e1/d2', data(6, [[10, T.UInt64, 1]])))).metrics[0]!.name).toBeNull();
    expect(record(t.apply(msg('spBv1.0/g/NDEATH/e1', ndeath(3)))).headers['sparkplug.bdseq']).toBe('match');
    // After a restart the first message of a node is not seq-checked (the count lives in memory).
    expect(events.log.filter((l) => l.startsWith('seq'))).toEqual([]);
  });

  it('a redelivered BIRTH after a crash simply replaces the certificate', () => {
    const { t, state } = setup();
    const birth = msg('spBv1.0/g/NBIRTH/e1', nbirth(2));
    t.apply(birth);
    const before = JSON.parse(state.get('sparkplug/g/e1')!) as Record<string, unknown>;
    t.apply({ ...birth, id: 'inst2:0', dup: true });
    const after = JSON.parse(state.get('sparkplug/g/e1')!) as Record<string, unknown>;
    expect({ ...after, session: null }).toEqual({ ...before, session: null });
    // Written again (the redelivery's id is the new session), not merely left as it was.
    expect([before.session, after.session]).toEqual([birth.id, 'inst2:0']);
    expect(after).toMatchObject({ v: 1, kind: 'NBIRTH', bdSeq: '2', seq: 0, metrics: [['bdSeq', null, T.Int64], ['Node Control/Rebirth', '1', T.Boolean], ['uptime', '2', T.UInt64]] });
  });

  it('a state write that fails (disk full) keeps resolving in memory, and is reported', () => {
    const broken: StateStore = { get: () => undefined, set: () => { throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }); }, delete: () => undefined, list: () => [] };
    const { t, events } = setup(broken);
    expect(t.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth()))).toMatchObject({ kind: 'record' });
    expect(names(t.apply(msg('spBv1.0/g/NDATA/e1', data(1, [[2, T.UInt64, 1]]))))).toEqual(['uptime']);
    expect(events.log).toEqual(['state write']);
  });
});

describe('sparkplug: seq checks', () => {
  it('continues across node and device messages, wraps 255 -> 0, restarts at NBIRTH; gaps and reordering are flagged and counted', () => {
    const { t, events } = setup();
    const seqHeader = (topic: string, seq: number | null): [string | undefined, string | undefined] => {
      const r = record(t.apply(msg(topic, data(seq, [[2, T.UInt64, 1]]))));
      return [r.headers['sparkplug.seq_error'], r.headers['sparkplug.seq_expected']];
    };
    t.apply(msg('spBv1.0/g/NBIRTH/e1', { ...nbirth(), seq: '254' }));
    expect(seqHeader('spBv1.0/g/NDATA/e1', 255)).toEqual([undefined, undefined]);
    expect(seqHeader('spBv1.0/g/DDATA/e1/d1', 0)).toEqual([undefined, undefined]);
    expect(seqHeader('spBv1.0/g/NDATA/e1', 3)).toEqual(['gap', '1']);
    expect(seqHeader('spBv1.0/g/NDATA/e1', 2)).toEqual(['out_of_order', '4']);
    expect(seqHeader('spBv1.0/g/NDATA/e1', 3)).toEqual([undefined, undefined]);
    expect(seqHeader('spBv1.0/g/NDATA/e1', 3)).toEqual(['out_of_order', '4']); // a repeat
    expect(seqHeader('spBv1.0/g/NDATA/e1', null)).toEqual(['invalid', undefined]);
    expect(seqHeader('spBv1.0/g/NDATA/e1', 300)).toEqual(['invalid', undefined]);
    // Another edge node has its own count; commands carry no seq and are not checked.
    t.apply(msg('spBv1.0/g/NBIRTH/e2', nbirth()));
    expect(seqHeader('spBv1.0/g/NDATA/e2', 1)).toEqual([undefined, undefined]);
    expect(record(t.apply(msg('spBv1.0/g/NCMD/e1', { metrics: [] }))).headers['sparkplug.seq_error']).toBeUndefined();
    // NBIRTH starts afresh.
    t.apply(msg('spBv1.0/g/NBIRTH/e1', nbirth(1)));
    expect(seqHeader('spBv1.0/g/NDATA/e1', 1)).toEqual([undefined, undefined]);
    expect(events.log.filter((l) => l.startsWith('seq'))).toEqual([
      'seq g gap expected=1 got=3 first',
      'seq g out_of_order expected=4 got=2',
      'seq g out_of_order expected=4 got=3',
      'seq g invalid expected=undefined got=null',
      'seq g invalid expected=undefined got=300',
    ]);
  });
});

describe('sparkplug: metrics (Telemetry)', () => {
  it('counts by group (never node id) and bounds the group label', async () => {
    const telemetry = new Telemetry(logger, { defaultMetrics: false });
    const t = compileRoutes(ROUTES, 'inline', opts);
    t.attach!({ state: new MemoryState(), telemetry });
    t.apply(msg('spBv1.0/plantA/NBIRTH/e1', nbirth()));
    t.apply(msg('spBv1.0/plantA/NDATA/e1', data(5, [[99, T.Int32, 1]])));
    t.apply(msg('spBv1.0/plantA/NDEATH/e1', ndeath(7)));
    expect(await metricOf(telemetry, 'sparkplug_messages_total', { group: 'plantA', type: 'NBIRTH' })).toBe(1);
    expect(await metricOf(telemetry, 'sparkplug_unresolved_total', { group: 'plantA' })).toBe(1);
    expect(await metricOf(telemetry, 'sparkplug_seq_errors_total', { group: 'plantA', kind: 'gap' })).toBe(1);
    expect(await metricOf(telemetry, 'sparkplug_bdseq_mismatches_total', { group: 'plantA' })).toBe(1);
    for (let i = 0; i < 150; i++) t.apply(msg(`spBv1.0/group-${i}/NDATA/e`, data(0, [])));
    const text = await telemetry.metrics();
    expect(text).not.toMatch(/e1/);
    expect(await metricOf(telemetry, 'sparkplug_messages_total', { group: '_other' })).toBe(51);
    expect(new Set([...text.matchAll(/sparkplug_messages_total\{group="([^"]+)"/g)].map((m) => m[1])).size).toBe(101);
  });
});
