import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { prng } from './prng.js';
import { ConfigError } from '../../src/errors.js';
import { isLegalKafkaTopic } from '../../src/bridge/mapping.js';
import { compileRoutes, loadRoutesFile, type RoutesTransform } from '../../src/bridge/routes/index.js';
import type { TransformResult } from '../../src/bridge/types.js';
import type { InboundMessage } from '../../src/mqtt/types.js';
import { inexactIntegers, RandomChoices, SparkplugGen } from './sparkplug-gen.js';
import { MemoryState } from './fakes.js';
import { NO_SPARKPLUG_TELEMETRY } from '../../src/sparkplug/index.js';
import { encodePayload, metric as spMetric } from '../harness/sparkplug.js';

/**
 * Throws random topics and payloads at every example profile: apply() must never throw and
 * must always return a well-formed result. Seeded: a failure names its seed and case, and
 * ROUTES_FUZZ_SEED=<seed> reproduces it.
 */
const SEED = Number(process.env.ROUTES_FUZZ_SEED ?? 0x5eed_2025);
const CASES_PER_PROFILE = 3000;
const MAX = 64 * 1024;

class Gen extends RandomChoices {
  readonly sp: SparkplugGen;
  constructor(rnd: () => number) {
    super(rnd);
    this.sp = new SparkplugGen(rnd);
  }

  level(): string {
    switch (this.int(12)) {
      case 0: return '';
      case 1: return '+';
      case 2: return '#';
      case 3: return '$SYS';
      case 4: return '😀ü中\u0000';
      case 5: return String.fromCharCode(0xd800 + this.int(0x800)); // lone surrogate
      case 6: return 'a b:c#d';
      case 7: return '..';
      case 8: return 'x'.repeat(this.int(400));
      case 9: return this.pick(['create', 'death', 'state', 'inventory', 'heartbeat', 'deadbeef', 'SolvExtract', 'lobby', 'random', 'day']);
      default: {
        let s = '';
        const n = this.int(12);
        for (let i = 0; i < n; i++) s += String.fromCharCode(this.chance(0.9) ? 0x20 + this.int(95) : this.int(0xffff));
        return s.replaceAll('/', '');
      }
    }
  }

  topic(): string {
    const prefixes = [
      'cackalacky/badge/egress/b1',
      'cackalacky/badge/egress/b1/cp',
      'cackalacky/badge/egress/b1/world/random',
      'FCTS/FAE/MOR/SolvExtract',
      'FCTS/FAE',
      'lib/server/lobby',
      'spBv1.0/g/DDATA',
      'ent1/p1/a1/l1',
      '',
      '$SYS',
    ];
    const levels = [this.pick(prefixes)];
    const n = this.int(5);
    for (let i = 0; i < n; i++) levels.push(this.level());
    if (this.chance(0.5)) levels.push(this.pick(['create', 'heartbeat', 'deadbeef', 'SX_TAG', 'press7']));
    return levels.join('/');
  }

  /** A topic shaped like one a profile routes, with random (often hostile) levels in its slots. */
  shapedTopic(focus: number): string {
    const slot = (): string => (this.chance(0.5) ? this.pick(['b1', 'MOR', 'x_9', 'DE.AD-01']) : this.level());
    const events = ['heartbeat', 'cp/create', 'cp/death', 'cp/state', 'cp/inventory', 'deadbeef', `achievement/${slot()}`, `game/${slot()}`, `store/${slot()}`, `world/${slot()}/${slot()}`, `kiosk/${slot()}`];
    const shapes = [
      () => `cackalacky/badge/egress/${slot()}/${this.pick(events)}`,
      () => `FCTS/FAE/${slot()}/SolvExtract/${slot()}`,
      () => 'lib/server/lobby',
      () => (this.chance(0.8) ? this.sp.topic() : `spBv1.0/${slot()}/DDATA/${slot()}`),
      () => `ent1/${slot()}/${slot()}/${slot()}/${slot()}`,
      () => `${slot()}/${slot()}`,
    ];
    // Mostly the shape of the profile under test, so its rules see plenty of traffic.
    return (this.chance(0.7) && shapes[focus] ? shapes[focus] : this.pick(shapes))();
  }

  /** A topic of exactly 65,535 UTF-8 bytes, sometimes ending in a profile's event level. */
  longTopic(): string {
    const head = this.pick(['cackalacky/badge/egress/', 'FCTS/FAE/', 'ent1/', 'spBv1.0/', '']);
    const tail = this.pick(['/cp/create', '/SolvExtract/T', '/x/y/z', '']);
    const fill = this.pick(['a', 'ü', '中', '😀', '/']);
    let body = '';
    while (Buffer.byteLength(head + body + fill + tail) <= 65_535) body += fill.repeat(Math.max(1, Math.floor((65_535 - Buffer.byteLength(head + body + tail)) / Buffer.byteLength(fill) / 2)));
    let t = head + body + tail;
    while (Buffer.byteLength(t) < 65_535) t = head + (body += 'a') + tail;
    return t;
  }

  jsonValue(depth: number): unknown {
    switch (this.int(depth > 4 ? 7 : 10)) {
      case 0: return null;
      case 1: return this.chance(0.5);
      case 2: return this.pick([0, -1, 1.5, 1e308, -1e308, 1_718_906_645, 1_718_906_645_250, 2 ** 53 + 1, Number.MIN_VALUE]);
      case 3: return this.level();
      case 4: return this.pick(['Cleaning Game Records', '2025-06-20T18:04:05Z', 'MOR', '', '__proto__']);
      case 5: return this.int(1e9);
      case 6: return 'y'.repeat(this.int(100));
      case 7: return Array.from({ length: this.int(5) }, () => this.jsonValue(depth + 1));
      default: return this.jsonObject(depth + 1);
    }
  }

  jsonObject(depth = 0): Record<string, unknown> {
    const keys = ['ts', 'timestamp', 'value', 'site_code', 'sensor_id', 'message', 'game_token', 'user_token', 'credentials', 'meta', 'raw', '__proto__', 'constructor', 'a'];
    const o: Record<string, unknown> = {};
    const n = this.int(8);
    for (let i = 0; i < n; i++) Object.defineProperty(o, this.pick(keys), { value: this.jsonValue(depth), enumerable: true, writable: true, configurable: true });
    return o;
  }

  payload(): Buffer {
    switch (this.int(17)) {
      case 14: case 15: return this.sp.payload(); // Sparkplug B: valid, flipped bytes, cut short
      case 16: return Buffer.from(JSON.stringify({ online: this.chance(0.5), timestamp: 1_718_906_645_000 })); // a STATE payload
      case 0: return Buffer.alloc(0);
      case 1: return Buffer.from(Array.from({ length: this.int(64) }, () => this.int(256)));
      case 2: return Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]); // invalid UTF-8 inside JSON
      case 3: return Buffer.from(`${'['.repeat(20_000)}${']'.repeat(20_000)}`);
      case 4: return Buffer.from(`{"ts":1718906645,"a":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}`);
      case 5: return Buffer.from('{"ts": 1e400, "value": -1e400, "timestamp": 123456789012345678901234567890}');
      case 6: return Buffer.from(JSON.stringify(Array.from({ length: this.int(10) }, () => this.jsonValue(0))));
      case 7: return Buffer.from(this.pick(['null', 'true', '42', '"str"', '{', '}', '{"a":1,}', '\ufeff{}', '{"__proto__": {"ts": 1}}']));
      case 8: return Buffer.from(JSON.stringify({ ts: 1_718_906_645, pad: 'p'.repeat(MAX - 20 + this.int(40)) }));
      case 9: return Buffer.alloc(MAX + this.int(3) - 1, 0x41);
      default: {
        const o = this.jsonObject();
        if (this.chance(0.6)) Object.assign(o, { ts: 1_718_906_645, timestamp: 1_718_906_645_000, site_code: 'MOR', sensor_id: 's', value: 1 });
        if (this.chance(0.3)) Object.assign(o, { message: 'Cleaning Game Records', game_token: this.jsonValue(3), user_token: 'u' });
        return Buffer.from(JSON.stringify(o));
      }
    }
  }
}

const DEAD = new Set(['invalid_utf8', 'invalid_json', 'missing_field', 'wrong_type', 'too_large', 'bad_topic', 'bad_key', 'empty_payload', 'unmatched', 'invalid_sparkplug', 'schema_mismatch', 'schema_refused']);
const SKIP = new Set(['filtered', 'unmatched']);

/** Returns what is wrong with `r`, or undefined when it is well-formed. */
function malformed(r: TransformResult, t: RoutesTransform): string | undefined {
  if (typeof r !== 'object' || r === null) return 'not an object';
  if (!t.routeNames.includes(r.route)) return `route ${String(r.route)} is not one of ${t.routeNames.join(', ')}`;
  switch (r.kind) {
    case 'record':
      if (!isLegalKafkaTopic(r.topic)) return `illegal topic ${JSON.stringify(r.topic.slice(0, 80))}`;
      if (r.key !== null && (typeof r.key !== 'string' || r.key.length === 0)) return 'bad key';
      if (!Buffer.isBuffer(r.value)) return 'value is not a Buffer';
      if (r.value.length > MAX) return `value of ${r.value.length} bytes exceeds the limit`;
      for (const [k, v] of Object.entries(r.headers)) if (typeof v !== 'string' || k.startsWith('mqtt.')) return `bad header ${k}`;
      return r.headers['sparkplug.message_type'] ? sparkplugProblem(r.value, r.headers) : undefined;
    case 'dead':
      if (!DEAD.has(r.reason)) return `unknown dead reason ${r.reason}`;
      if (typeof r.detail !== 'string' || r.detail.length === 0 || r.detail.length > 300) return 'bad detail';
      // The last-resort catch in apply() must not be what handled a well-typed message.
      if (r.detail.startsWith('unexpected ')) return `hit the catch-all: ${r.detail}`;
      return undefined;
    case 'skip':
      return SKIP.has(r.reason) ? undefined : `unknown skip reason ${r.reason}`;
    default:
      return `unknown kind ${String((r as { kind: unknown }).kind)}`;
  }
}

/** A Sparkplug record must be a JSON object with its head and metrics, every integer exact. */
function sparkplugProblem(value: Buffer, headers: Readonly<Record<string, string>>): string | undefined {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  } catch {
    return 'sparkplug record is not JSON';
  }
  if (headers['sparkplug.message_type'] === 'STATE') return undefined;
  if (v.message_type !== headers['sparkplug.message_type'] || !Array.isArray(v.metrics)) return 'sparkplug record lacks message_type or metrics';
  const bad = inexactIntegers(v);
  return bad.length > 0 ? `inexact integers: ${bad.join(', ')}` : undefined;
}

const dir = fileURLToPath(new URL('../../examples/routes/', import.meta.url));
const profiles = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();

describe(`routes fuzz (seed ${SEED})`, () => {
  it('finds the example profiles', () => {
    expect(profiles.length).toBeGreaterThanOrEqual(5);
  });

  it.each(profiles)('%s: apply() never throws and always returns a well-formed result', (profile) => {
    const t = loadRoutesFile(dir + profile, { separator: '_', maxMessageBytes: MAX });
    const g = new Gen(prng(SEED ^ profile.length * 7919));
    const focus = ['cyberpartner', 'industrial', 'game-lobby', 'unified', 'unified'].findIndex((p) => profile.startsWith(p));
    const kinds: Record<string, number> = {};
    for (let i = 0; i < CASES_PER_PROFILE; i++) {
      const topic = i % 100 === 0 ? g.longTopic() : g.chance(0.6) ? g.shapedTopic(focus) : g.topic();
      const m: InboundMessage = {
        seq: i, id: `fuzz:${i}`, topic, payload: g.payload(),
        qos: g.pick([0, 1, 2] as const), retain: g.chance(0.1), dup: g.chance(0.1), receivedAtMs: g.pick([0, Date.now(), 8.64e15 + 1, -1, Number.NaN]),
      };
      let r: TransformResult;
      try {
        r = t.apply(m);
      } catch (err) {
        throw new Error(`seed ${SEED} ${profile} case ${i}: apply threw ${String(err)} for topic ${JSON.stringify(topic.slice(0, 80))}`);
      }
      const problem = malformed(r, t);
      if (problem) throw new Error(`seed ${SEED} ${profile} case ${i}: ${problem} (topic ${JSON.stringify(topic.slice(0, 80))})`);
      const label = r.kind === 'record' || r.kind === 'deferred' ? r.kind : `${r.kind}:${r.reason}`;
      kinds[label] = (kinds[label] ?? 0) + 1;
    }
    // The generator must reach the interesting paths, not only "unmatched".
    expect(Object.keys(kinds).length, JSON.stringify(kinds)).toBeGreaterThanOrEqual(3);
    if (process.env.ROUTES_FUZZ_VERBOSE) console.log(profile, kinds);
  });

  it('every profile also survives a hand-picked set of nasty messages', () => {
    const nasty: Partial<InboundMessage>[] = [
      { topic: '' }, { topic: '/' }, { topic: '#' }, { topic: '+/+' }, { topic: '\u0000' }, { topic: '/'.repeat(65_535) },
      { topic: `cackalacky/badge/egress/${'b'.repeat(100_000)}/cp/create`, payload: Buffer.from('{"ts":1}') }, // beyond MQTT's 65,535
      { topic: `ent1/${'ü'.repeat(40_000)}/a/l/d`, payload: Buffer.from('{"timestamp":1}') },
      { topic: 'cackalacky/badge/egress/\ud800/cp/create', payload: Buffer.from('{"ts":1}') },
      { topic: 'cackalacky/badge/egress/b/cp/create', payload: Buffer.from('{"ts":1}'), receivedAtMs: Number.NaN },
      { topic: 'lib/server/lobby', payload: Buffer.from('{"message":"Cleaning Game Records","game_token":{"x":1},"user_token":"u"}') },
      { topic: 'FCTS/FAE/a b/SolvExtract/t', payload: Buffer.from('{"site_code":"s","sensor_id":"s","timestamp":1,"value":1}') },
    ];
    for (const profile of profiles) {
      const t = loadRoutesFile(dir + profile, { separator: '.', maxMessageBytes: MAX });
      for (const n of nasty) {
        const m = { seq: 1, id: 'n:1', topic: 'x', payload: Buffer.from('{}'), qos: 1, retain: false, dup: false, receivedAtMs: 0, ...n } as InboundMessage;
        const r = t.apply(m);
        expect(malformed(r, t), `${profile} ${JSON.stringify(m.topic.slice(0, 40))}`).toBeUndefined();
      }
    }
  });

  it('sparkplug decoder: random BIRTH/DATA/DEATH sequences and restarts resolve every alias exactly as a model of the BIRTH state says', () => {
    const g = new Gen(prng(SEED + 2));
    const routes = { routes: [{ name: 'spb', match: 'spBv1.0/#', topic: 'sparkplug', format: 'sparkplug' }] };
    const state = new MemoryState();
    const start = (): RoutesTransform => {
      const t = compileRoutes(routes, 'fuzz', { separator: '_', maxMessageBytes: MAX });
      t.attach!({ state, telemetry: NO_SPARKPLUG_TELEMETRY });
      return t;
    };
    let t = start();
    // The model: what a BIRTH defines, and which NBIRTH session a DBIRTH belongs to.
    const nodes = new Map<string, { aliases: Map<string, string>; bdSeq: number; session: number }>();
    const devices = new Map<string, { aliases: Map<string, string>; session: number | null }>();
    let sessions = 0;
    const counts: Record<string, number> = {};
    const NAMES = ['temp', 'rpm', 'a/b', 'x', '__proto__', 'ü'];
    for (let i = 0; i < 4000; i++) {
      if (g.chance(0.01)) t = start(); // a restart: durable state stays, memory (seq counts) goes
      const group = g.pick(['g1', 'g2']);
      const node = g.pick(['n1', 'n2']);
      const device = g.pick(['d1', 'd2']);
      const nk = `${group}/${node}`;
      const dk = `${nk}/${device}`;
      const birthMetrics = (): [string, string][] => Array.from({ length: g.int(5) }, () => [g.pick(NAMES), String(g.int(8))]);
      const op = g.pick(['NBIRTH', 'DBIRTH', 'NDATA', 'DDATA', 'NDATA', 'DDATA', 'NCMD', 'DCMD', 'NDEATH', 'DDEATH', 'garbage']);
      const topic = `spBv1.0/${group}/${op === 'garbage' ? 'DDATA' : op}/${node}${op.startsWith('D') || op === 'garbage' ? `/${device}` : ''}`;
      let payload: Buffer;
      let expected: (string | null)[] | undefined;
      if (op === 'NBIRTH' || op === 'DBIRTH') {
        const ms = birthMetrics();
        const bdSeq = g.int(4);
        const aliases = new Map(ms.map(([n, a]) => [a, n]));
        payload = encodePayload({ seq: '0', metrics: [...(op === 'NBIRTH' ? [spMetric({ name: 'bdSeq', datatype: 4 }, bdSeq)] : []), ...ms.map(([n, a]) => spMetric({ name: n, alias: a, datatype: 3 }, 1))] });
        if (op === 'NBIRTH') nodes.set(nk, { aliases, bdSeq, session: ++sessions });
        else devices.set(dk, { aliases, session: nodes.get(nk)?.session ?? null });
      } else if (op === 'NDEATH') {
        const bdSeq = g.int(4);
        payload = encodePayload({ metrics: [spMetric({ name: 'bdSeq', datatype: 4 }, bdSeq)] });
        const n = nodes.get(nk);
        if (!n || n.bdSeq === bdSeq) {
          nodes.delete(nk);
          for (const k of [...devices.keys()]) if (k.startsWith(`${nk}/`)) devices.delete(k);
        }
      } else if (op === 'DDEATH') {
        payload = encodePayload({ seq: '1', metrics: [] });
        devices.delete(dk);
      } else if (op === 'garbage') {
        payload = g.sp.payload();
      } else {
        const aliases = Array.from({ length: 1 + g.int(4) }, () => String(g.int(8)));
        payload = encodePayload({ seq: String(g.int(256)), metrics: aliases.map((a) => ({ alias: a, int_value: 7 })) });
        let known: Map<string, string> | undefined;
        if (op.startsWith('N')) known = nodes.get(nk)?.aliases;
        else {
          const d = devices.get(dk);
          known = d && d.session === (nodes.get(nk)?.session ?? null) ? d.aliases : undefined;
        }
        expected = aliases.map((a) => known?.get(a) ?? null);
      }
      const r = t.apply({ seq: i, id: `fz:${i}`, topic, payload, qos: 1, retain: false, dup: false, receivedAtMs: 0 });
      const label = `${op}:${r.kind}`;
      counts[label] = (counts[label] ?? 0) + 1;
      if (op === 'garbage') {
        if (r.kind !== 'record' && !(r.kind === 'dead' && r.reason === 'invalid_sparkplug')) throw new Error(`seed ${SEED} step ${i}: garbage gave ${JSON.stringify(r)}`);
        // Garbage that decodes is DATA like any other (DATA never changes the state): well-formed, exact.
        if (r.kind === 'record') {
          const problem = sparkplugProblem(r.value, r.headers);
          if (problem) throw new Error(`seed ${SEED} step ${i}: garbage record: ${problem}`);
        }
        continue;
      }
      if (r.kind !== 'record') throw new Error(`seed ${SEED} step ${i}: ${op} on ${topic} gave ${JSON.stringify(r)}`);
      if (expected) {
        const got = (JSON.parse(r.value.toString()) as { metrics: { name: string | null }[] }).metrics.map((m) => m.name);
        if (JSON.stringify(got) !== JSON.stringify(expected)) throw new Error(`seed ${SEED} step ${i}: ${op} ${topic}: names ${JSON.stringify(got)}, model says ${JSON.stringify(expected)}`);
        const unresolved = expected.filter((x) => x === null).length;
        expect(r.headers['sparkplug.unresolved']).toBe(unresolved > 0 ? String(unresolved) : undefined);
      }
    }
    // Both resolved and unresolved DATA happened, and garbage reached the decoder both ways.
    expect(counts['NDATA:record'] ?? 0, JSON.stringify(counts)).toBeGreaterThan(100);
    expect(counts['garbage:dead'] ?? 0, JSON.stringify(counts)).toBeGreaterThan(10);
  });

  it('compileRoutes on random documents either compiles or throws ConfigError, nothing else', () => {
    const g = new Gen(prng(SEED + 1));
    const fields = ['name', 'match', 'topic', 'key', 'format', 'enrich', 'drop', 'require', 'filter', 'headers', 'bogus'];
    const values = (): unknown => g.pick([null, 1, true, 'a/{x}', '{x}', '{payload.a|iso8601}', 'json', 'raw', 'envelope', ['a', '*.b'], { a: 'string' }, { a: { equals: 1 } }, { any: [] }, '#', '+/{y}/#', '{', '}', { x: null }, []]);
    for (let i = 0; i < 2000; i++) {
      const rules = Array.from({ length: 1 + g.int(3) }, () => Object.fromEntries(Array.from({ length: g.int(6) }, () => [g.pick(fields), values()])));
      const doc = g.chance(0.05) ? values() : { unmatched: g.pick([undefined, 'skip', 'dead_letter', { topic: 'x' }, { topic: 'a/b' }, 3]), routes: rules };
      try {
        const t = compileRoutes(doc, 'fuzz', { separator: '_', maxMessageBytes: MAX });
        const r = t.apply({ seq: 1, id: 'x', topic: 'a/b', payload: Buffer.from('{"a":1}'), qos: 1, retain: false, dup: false, receivedAtMs: 0 });
        expect(malformed(r, t)).toBeUndefined();
      } catch (err) {
        if (!(err instanceof ConfigError)) throw new Error(`seed ${SEED} doc ${i}: ${String(err)} for ${JSON.stringify(doc)}`);
      }
    }
  });
});
