import { describe, expect, it } from 'vitest';
import { compileRoutes } from '../../src/bridge/routes/index.js';
import type { TransformResult } from '../../src/bridge/types.js';
import type { InboundMessage } from '../../src/mqtt/types.js';
import { DataType as T, encodePayload, metric, packArray, valueField, type PbObject } from '../harness/sparkplug.js';

/**
 * Round trips of every Sparkplug B data type through a `format: sparkplug` rule: payloads are
 * encoded with the same protobuf definition, placing each value where the specification says,
 * and the record's JSON must hold the value exactly (64-bit integers never rounded).
 */

const opts = { separator: '_', maxMessageBytes: 1_000_000 } as const;
let n = 0;
const msg = (topic: string, payload: Buffer): InboundMessage => ({ seq: n, id: `t:${n++}`, topic, payload, qos: 1, retain: false, dup: false, receivedAtMs: 1_750_000_000_000 });
const transform = () => compileRoutes({ routes: [{ name: 'spb', match: 'spBv1.0/#', topic: 'sparkplug', format: 'sparkplug' }] }, 'inline', opts);

interface Rec {
  group: string;
  message_type: string;
  edge_node: string;
  device: string | null;
  timestamp: number | string | null;
  seq: number | string | null;
  metrics: { name: string | null; alias: number | string | null; datatype: number | null; type: string | null; value: unknown; is_null: boolean; [k: string]: unknown }[];
  [k: string]: unknown;
}
function rec(r: TransformResult): { json: Rec; text: string; key: string | null; headers: Readonly<Record<string, string>> } {
  if (r.kind !== 'record') throw new Error(`expected a record, got ${JSON.stringify(r)}`);
  const text = r.value.toString('utf8');
  return { json: JSON.parse(text) as Rec, text, key: r.key, headers: r.headers };
}

/** One NBIRTH metric per scalar type: [name, datatype, value sent, value expected in JSON]. */
const SCALARS: [string, number, unknown, unknown][] = [
  ['int8', T.Int8, -5, -5],
  ['int8max', T.Int8, 127, 127],
  ['int16', T.Int16, -300, -300],
  ['int32', T.Int32, -70_000, -70_000],
  ['int32min', T.Int32, -2_147_483_648, -2_147_483_648],
  ['int64', T.Int64, '-9007199254740993', '-9007199254740993'],
  ['int64min', T.Int64, '-9223372036854775808', '-9223372036854775808'],
  ['int64small', T.Int64, 42, '42'],
  ['uint8', T.UInt8, 200, 200],
  ['uint16', T.UInt16, 60_000, 60_000],
  ['uint32', T.UInt32, 4_000_000_000, 4_000_000_000],
  ['uint64', T.UInt64, '18446744073709551615', '18446744073709551615'],
  ['uint64big', T.UInt64, '9007199254740993', '9007199254740993'],
  ['float', T.Float, 1.1, 1.1],
  ['floatneg', T.Float, -0.000123, -0.000123],
  ['double', T.Double, 187.25, 187.25],
  ['doublepi', T.Double, Math.PI, Math.PI],
  ['bool', T.Boolean, true, true],
  ['string', T.String, 'héllo 中', 'héllo 中'],
  ['datetime', T.DateTime, 1_718_906_645_123, 1_718_906_645_123],
  ['text', T.Text, 'long\ntext', 'long\ntext'],
  ['uuid', T.UUID, '6f1c3b0e-5a8d-4c2b-9e7f-1a2b3c4d5e6f', '6f1c3b0e-5a8d-4c2b-9e7f-1a2b3c4d5e6f'],
  ['bytes', T.Bytes, Buffer.from([0, 1, 254, 255]), 'AAH+/w=='],
];

/** Array types: [name, datatype, values]. 64-bit elements travel as strings (Int64/UInt64) or numbers (DateTime). */
const ARRAYS: [string, number, unknown[], unknown[]][] = [
  ['i8a', T.Int8Array, [-128, 0, 127], [-128, 0, 127]],
  ['i16a', T.Int16Array, [-23, 123], [-23, 123]],
  ['i32a', T.Int32Array, [-2_147_483_648, 7], [-2_147_483_648, 7]],
  ['i64a', T.Int64Array, ['-9223372036854775808', '9007199254740993'], ['-9223372036854775808', '9007199254740993']],
  ['u8a', T.UInt8Array, [0, 255], [0, 255]],
  ['u16a', T.UInt16Array, [65_535, 1], [65_535, 1]],
  ['u32a', T.UInt32Array, [4_294_967_295], [4_294_967_295]],
  ['u64a', T.UInt64Array, ['18446744073709551615', '0'], ['18446744073709551615', '0']],
  ['f32a', T.FloatArray, [1.1, -2.5], [1.1, -2.5]],
  ['f64a', T.DoubleArray, [0.1, 1e300], [0.1, 1e300]],
  ['boola', T.BooleanArray, [false, false, true, true, false, true, false, false, true, true, false, true], [false, false, true, true, false, true, false, false, true, true, false, true]],
  ['stra', T.StringArray, ['ABC', 'hello', ''], ['ABC', 'hello', '']],
  ['dta', T.DateTimeArray, [1_718_906_645_123, 0], [1_718_906_645_123, 0]],
];

describe('sparkplug: every data type round-trips', () => {
  it('scalars, including Int64/UInt64 beyond 2^53 as exact decimal strings', () => {
    const t = transform();
    const payload = encodePayload({
      timestamp: '1718906645000',
      seq: '0',
      metrics: [metric({ name: 'bdSeq', datatype: T.Int64 }, 0), ...SCALARS.map(([name, dt, v], i) => metric({ name, alias: i + 1, datatype: dt }, v))],
    });
    const { json, text } = rec(t.apply(msg('spBv1.0/plant1/NBIRTH/edge1', payload)));
    expect(json).toMatchObject({ group: 'plant1', message_type: 'NBIRTH', edge_node: 'edge1', device: null, timestamp: 1_718_906_645_000, seq: 0 });
    const byName = new Map(json.metrics.map((m) => [m.name, m]));
    for (const [name, dt, , want] of SCALARS) {
      const m = byName.get(name)!;
      expect(m, name).toBeDefined();
      expect(m.value, name).toStrictEqual(want);
      expect(m.datatype, name).toBe(dt);
      expect(m.is_null, name).toBe(false);
    }
    expect(byName.get('uint64')!.type).toBe('UInt64');
    expect(byName.get('float')!.type).toBe('Float');
    // Exact in the serialized text, not only after our own parse.
    expect(text).toContain('"value":"18446744073709551615"');
    expect(text).toContain('"value":"-9007199254740993"');
    expect(text).toContain('"value":1.1}');
  });

  it('alias-only DATA takes each datatype from the BIRTH (signed Int8/Int64 are sign-extended, not read as unsigned)', () => {
    const t = transform();
    t.apply(msg('spBv1.0/g/NBIRTH/e', encodePayload({ seq: '0', metrics: SCALARS.map(([name, dt, v], i) => metric({ name, alias: i + 1, datatype: dt }, v)) })));
    const data = encodePayload({ seq: '1', metrics: SCALARS.map(([, dt, v], i) => ({ alias: String(i + 1), ...valueField(dt, v) })) });
    const { json, headers } = rec(t.apply(msg('spBv1.0/g/NDATA/e', data)));
    expect(headers['sparkplug.unresolved']).toBeUndefined();
    SCALARS.forEach(([name, dt, , want], i) => {
      expect(json.metrics[i], name).toMatchObject({ name, alias: i + 1, datatype: dt, value: want });
    });
  });

  it('Int8 written as a one-byte or a four-byte two\'s complement both read as -1', () => {
    const t = transform();
    const p = encodePayload({ metrics: [{ name: 'a', datatype: T.Int8, int_value: 0xff }, { name: 'b', datatype: T.Int8, int_value: 0xffffffff }, { name: 'c', datatype: T.Int16, int_value: 0xffff }] });
    expect(rec(t.apply(msg('spBv1.0/g/NDATA/e', p))).json.metrics.map((m) => m.value)).toEqual([-1, -1, -1]);
  });

  it('UInt32 in long_value (as Tahu\'s Java and JavaScript encoders write it) and DateTime before 1970', () => {
    const t = transform();
    const p = encodePayload({ metrics: [{ name: 'u', datatype: T.UInt32, long_value: '4294967295' }, { name: 'd', datatype: T.DateTime, long_value: BigInt.asUintN(64, -1000n).toString() }] });
    expect(rec(t.apply(msg('spBv1.0/g/NDATA/e', p))).json.metrics.map((m) => m.value)).toEqual([4_294_967_295, -1000]);
  });

  it('NaN and infinities become strings; floats print as the shortest decimal of the 32-bit value', () => {
    const t = transform();
    const p = encodePayload({ metrics: [metric({ name: 'nan', datatype: T.Float }, NaN), metric({ name: 'inf', datatype: T.Double }, Infinity), metric({ name: 'ninf', datatype: T.Double }, -Infinity), metric({ name: 'f', datatype: T.Float }, 0.3)] });
    expect(rec(t.apply(msg('spBv1.0/g/NDATA/e', p))).json.metrics.map((m) => m.value)).toEqual(['NaN', 'Infinity', '-Infinity', 0.3]);
  });

  it('every array type (22-34), from packed little-endian bytes', () => {
    const t = transform();
    const p = encodePayload({ metrics: ARRAYS.map(([name, dt, v]) => metric({ name, datatype: dt }, v)) });
    const { json } = rec(t.apply(msg('spBv1.0/g/DDATA/e/d', p)));
    ARRAYS.forEach(([name, dt, , want], i) => expect(json.metrics[i], name).toMatchObject({ name, datatype: dt, value: want }));
    expect(json.metrics.map((m) => m.type)).toEqual(ARRAYS.map(([n]) => n).map((_, i) => ['Int8Array', 'Int16Array', 'Int32Array', 'Int64Array', 'UInt8Array', 'UInt16Array', 'UInt32Array', 'UInt64Array', 'FloatArray', 'DoubleArray', 'BooleanArray', 'StringArray', 'DateTimeArray'][i]));
  });

  it('array bytes as the specification spells them out (independent of the test encoder)', () => {
    // Sparkplug 3.0, 6.4.17: Int16Array [-23, 123] and BooleanArray [F,F,T,T,F,T,F,F,T,T,F,T].
    expect(packArray(T.Int16Array, [-23, 123])).toEqual(Buffer.from([0xe9, 0xff, 0x7b, 0x00]));
    const bools = Buffer.from([0x0c, 0x00, 0x00, 0x00, 0x34, 0xd0]);
    expect(packArray(T.BooleanArray, [false, false, true, true, false, true, false, false, true, true, false, true])).toEqual(bools);
    const t = transform();
    const p = encodePayload({ metrics: [{ name: 'b', datatype: T.BooleanArray, bytes_value: bools }, { name: 's', datatype: T.StringArray, bytes_value: Buffer.from([0x41, 0x42, 0x00, 0x68, 0x69, 0x00]) }] });
    expect(rec(t.apply(msg('spBv1.0/g/NDATA/e', p))).json.metrics.map((m) => m.value)).toEqual([
      [false, false, true, true, false, true, false, false, true, true, false, true],
      ['AB', 'hi'],
    ]);
  });

  it('DataSet: columns, type names and rows; a cell without a value is null', () => {
    const t = transform();
    const ds = {
      num_of_columns: '3',
      columns: ['id', 'reading', 'ok'],
      types: [T.Int64, T.Double, T.Boolean],
      rows: [
        { elements: [{ long_value: BigInt.asUintN(64, -2n).toString() }, { double_value: 1.5 }, { boolean_value: true }] },
        { elements: [{ long_value: '18446744073709551615' }, {}, { boolean_value: false }] },
      ],
    };
    const { json } = rec(t.apply(msg('spBv1.0/g/NDATA/e', encodePayload({ metrics: [{ name: 'table', datatype: T.DataSet, dataset_value: ds }] }))));
    expect(json.metrics[0]!.value).toEqual({
      num_of_columns: 3,
      columns: ['id', 'reading', 'ok'],
      types: ['Int64', 'Double', 'Boolean'],
      rows: [['-2', 1.5, true], ['-1', null, false]], // an Int64 column: two's complement
    });
  });

  it('Template definitions and instances: nested metrics and parameters as JSON', () => {
    const t = transform();
    const def = { version: 'v1', is_definition: true, metrics: [metric({ name: 'rpm', datatype: T.Int32 }, 0)], parameters: [{ name: 'max', type: T.UInt64, long_value: '18446744073709551615' }] };
    const inst = { template_ref: 'Motor', is_definition: false, metrics: [metric({ name: 'rpm', datatype: T.Int32 }, -1500)], parameters: [{ name: 'site', type: T.String, string_value: 'A' }] };
    const p = encodePayload({ metrics: [{ name: '_types_/Motor', datatype: T.Template, template_value: def }, { name: 'motor1', datatype: T.Template, template_value: inst }] });
    const { json } = rec(t.apply(msg('spBv1.0/g/NBIRTH/e', p)));
    expect(json.metrics[0]!.value).toEqual({
      version: 'v1',
      is_definition: true,
      metrics: [{ name: 'rpm', alias: null, timestamp: null, datatype: T.Int32, type: 'Int32', is_null: false, value: 0 }],
      parameters: [{ name: 'max', type: 'UInt64', value: '18446744073709551615' }],
    });
    expect(json.metrics[1]!.value).toMatchObject({ template_ref: 'Motor', is_definition: false, metrics: [{ name: 'rpm', value: -1500 }], parameters: [{ name: 'site', type: 'String', value: 'A' }] });
  });

  it('PropertySet and PropertySetList (nested), null properties, metadata, is_null, is_historical, File', () => {
    const t = transform();
    const props = {
      keys: ['engUnit', 'limits', 'history', 'quality'],
      values: [
        { type: T.String, string_value: 'bar' },
        { type: T.PropertySet, propertyset_value: { keys: ['hi', 'lo'], values: [{ type: T.Double, double_value: 10.5 }, { type: T.Int64, long_value: BigInt.asUintN(64, -3n).toString() }] } },
        { type: T.PropertySetList, propertysets_value: { propertyset: [{ keys: ['n'], values: [{ type: T.Int32, int_value: 1 }] }, { keys: ['n'], values: [{ type: T.Int32, int_value: 2 }] }] } },
        { type: T.Int32, is_null: true },
      ],
    };
    const p = encodePayload({
      metrics: [
        { ...metric({ name: 'pressure', datatype: T.Double, timestamp: 1_718_906_645_001 }, 3.5), properties: props, is_historical: true },
        metric({ name: 'missing', datatype: T.Double }, null),
        { ...metric({ name: 'cfg', datatype: T.File }, Buffer.from('{"a":1}')), metadata: { file_name: 'cfg.json', content_type: 'application/json', size: '7', md5: 'x' } },
      ],
    });
    const { json } = rec(t.apply(msg('spBv1.0/g/DBIRTH/e/d', p)));
    expect(json.metrics[0]).toEqual({
      name: 'pressure', alias: null, timestamp: 1_718_906_645_001, datatype: T.Double, type: 'Double', is_null: false, is_historical: true, value: 3.5,
      properties: {
        engUnit: { type: 'String', value: 'bar' },
        limits: { type: 'PropertySet', value: { hi: { type: 'Double', value: 10.5 }, lo: { type: 'Int64', value: '-3' } } },
        history: { type: 'PropertySetList', value: [{ n: { type: 'Int32', value: 1 } }, { n: { type: 'Int32', value: 2 } }] },
        quality: { type: 'Int32', is_null: true, value: null },
      },
    });
    expect(json.metrics[1]).toMatchObject({ name: 'missing', is_null: true, value: null });
    expect(json.metrics[2]).toMatchObject({ name: 'cfg', type: 'File', value: Buffer.from('{"a":1}').toString('base64'), metadata: { file_name: 'cfg.json', content_type: 'application/json', size: 7, md5: 'x' } });
  });

  it('payload uuid and body are kept; a property named __proto__ is an ordinary key', () => {
    const t = transform();
    const p = encodePayload({ uuid: 'schema-1', body: Buffer.from([1, 2]), metrics: [{ ...metric({ name: 'x', datatype: T.Int32 }, 1), properties: { keys: ['__proto__'], values: [{ type: T.String, string_value: 'p' }] } }] });
    const { json, text } = rec(t.apply(msg('spBv1.0/g/NDATA/e', p)));
    expect(json).toMatchObject({ uuid: 'schema-1', body: 'AQI=' });
    expect(text).toContain('"properties":{"__proto__":{"type":"String","value":"p"}}');
    expect(Object.getPrototypeOf(json.metrics[0]!.properties)).toBe(Object.prototype);
  });
});

describe('sparkplug: the wire format, from bytes written by hand (not by our own encoder)', () => {
  it('Payload timestamp = field 1, metrics = 2, seq = 3; Metric name = 1, alias = 2, datatype = 4, int_value = 10, long_value = 11, boolean_value = 14', () => {
    const hex = [
      '08 e8 07', // timestamp 1000
      '12 0a', '0a 01 74  10 07  20 08  58 ac 02', // metric "t", alias 7, UInt64, long_value 300
      '12 0b', '0a 01 69  20 03  50 ff ff ff ff 0f', // metric "i", Int32, int_value 0xffffffff (-1)
      '12 07', '0a 01 62  20 0b  70 01', // metric "b", Boolean, boolean_value true
      '18 05', // seq 5
    ].join(' ');
    const { json } = rec(transform().apply(msg('spBv1.0/g/NDATA/e', Buffer.from(hex.replace(/\s+/g, ''), 'hex'))));
    expect(json).toMatchObject({ timestamp: 1000, seq: 5 });
    expect(json.metrics.map((m) => [m.name, m.alias, m.type, m.value])).toEqual([
      ['t', 7, 'UInt64', '300'],
      ['i', null, 'Int32', -1],
      ['b', null, 'Boolean', true],
    ]);
  });
});

describe('sparkplug: records over the limit are too_large dead letters, refused before they are built', () => {
  it('a packed BooleanArray that would expand to ~40 MB of JSON is refused without expanding it', () => {
    const bits = Buffer.alloc(4 + 1_000_000, 0xff);
    bits.writeUInt32LE(8_000_000, 0);
    const payload = encodePayload({ seq: '0', metrics: [{ name: 'flags', datatype: T.BooleanArray, bytes_value: bits }] });
    const r = transform().apply(msg('spBv1.0/g/NDATA/e', payload));
    expect(r).toMatchObject({ kind: 'dead', route: 'spb', reason: 'too_large' });
    // Refused by the array budget ("would be"), not after building the 40 MB value and measuring it
    // ("value is … bytes"), which took ~700 ms and exhausted a 160 MB heap at 2 MB of payload.
    expect(r.kind === 'dead' && r.detail).toMatch(/^decoded record would be at least \d+ bytes, limit 1000000$/);
  });

  it('the limit counts every array of the record, not each one alone', () => {
    const ints = Buffer.alloc(300_000); // 300,000 Int8 elements: at least 600,000 JSON bytes each
    const one = encodePayload({ seq: '0', metrics: [{ name: 'a', datatype: T.Int8Array, bytes_value: ints }] });
    const two = encodePayload({ seq: '1', metrics: [{ name: 'a', datatype: T.Int8Array, bytes_value: ints }, { name: 'b', datatype: T.Int8Array, bytes_value: ints }] });
    expect(transform().apply(msg('spBv1.0/g/NDATA/e', one))).toMatchObject({ kind: 'record' });
    expect(transform().apply(msg('spBv1.0/g/NDATA/e', two))).toMatchObject({ kind: 'dead', reason: 'too_large' });
  });
});

describe('sparkplug: bad input is an invalid_sparkplug dead letter (never dropped)', () => {
  const everything = () => compileRoutes({ routes: [{ name: 'spb', match: '#', topic: 'sparkplug', format: 'sparkplug' }] }, 'inline', opts);
  const dead = (topic: string, payload: Buffer | string): TransformResult => everything().apply(msg(topic, Buffer.isBuffer(payload) ? payload : Buffer.from(payload)));
  const good = encodePayload({ seq: '0', metrics: [metric({ name: 'a', datatype: T.Int32 }, 1)] });

  it.each([
    ['not protobuf (JSON text)', 'spBv1.0/g/NDATA/e', Buffer.from('{"timestamp": 1}'), /not a Sparkplug B protobuf/],
    ['truncated protobuf', 'spBv1.0/g/NDATA/e', good.subarray(0, 4), /not a Sparkplug B protobuf: index out of range/],
    ['unknown message type', 'spBv1.0/g/NFOO/e', good, /not a Sparkplug message type/],
    ['device message without device', 'spBv1.0/g/DDATA/e', good, /DDATA topic must have 5 levels/],
    ['node message with a device level', 'spBv1.0/g/NDATA/e/d', good, /NDATA topic must have 4 levels/],
    ['empty group', 'spBv1.0//NDATA/e', good, /empty group/],
    ['other namespace', 'spAv1.0/g/NDATA/e', good, /does not start with spBv1.0/],
    ['array of the wrong length', 'spBv1.0/g/NDATA/e', encodePayload({ metrics: [{ name: 'a', datatype: T.Int16Array, bytes_value: Buffer.from([1, 2, 3]) }] }), /metric 0: Int16Array of 3 bytes/],
    ['BooleanArray shorter than its count', 'spBv1.0/g/NDATA/e', encodePayload({ metrics: [{ name: 'a', datatype: T.BooleanArray, bytes_value: Buffer.from([9, 0, 0, 0, 0xff]) }] }), /BooleanArray says 9 booleans/],
    ['property keys and values differ in number', 'spBv1.0/g/NDATA/e', encodePayload({ metrics: [{ name: 'a', properties: { keys: ['a', 'b'], values: [{ type: T.Int32, int_value: 1 }] } }] }), /2 keys but 1 values/],
    ['STATE that is not JSON', 'spBv1.0/STATE/scada1', Buffer.from('ONLINE'), /STATE payload is not JSON/],
  ])('%s', (_label, topic, payload, detail) => {
    const r = dead(topic, payload);
    expect(r).toMatchObject({ kind: 'dead', route: 'spb', reason: 'invalid_sparkplug' });
    if (r.kind === 'dead') {
      expect(r.detail).toMatch(detail);
      expect(r.detail.length).toBeLessThan(300);
    }
  });

  it('templates nested far too deeply are refused, not a stack overflow', () => {
    let tpl: PbObject = { metrics: [] };
    for (let i = 0; i < 40; i++) tpl = { metrics: [{ name: `l${i}`, datatype: T.Template, template_value: tpl }] };
    expect(dead('spBv1.0/g/NDATA/e', encodePayload({ metrics: (tpl.metrics as PbObject[]) }))).toMatchObject({ kind: 'dead', reason: 'invalid_sparkplug', detail: expect.stringMatching(/nested more than 32/) });
  });
});
