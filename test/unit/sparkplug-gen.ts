// Random Sparkplug B payloads for the fuzz tests: valid encodings of random metrics (every data
// type, values in and out of range, fields that do not match the datatype, nested templates,
// data sets and property sets), and damaged ones (flipped bytes, cut short). Not a test file.

import { DataType as T, encodePayload, packArray, type PbObject } from '../harness/sparkplug.js';

/** Choices from a seeded random source (shared by the fuzz generators). */
export class RandomChoices {
  constructor(readonly rnd: () => number) {}

  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
}

export class SparkplugGen extends RandomChoices {

  u64(): string {
    return this.pick(['0', '1', '255', '256', '9007199254740991', '9007199254740993', '18446744073709551615', '9223372036854775808', String(this.int(1e9))]);
  }

  /**
   * A value field: usually the one the datatype calls for, sometimes any other. `scalar`: for
   * PropertyValue, Parameter and DataSetValue, which have no bytes, DataSet or Template field.
   */
  valueFor(dt: number, depth: number, scalar = false): PbObject {
    if (scalar && (dt === T.Bytes || dt === T.File || dt === T.DataSet || dt === T.Template || dt >= 22)) dt = T.Int32;
    if (this.chance(0.15)) {
      return this.pick<() => PbObject>([
        () => ({ int_value: this.int(2 ** 32) }),
        () => ({ long_value: this.u64() }),
        () => ({ float_value: this.pick([0, -1.5, NaN, Infinity, 3.4e38]) }),
        () => ({ double_value: this.pick([0, -1e308, NaN, -Infinity, Math.PI]) }),
        () => ({ boolean_value: this.chance(0.5) }),
        () => ({ string_value: this.pick(['', 'x', '\u0000', '😀', '__proto__']) }),
        () => (scalar ? {} : { bytes_value: Buffer.from(Array.from({ length: this.int(20) }, () => this.int(256))) }),
        () => ({}),
      ])();
    }
    switch (dt) {
      case T.Int8: case T.Int16: case T.Int32: case T.UInt8: case T.UInt16: case T.UInt32:
        return { int_value: this.pick([0, 1, 127, 128, 255, 65535, 2 ** 31, 2 ** 32 - 1, this.int(2 ** 32)]) };
      case T.Int64: case T.UInt64: case T.DateTime:
        return { long_value: this.u64() };
      case T.Float: return { float_value: this.pick([0, 1.1, -0.3, NaN, Infinity, 1e-45]) };
      case T.Double: return { double_value: this.pick([0, 0.1, -1e308, NaN, -Infinity, 5e-324]) };
      case T.Boolean: return { boolean_value: this.chance(0.5) };
      case T.String: case T.Text: case T.UUID: return { string_value: this.pick(['', 'abc', 'ü中😀', '\u0000x', 'x'.repeat(this.int(300))]) };
      case T.Bytes: case T.File: return { bytes_value: Buffer.from(Array.from({ length: this.int(40) }, () => this.int(256))) };
      case T.DataSet: return { dataset_value: this.dataSet() };
      case T.Template: return depth < 4 ? { template_value: this.template(depth + 1) } : {};
      default:
        if (dt >= 22 && dt <= 34) {
          if (this.chance(0.2)) return { bytes_value: Buffer.from(Array.from({ length: this.int(17) }, () => this.int(256))) }; // any length
          return { bytes_value: packArray(dt, this.arrayValues(dt)) };
        }
        return this.chance(0.5) ? { int_value: this.int(100) } : {};
    }
  }

  arrayValues(dt: number): unknown[] {
    const n = this.int(6);
    return Array.from({ length: n }, () => {
      switch (dt) {
        case 22: return this.int(256) - 128;
        case 23: return this.int(65536) - 32768;
        case 24: return this.int(2 ** 32) - 2 ** 31;
        case 25: return this.pick(['-9223372036854775808', '-1', '0', '9223372036854775807']);
        case 26: return this.int(256);
        case 27: return this.int(65536);
        case 28: return this.int(2 ** 32);
        case 29: return this.pick(['0', '18446744073709551615', '9007199254740993']);
        case 30: return this.pick([0, 1.1, NaN, -Infinity]);
        case 31: return this.pick([0, 0.1, NaN, Infinity, -1e308]);
        case 32: return this.chance(0.5);
        case 33: return this.pick(['', 'a', 'ü😀']);
        default: return this.pick([0, 1_718_906_645_123, -1]);
      }
    });
  }

  dataSet(): PbObject {
    const cols = this.int(4);
    const types = Array.from({ length: this.chance(0.9) ? cols : cols + 1 }, () => this.pick([T.Int8, T.Int32, T.Int64, T.UInt64, T.Float, T.Double, T.Boolean, T.String, T.DateTime, 99]));
    return {
      ...(this.chance(0.8) ? { num_of_columns: String(cols) } : {}),
      columns: Array.from({ length: cols }, (_, i) => `c${i}`),
      types,
      rows: Array.from({ length: this.int(4) }, () => ({ elements: Array.from({ length: this.int(cols + 2) }, (_, i) => this.valueFor(types[i] ?? T.Int32, 9, true)) })),
    };
  }

  template(depth: number): PbObject {
    return {
      ...(this.chance(0.5) ? { version: 'v1' } : {}),
      ...(this.chance(0.5) ? { template_ref: 'T' } : {}),
      is_definition: this.chance(0.5),
      metrics: Array.from({ length: this.int(3) }, () => this.metric(depth)),
      parameters: Array.from({ length: this.int(2) }, () => ({ name: 'p', type: this.pick([T.Int32, T.String, T.UInt64]), ...this.valueFor(this.pick([T.Int32, T.String, T.UInt64]), 9, true) })),
    };
  }

  propertySet(depth: number): PbObject {
    const n = this.int(3);
    return {
      keys: Array.from({ length: this.chance(0.9) ? n : n + 1 }, () => this.pick(['engUnit', 'a', '__proto__', ''])),
      values: Array.from({ length: n }, () => {
        const t = this.pick([T.Int32, T.String, T.Double, T.PropertySet, T.PropertySetList, T.UInt64]);
        if (t === T.PropertySet && depth < 3) return { type: t, propertyset_value: this.propertySet(depth + 1) };
        if (t === T.PropertySetList && depth < 3) return { type: t, propertysets_value: { propertyset: [this.propertySet(depth + 1)] } };
        return { type: t, ...(this.chance(0.1) ? { is_null: true } : this.valueFor(t, 9, true)) };
      }),
    };
  }

  metric(depth = 0, aliases = 20): PbObject {
    const dt = this.chance(0.05) ? this.pick([0, 99, 35]) : 1 + this.int(34);
    return {
      ...(this.chance(0.6) ? { name: this.pick(['temp', 'bdSeq', 'a/b', '', 'Node Control/Rebirth', '__proto__']) } : {}),
      ...(this.chance(0.7) ? { alias: this.chance(0.05) ? this.u64() : String(this.int(aliases)) } : {}),
      ...(this.chance(0.5) ? { timestamp: this.u64() } : {}),
      ...(this.chance(0.8) ? { datatype: dt } : {}),
      ...(this.chance(0.1) ? { is_null: true } : {}),
      ...(this.chance(0.05) ? { is_historical: true, is_transient: true } : {}),
      ...(this.chance(0.1) ? { properties: this.propertySet(0) } : {}),
      ...(this.chance(0.05) ? { metadata: { file_name: 'f', size: this.u64(), is_multi_part: false } } : {}),
      ...this.valueFor(dt, depth),
    };
  }

  /** A valid Sparkplug B payload with random metrics. */
  payloadObject(): PbObject {
    return {
      ...(this.chance(0.8) ? { timestamp: this.u64() } : {}),
      ...(this.chance(0.9) ? { seq: this.chance(0.9) ? String(this.int(256)) : this.u64() } : {}),
      ...(this.chance(0.05) ? { uuid: 'u' } : {}),
      ...(this.chance(0.05) ? { body: Buffer.from([1, 2, 3]) } : {}),
      metrics: Array.from({ length: this.int(6) }, () => this.metric()),
    };
  }

  /** A Sparkplug payload: mostly valid, sometimes damaged. */
  payload(): Buffer {
    const b = encodePayload(this.payloadObject());
    switch (this.int(6)) {
      case 0: {
        const c = Buffer.from(b);
        for (let i = 0; i < 1 + this.int(3) && c.length > 0; i++) c[this.int(c.length)] = this.int(256);
        return c;
      }
      case 1:
        return b.subarray(0, this.int(b.length + 1));
      default:
        return b;
    }
  }

  topic(): string {
    const slot = (): string => this.pick(['g1', 'g2', 'e1', 'e2', 'd1', '', 'STATE', 'x y', '😀']);
    const type = this.pick(['NBIRTH', 'NDEATH', 'NDATA', 'NCMD', 'DBIRTH', 'DDEATH', 'DDATA', 'DCMD', 'STATE', 'NOPE']);
    if (type === 'STATE') return `spBv1.0/STATE/${slot()}${this.chance(0.1) ? '/x' : ''}`;
    const device = type.startsWith('D') ? (this.chance(0.9) ? `/${slot()}` : '') : this.chance(0.1) ? `/${slot()}` : '';
    return `spBv1.0/${slot()}/${type}/${slot()}${device}`;
  }
}

const INTEGER_TYPES = new Set(['Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16', 'UInt32', 'UInt64', 'DateTime']);
const exactInt = (v: unknown): boolean => v === null || typeof v === 'string' || (typeof v === 'number' && Number.isSafeInteger(v));

/**
 * What is wrong with a Sparkplug record's integers: every seq, timestamp, alias and integer-typed
 * value must be exact — null, a decimal string, or a safe integer (never a rounded number).
 */
export function inexactIntegers(rec: { timestamp?: unknown; seq?: unknown; metrics?: unknown }): string[] {
  const out: string[] = [];
  if (!exactInt(rec.timestamp)) out.push(`timestamp ${String(rec.timestamp)}`);
  if (!exactInt(rec.seq)) out.push(`seq ${String(rec.seq)}`);
  const walk = (ms: unknown): void => {
    if (!Array.isArray(ms)) return;
    for (const m of ms as { alias?: unknown; timestamp?: unknown; type?: unknown; value?: unknown }[]) {
      if (!exactInt(m.alias)) out.push(`alias ${String(m.alias)}`);
      if (!exactInt(m.timestamp)) out.push(`metric timestamp ${String(m.timestamp)}`);
      if (typeof m.type === 'string' && INTEGER_TYPES.has(m.type) && !exactInt(m.value)) out.push(`${m.type} value ${String(m.value)}`);
      if (m.type === 'Template' && m.value && typeof m.value === 'object') walk((m.value as { metrics?: unknown }).metrics);
    }
  };
  walk(rec.metrics);
  return out;
}
