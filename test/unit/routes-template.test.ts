import { describe, expect, it } from 'vitest';
import { compileRoutes, toIso8601, uuidFrom } from '../../src/bridge/routes/index.js';
import type { TransformResult } from '../../src/bridge/types.js';
import type { InboundMessage } from '../../src/mqtt/types.js';

const opts = { separator: '_', maxMessageBytes: 1_000_000 } as const;
const msg = (topic: string, payload: unknown, extra: Partial<InboundMessage> = {}): InboundMessage => ({
  seq: 7,
  id: 'inst-a:7',
  topic,
  payload: Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)),
  qos: 1,
  retain: false,
  dup: false,
  receivedAtMs: Date.UTC(2025, 3, 12, 10, 30, 0, 250),
  ...extra,
});

/** Renders `template` as a json route's single enrich field `v`, returning the value (or the dead result). */
function render(template: string | number, payload: unknown = {}, topic = 'dev/d1/evt/start', separator: '_' | '.' | '-' = '_'): unknown {
  const t = compileRoutes(
    { routes: [{ name: 'r', match: 'dev/{device}/evt/{event}', topic: 'out', format: 'json', enrich: { v: template } }] },
    'inline',
    { ...opts, separator },
  );
  const r = t.apply(msg(topic, payload));
  if (r.kind !== 'record') return r;
  return (JSON.parse(r.value.toString()) as { v: unknown }).v;
}

const deadOf = (r: unknown): { reason: string; detail: string } => {
  expect(r).toMatchObject({ kind: 'dead' });
  return r as { reason: string; detail: string };
};

describe('template variables', () => {
  it('named segments, topic, topic_kafka, message_id, qos, retain', () => {
    expect(render('{device}:{event}')).toBe('d1:start');
    expect(render('{topic}')).toBe('dev/d1/evt/start');
    expect(render('{topic_kafka}')).toBe('dev_d1_evt_start');
    expect(render('{topic_kafka}', {}, 'dev/d1/evt/start', '.')).toBe('dev.d1.evt.start');
    expect(render('{message_id}')).toBe('inst-a:7');
    expect(render('{qos}/{retain}')).toBe('1/false');
  });

  it('received_at is epoch ms alone, ISO 8601 with |iso8601', () => {
    expect(render('{received_at}')).toBe(Date.UTC(2025, 3, 12, 10, 30, 0, 250));
    expect(render('{received_at|iso8601}')).toBe('2025-04-12T10:30:00.250Z');
  });

  it('uuid is a v5 UUID derived from the message id: stable per receipt, distinct across receipts', () => {
    const u = render('{uuid}') as string;
    expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(u).toBe(uuidFrom('inst-a:7'));
    expect(render('{uuid}')).toBe(u);
    expect(uuidFrom('inst-a:8')).not.toBe(u);
    // One receipt, one uuid, wherever it is used in the same record.
    expect(render('{uuid} {uuid}')).toBe(`${u} ${u}`);
  });

  it('payload fields: nested, array index, typed when alone, text otherwise', () => {
    const p = { a: { b: 3, c: 'x', d: true, o: { k: 1 } }, list: [{ id: 'first' }] };
    expect(render('{payload.a.b}', p)).toBe(3);
    expect(render('{payload.a.d}', p)).toBe(true);
    expect(render('{payload.a.o}', p)).toEqual({ k: 1 });
    expect(render('n={payload.a.b} c={payload.a.c} d={payload.a.d}', p)).toBe('n=3 c=x d=true');
    expect(render('{payload.list.0.id}', p)).toBe('first');
  });

  it('literal braces', () => {
    expect(render('{{device}} is {device}')).toBe('{device} is d1');
    expect(render('}}{{')).toBe('}{');
  });

  it('constants in enrich keep their YAML type', () => {
    expect(render(42)).toBe(42);
  });

  it('payload lookups use own properties only', () => {
    expect(deadOf(render('{payload.constructor}', {})).reason).toBe('missing_field');
    expect(deadOf(render('{payload.a.__proto__}', { a: {} })).reason).toBe('missing_field');
    expect(deadOf(render('{payload.list.length}', { list: [1] })).reason).toBe('missing_field');
  });
});

describe('template run-time failures', () => {
  it('missing and null payload fields -> missing_field naming the field', () => {
    expect(deadOf(render('{payload.ts}', {}))).toMatchObject({ reason: 'missing_field', detail: 'payload.ts' });
    expect(deadOf(render('x{payload.ts}', { ts: null }))).toMatchObject({ reason: 'missing_field', detail: 'payload.ts' });
    expect(deadOf(render('{payload.a.b}', { a: 'str' }))).toMatchObject({ reason: 'missing_field' });
  });

  it('objects in text and non-finite numbers -> wrong_type', () => {
    expect(deadOf(render('x{payload.o}', { o: {} }))).toMatchObject({ reason: 'wrong_type', detail: 'payload.o: object cannot be used as text' });
    expect(deadOf(render('{payload.n}', Buffer.from('{"n": 1e400}')))).toMatchObject({ reason: 'wrong_type' });
  });
});

describe('template filters', () => {
  it('iso8601: epoch seconds, ms (> 1e12), fractions, numeric strings, ISO strings', () => {
    expect(render('{payload.ts|iso8601}', { ts: 1_700_000_000 })).toBe('2023-11-14T22:13:20.000Z');
    expect(render('{payload.ts|iso8601}', { ts: 1_700_000_000.5 })).toBe('2023-11-14T22:13:20.500Z');
    expect(render('{payload.ts|iso8601}', { ts: 1_700_000_000_123 })).toBe('2023-11-14T22:13:20.123Z');
    expect(render('{payload.ts|iso8601}', { ts: '1700000000' })).toBe('2023-11-14T22:13:20.000Z');
    expect(render('{payload.ts|iso8601}', { ts: '2024-02-29T12:00:00+01:00' })).toBe('2024-02-29T11:00:00.000Z');
    expect(render('{payload.ts|iso8601}', { ts: 0 })).toBe('1970-01-01T00:00:00.000Z');
  });

  it('iso8601 rejects what is not a time, including out-of-range numbers, without throwing', () => {
    for (const ts of ['soon', true, { a: 1 }, 1e300, -1e300, '1e400']) {
      expect(deadOf(render('{payload.ts|iso8601}', { ts })).reason).toBe('wrong_type');
    }
    expect(deadOf(render('{payload.ts|iso8601}', {})).reason).toBe('missing_field');
  });

  it('lower, upper, kafka, default, chained', () => {
    expect(render('{payload.s|lower}', { s: 'AbC' })).toBe('abc');
    expect(render('{payload.s|upper}', { s: 'AbC' })).toBe('ABC');
    expect(render('{payload.s|kafka}', { s: 'a b/c#d' })).toBe('a_b_c_d');
    expect(render('{topic|kafka:.}')).toBe('dev.d1.evt.start');
    expect(render('{topic|kafka:-}')).toBe('dev-d1-evt-start');
    expect(render('{payload.s|default:none}', {})).toBe('none');
    expect(render('{payload.s|default:}', { s: null })).toBe('');
    expect(render('{payload.s|default:none}', { s: 'set' })).toBe('set');
    expect(render('{payload.ts|iso8601|default:unknown}', {})).toBe('unknown');
    expect(render('{ payload.s | upper | lower }', { s: 'Q' })).toBe('q');
  });

  it('exported helpers', () => {
    expect(toIso8601(1_700_000_000)).toBe('2023-11-14T22:13:20.000Z');
    expect(toIso8601(Number.NaN)).toBeUndefined();
  });
});

describe('templates in topic, key and headers', () => {
  const base = { name: 'r', match: 'dev/{device}/evt/{event}', format: 'json' as const };
  const apply = (rule: Record<string, unknown>, topic = 'dev/d1/evt/start', payload: unknown = { id: 'k1' }): TransformResult =>
    compileRoutes({ routes: [{ ...base, ...rule }] }, 'inline', opts).apply(msg(topic, payload));

  it('topic default is {topic_kafka}; key default is the MQTT topic; key: null', () => {
    expect(apply({})).toMatchObject({ topic: 'dev_d1_evt_start', key: 'dev/d1/evt/start' });
    expect(apply({ key: null })).toMatchObject({ key: null });
    expect(apply({ key: '{payload.id}' })).toMatchObject({ key: 'k1' });
  });

  it('headers render per message', () => {
    expect(apply({ headers: { dev: '{device}', evt: 'e-{event}', n: 5 } })).toMatchObject({ headers: { dev: 'd1', evt: 'e-start', n: '5' } });
    expect(apply({ headers: { id: '{payload.nope}' } })).toMatchObject({ kind: 'dead', reason: 'missing_field', detail: 'payload.nope' });
  });
});
