import { describe, expect, it } from 'vitest';
import { compileRoutes } from '../../src/bridge/routes/index.js';
import type { TransformResult } from '../../src/bridge/types.js';
import type { InboundMessage } from '../../src/mqtt/types.js';

const opts = { separator: '_', maxMessageBytes: 1_000_000 } as const;
const msg = (payload: unknown, topic = 'in/x'): InboundMessage => ({
  seq: 1, id: 'i:1', topic, payload: Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)),
  qos: 1, retain: false, dup: false, receivedAtMs: 0,
});

function applyRule(rule: Record<string, unknown>, payload: unknown): TransformResult {
  return compileRoutes({ routes: [{ name: 'r', match: 'in/+', topic: 'out', format: 'json', ...rule }] }, 'inline', opts).apply(msg(payload));
}
function valueOf(r: TransformResult): unknown {
  expect(r.kind, JSON.stringify(r)).toBe('record');
  return r.kind === 'record' ? JSON.parse(r.value.toString()) : undefined;
}

describe('drop', () => {
  const payload = {
    keep: 1,
    secret: 's',
    a: { b: 1, c: 2 },
    meta: { m1: { raw: 'x', ok: 1 }, m2: { raw: 'y' }, m3: 'scalar' },
    list: [{ pw: 1, id: 'a' }, { pw: 2, id: 'b' }, 'str'],
  };

  it('top-level, nested, and wildcard levels', () => {
    const v = valueOf(applyRule({ drop: ['secret', 'a.b', 'meta.*.raw'] }, payload));
    expect(v).toEqual({ keep: 1, a: { c: 2 }, meta: { m1: { ok: 1 }, m2: {}, m3: 'scalar' }, list: payload.list });
  });

  it('wildcards over arrays, indexes, trailing wildcard', () => {
    expect(valueOf(applyRule({ drop: ['list.*.pw'] }, payload))).toMatchObject({ list: [{ id: 'a' }, { id: 'b' }, 'str'] });
    expect(valueOf(applyRule({ drop: ['list.1.pw'] }, payload))).toMatchObject({ list: [{ pw: 1, id: 'a' }, { id: 'b' }, 'str'] });
    expect(valueOf(applyRule({ drop: ['meta.*'] }, payload))).toMatchObject({ meta: {} });
  });

  it('paths that do not exist (or cross scalars/arrays) are ignored', () => {
    expect(valueOf(applyRule({ drop: ['nope', 'keep.deeper', 'list.0', 'list.x.pw', 'a.*.z'] }, payload))).toEqual(payload);
  });

  it('templates see the payload before drop (use a field for the key, then drop it)', () => {
    const r = applyRule({ key: '{payload.secret}', drop: ['secret'] }, payload);
    expect(r).toMatchObject({ kind: 'record', key: 's' });
    expect(valueOf(r)).not.toHaveProperty('secret');
  });

  it('enrich is applied after drop and overwrites', () => {
    expect(valueOf(applyRule({ drop: ['keep', 'secret'], enrich: { keep: 'again', src: 'x', n: 1, f: false, z: null } }, { keep: 1, secret: 2 }))).toEqual({
      keep: 'again', src: 'x', n: 1, f: false, z: null,
    });
  });

  it('an enrich copy of a subtree is not affected by drop', () => {
    expect(valueOf(applyRule({ drop: ['a.b'], enrich: { copy: '{payload.a}' } }, { a: { b: 1, c: 2 } }))).toEqual({ a: { c: 2 }, copy: { b: 1, c: 2 } });
  });

  it('without drop and enrich the payload bytes are forwarded unchanged', () => {
    const raw = '{ "v" : 1.50,  "big": 12345678901234567890 }';
    const r = applyRule({ require: { v: 'number' } }, raw);
    expect(r.kind === 'record' && r.value.toString()).toBe(raw);
  });
});

describe('require', () => {
  const p = { s: 'x', n: 1.5, i: 3, b: false, o: {}, a: [], z: null, deep: { k: 'v' } };
  it.each([
    ['string', 's'], ['number', 'n'], ['number', 'i'], ['integer', 'i'], ['boolean', 'b'],
    ['object', 'o'], ['array', 'a'], ['any', 'z'], ['any', 'o'], ['string', 'deep.k'],
  ])('%s accepts %s', (type, field) => {
    expect(applyRule({ require: { [field]: type } }, p).kind).toBe('record');
  });

  it.each([
    ['string', 'n', 'n: expected string, got number'],
    ['number', 's', 's: expected number, got string'],
    ['integer', 'n', 'n: expected integer, got number'],
    ['boolean', 's', 's: expected boolean, got string'],
    ['object', 'a', 'a: expected object, got array'],
    ['array', 'o', 'o: expected array, got object'],
    ['string', 'z', 'z: expected string, got null'],
  ])('%s rejects %s -> wrong_type', (type, field, detail) => {
    expect(applyRule({ require: { [field]: type } }, p)).toEqual({ kind: 'dead', route: 'r', reason: 'wrong_type', detail });
  });

  it('type lists', () => {
    expect(applyRule({ require: { s: ['number', 'string'] } }, p).kind).toBe('record');
    expect(applyRule({ require: { b: ['number', 'string'] } }, p)).toMatchObject({ reason: 'wrong_type', detail: 'b: expected number or string, got boolean' });
  });

  it('missing -> missing_field with the path as detail; checked in order', () => {
    expect(applyRule({ require: { s: 'string', nope: 'any', n: 'string' } }, p)).toEqual({ kind: 'dead', route: 'r', reason: 'missing_field', detail: 'nope' });
    expect(applyRule({ require: { 'deep.x': 'any' } }, p)).toMatchObject({ reason: 'missing_field', detail: 'deep.x' });
  });

  it('non-finite numbers are not numbers', () => {
    expect(applyRule({ require: { n: 'number' } }, '{"n": -1e999}')).toMatchObject({ reason: 'wrong_type' });
  });
});

describe('filter', () => {
  const run = (filter: unknown, payload: unknown): string => {
    const r = applyRule({ filter }, payload);
    return r.kind === 'skip' ? `skip:${r.reason}` : r.kind;
  };

  it('equals (and its scalar shorthand), strict types', () => {
    expect(run({ message: { equals: 'Cleaning Game Records' } }, { message: 'Cleaning Game Records' })).toBe('record');
    expect(run({ message: 'Cleaning Game Records' }, { message: 'Other' })).toBe('skip:filtered');
    expect(run({ n: { equals: 1 } }, { n: '1' })).toBe('skip:filtered');
    expect(run({ n: 1 }, { n: 1.0 })).toBe('record');
    expect(run({ z: null }, { z: null })).toBe('record');
    expect(run({ z: null }, {})).toBe('skip:filtered');
    expect(run({ 'a.b': true }, { a: { b: true } })).toBe('record');
  });

  it('in, exists', () => {
    expect(run({ kind: { in: ['a', 'b', 3] } }, { kind: 3 })).toBe('record');
    expect(run({ kind: { in: ['a', 'b'] } }, { kind: 'c' })).toBe('skip:filtered');
    expect(run({ kind: { in: ['a'] } }, {})).toBe('skip:filtered');
    expect(run({ kind: { exists: true } }, { kind: null })).toBe('record');
    expect(run({ kind: { exists: false } }, {})).toBe('record');
    expect(run({ kind: { exists: false } }, { kind: 1 })).toBe('skip:filtered');
  });

  it('not, all, any, implicit and, several tests on one field', () => {
    expect(run({ not: { a: 1 } }, { a: 2 })).toBe('record');
    expect(run({ all: [{ a: 1 }, { b: 2 }] }, { a: 1, b: 2 })).toBe('record');
    expect(run({ all: [{ a: 1 }, { b: 2 }] }, { a: 1, b: 3 })).toBe('skip:filtered');
    expect(run({ any: [{ a: 1 }, { b: 2 }] }, { a: 0, b: 2 })).toBe('record');
    expect(run({ any: [{ a: 1 }, { b: 2 }] }, {})).toBe('skip:filtered');
    expect(run({ a: 1, b: 2 }, { a: 1, b: 3 })).toBe('skip:filtered');
    expect(run({ a: { exists: true, in: [1, 2] } }, { a: 2 })).toBe('record');
    expect(run({ any: [{ not: { a: { exists: true } } }, { a: 'x' }] }, { a: 'x' })).toBe('record');
  });

  it('runs before require: unwanted messages are skipped, not dead-lettered', () => {
    const r = applyRule({ filter: { message: 'Cleaning Game Records' }, require: { game_token: 'string' } }, { message: 'tick' });
    expect(r).toEqual({ kind: 'skip', route: 'r', reason: 'filtered' });
  });
});
