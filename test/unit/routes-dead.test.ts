import { describe, expect, it } from 'vitest';
import { compileRoutes } from '../../src/bridge/routes/index.js';
import type { TransformResult } from '../../src/bridge/types.js';
import type { InboundMessage } from '../../src/mqtt/types.js';

const msg = (topic: string, payload: Buffer | string): InboundMessage => ({
  seq: 1, id: 'i:1', topic, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload),
  qos: 1, retain: false, dup: false, receivedAtMs: 0,
});

const SECRET = 'TOP-SECRET-PAYLOAD';

function transform(rules: Record<string, unknown>[], unmatched?: unknown, maxMessageBytes = 200) {
  return compileRoutes({ ...(unmatched === undefined ? {} : { unmatched }), routes: rules }, 'inline', { separator: '_', maxMessageBytes });
}

const json = transform([
  { name: 'j', match: 'j/{id}', topic: 'out-{id}', key: '{payload.k|default:dflt}', format: 'json', require: { n: 'number' } },
  { name: 'reshape', match: 'r/{id}', topic: 'out', format: 'json', enrich: { id: '{id}' } },
]);

function dead(r: TransformResult, reason: string, route?: string): string {
  expect(r, JSON.stringify(r)).toMatchObject({ kind: 'dead', reason, ...(route ? { route } : {}) });
  const detail = (r as { detail: string }).detail;
  expect(typeof detail).toBe('string');
  expect(detail.length).toBeLessThan(200);
  expect(detail).not.toContain(SECRET);
  return detail;
}

describe('dead-letter reasons', () => {
  it('empty_payload', () => {
    expect(dead(json.apply(msg('j/1', '')), 'empty_payload', 'j')).toBe('json route needs a payload');
  });

  it('invalid_utf8', () => {
    dead(json.apply(msg('j/1', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))), 'invalid_utf8', 'j');
    dead(json.apply(msg('j/1', Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]))), 'invalid_utf8'); // encoded surrogate
  });

  it('invalid_json: not JSON, or JSON that is not an object', () => {
    expect(dead(json.apply(msg('j/1', `{"n": 1, ${SECRET}`)), 'invalid_json')).toBe('payload is not JSON');
    expect(dead(json.apply(msg('j/1', '[1,2]')), 'invalid_json')).toBe('payload is JSON array, not an object');
    expect(dead(json.apply(msg('j/1', 'null')), 'invalid_json')).toBe('payload is JSON null, not an object');
    expect(dead(json.apply(msg('j/1', '42')), 'invalid_json')).toBe('payload is JSON number, not an object');
    expect(dead(json.apply(msg('j/1', `"${SECRET}"`)), 'invalid_json')).toBe('payload is JSON string, not an object');
  });

  it('invalid_json: nested too deeply to re-serialize (only when the value is rebuilt)', () => {
    const deep = `{"a":${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
    expect(dead(transform([{ name: 'r', match: 'r', format: 'json', enrich: { x: 1 } }], undefined, 10_000_000).apply(msg('r', deep)), 'invalid_json')).toMatch(/too deeply/);
    // Forwarded unchanged when nothing is added or dropped.
    expect(transform([{ name: 'r', match: 'r', format: 'json' }], undefined, 10_000_000).apply(msg('r', deep)).kind).toBe('record');
  });

  it('missing_field and wrong_type', () => {
    expect(dead(json.apply(msg('j/1', '{}')), 'missing_field')).toBe('n');
    expect(dead(json.apply(msg('j/1', `{"n": "${SECRET}"}`)), 'wrong_type')).toBe('n: expected number, got string');
  });

  it('too_large: raw, envelope, rebuilt json, unmatched topic', () => {
    const big = Buffer.alloc(201, 0x61);
    const t = transform(
      [
        { name: 'raw', match: 'raw' },
        { name: 'env', match: 'env', format: 'envelope' },
      ],
      { topic: 'fallback' },
    );
    expect(dead(t.apply(msg('raw', big)), 'too_large', 'raw')).toBe('value is 201 bytes, limit 200');
    expect(t.apply(msg('raw', Buffer.alloc(200)))).toMatchObject({ kind: 'record' });
    // The envelope grows the value (base64 + JSON): 150 bytes of payload do not fit in 200.
    dead(t.apply(msg('env', Buffer.alloc(150))), 'too_large', 'env');
    dead(t.apply(msg('other', big)), 'too_large', 'unmatched');
    // Enrichment can push a json value over the limit.
    const payload = JSON.stringify({ pad: 'x'.repeat(180) });
    expect(json.apply(msg('r/1', payload.slice(0, -12) + '"}')).kind).toBe('record');
    dead(json.apply(msg('r/12345678901234567890', payload)), 'too_large', 'reshape');
  });

  it('bad_topic: empty, illegal characters, too long, unmappable MQTT topic', () => {
    expect(json.apply(msg('j/', '{"n":1}'))).toMatchObject({ kind: 'record', topic: 'out-' }); // legal, if odd
    const segment = transform([{ name: 's', match: 's/{id}', topic: '{id}' }]);
    expect(dead(segment.apply(msg('s/', 'x')), 'bad_topic', 's')).toBe('topic renders empty');
    expect(dead(segment.apply(msg('s/a:b', 'x')), 'bad_topic', 's')).toBe('topic renders to an illegal Kafka topic (3 chars)');
    dead(json.apply(msg('j/a b', '{"n":1}')), 'bad_topic');
    dead(json.apply(msg(`j/${'x'.repeat(300)}`, '{"n":1}')), 'bad_topic');
    const derived = transform([{ name: 'd', match: '#' }]);
    expect(derived.apply(msg('a/b c', 'x'))).toMatchObject({ kind: 'record', topic: 'a_b_c' });
    expect(dead(derived.apply(msg('', 'x')), 'bad_topic')).toBe('topic renders empty');
    const fromPayload = transform([{ name: 'p', match: 'p', format: 'json', topic: '{payload.t}' }]);
    dead(fromPayload.apply(msg('p', '{"t": "a/b"}')), 'bad_topic');
    dead(fromPayload.apply(msg('p', '{"t": ".."}')), 'bad_topic');
    expect(fromPayload.apply(msg('p', '{"t": "ok.topic"}'))).toMatchObject({ kind: 'record', topic: 'ok.topic' });
    const unmatched = transform([{ match: 'x' }], { topic: '{topic_kafka}' });
    dead(unmatched.apply(msg('..', 'x')), 'bad_topic', 'unmatched');
  });

  it('bad_key: key renders empty', () => {
    const t = transform([{ name: 'k', match: 'k/{id}/+', topic: 'out', key: '{id}' }]);
    expect(dead(t.apply(msg('k//x', 'x')), 'bad_key', 'k')).toBe('key renders empty');
    expect(json.apply(msg('j/1', '{"n":1,"k":""}'))).toMatchObject({ kind: 'dead', reason: 'bad_key' });
    expect(json.apply(msg('j/1', '{"n":1}'))).toMatchObject({ kind: 'record', key: 'dflt' });
  });

  it('unmatched: dead_letter (default), skip, or a raw record to a topic', () => {
    expect(transform([{ match: 'x' }]).apply(msg('y', 'p'))).toEqual({ kind: 'dead', route: 'unmatched', reason: 'unmatched', detail: 'no rule matches the MQTT topic' });
    expect(transform([{ match: 'x' }], 'dead_letter').apply(msg('y', 'p'))).toMatchObject({ kind: 'dead', reason: 'unmatched' });
    expect(transform([{ match: 'x' }], 'skip').apply(msg('y', 'p'))).toEqual({ kind: 'skip', route: 'unmatched', reason: 'unmatched' });
    const r = transform([{ match: 'x' }], { topic: 'mqtt-unrouted' }).apply(msg('y/z', 'p'));
    expect(r).toMatchObject({ kind: 'record', route: 'unmatched', topic: 'mqtt-unrouted', key: 'y/z', headers: {} });
    expect(r.kind === 'record' && r.value.toString()).toBe('p');
    expect(transform([{ match: 'x' }], { topic: 'u.{topic_kafka}' }).apply(msg('y/z', 'p'))).toMatchObject({ topic: 'u.y_z' });
  });

  it('weird input objects end as results, not exceptions', () => {
    const t = transform([{ name: 'j', match: '#', format: 'json' }]);
    const broken = { ...msg('a', '{}'), topic: undefined } as unknown as InboundMessage;
    expect(() => t.apply(broken)).not.toThrow();
    expect(t.apply(broken).kind).toBe('dead');
    const noPayload = { ...msg('a', '{}'), payload: null } as unknown as InboundMessage;
    expect(t.apply(noPayload)).toMatchObject({ kind: 'dead', route: 'j', reason: 'invalid_json' });
  });
});
