import type { PbLong, PbValueHolder } from './schema.js';

/**
 * Sparkplug B data types and how their values become JSON.
 *
 * The rules (the record format in docs/routes.md):
 * - Int8/Int16/Int32 travel in the uint32 `int_value` as two's complement; they are sign-extended
 *   from their own width, so an encoder that wrote -1 as 0xFF and one that wrote 0xFFFFFFFF agree.
 * - Int64 and UInt64 values (and Int64Array/UInt64Array elements) are decimal strings, always:
 *   exact, and one JSON type per data type (the protobuf JSON mapping does the same).
 * - Other 64-bit quantities — timestamps, DateTime values, alias, seq, sizes — are JSON numbers
 *   when they fit in 2^53 (every real epoch-milliseconds time does), otherwise decimal strings:
 *   never rounded.
 * - Float values print as the shortest decimal that reads back as the same 32-bit float
 *   (1.1, not 1.100000023841858). NaN and ±Infinity, which JSON cannot hold, are the strings
 *   "NaN", "Infinity", "-Infinity".
 * - Bytes and File are base64 strings; arrays (22–34) are JSON arrays decoded from the packed
 *   little-endian bytes the specification defines.
 * - A value whose field does not match its datatype is decoded by the field that is present;
 *   an unknown datatype likewise.
 */

/** A JSON value as the record holds it. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A value the specification's rules cannot decode (e.g. an Int16Array of 5 bytes). Becomes an `invalid_sparkplug` dead letter. */
export class SparkplugDataError extends Error {
  override readonly name = 'SparkplugDataError';
}

/**
 * How many more JSON bytes a record may take. Array metrics are checked against it before they
 * are expanded: a packed BooleanArray grows about 40-fold as JSON, so a payload of a few MB
 * would otherwise exhaust the heap before the record could be refused as too large.
 */
export interface RecordBudget {
  left: number;
}

/** The record being built is certainly larger than the limit (`atLeast` bytes): a `too_large` dead letter. */
export class SparkplugTooLarge extends Error {
  override readonly name = 'SparkplugTooLarge';
  constructor(readonly atLeast: number) {
    super(`decoded record would be at least ${atLeast} bytes`);
  }
}

/** Takes `n` elements of at least `minBytes` JSON bytes each from the budget; throws SparkplugTooLarge when it runs out. */
function spend(budget: RecordBudget, n: number, minBytes: number): void {
  budget.left -= n * minBytes;
  if (budget.left < 0) throw new SparkplugTooLarge(-budget.left);
}

/** Data type numbers of the specification (index = number). */
const NAMES = [
  'Unknown', 'Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16', 'UInt32', 'UInt64', 'Float', 'Double', 'Boolean', 'String',
  'DateTime', 'Text', 'UUID', 'DataSet', 'Bytes', 'File', 'Template', 'PropertySet', 'PropertySetList', 'Int8Array', 'Int16Array',
  'Int32Array', 'Int64Array', 'UInt8Array', 'UInt16Array', 'UInt32Array', 'UInt64Array', 'FloatArray', 'DoubleArray', 'BooleanArray',
  'StringArray', 'DateTimeArray',
] as const;

/** Data type numbers used by the decoder. */
export const DT = {
  Int8: 1, Int16: 2, Int32: 3, Int64: 4, UInt8: 5, UInt16: 6, UInt32: 7, UInt64: 8, Float: 9, Double: 10, Boolean: 11, String: 12,
  DateTime: 13, Text: 14, UUID: 15, DataSet: 16, Bytes: 17, File: 18, Template: 19, PropertySet: 20, PropertySetList: 21,
  Int8Array: 22, DateTimeArray: 34,
} as const;

/** The specification's name for a data type number; `Unknown(<n>)` for numbers it does not define. */
export function datatypeName(n: number): string {
  return NAMES[n] ?? `Unknown(${n})`;
}

// --- 64-bit integers ---------------------------------------------------------------------

/** A uint64 field as an unsigned BigInt (protobufjs gives the two 32-bit halves). */
function big(l: PbLong): bigint {
  return (BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0);
}

/** The unsigned decimal of a uint64 field. */
export function u64(l: PbLong): string {
  return big(l).toString();
}

/** The signed (two's complement) decimal of a uint64 field. */
export function i64(l: PbLong): string {
  return BigInt.asIntN(64, big(l)).toString();
}

/** An unsigned 64-bit count or time: a number when below 2^53, else its exact decimal string. */
export function num64(l: PbLong): number | string {
  const high = l.high >>> 0;
  return high < 0x20_0000 ? high * 0x1_0000_0000 + (l.low >>> 0) : u64(l);
}

/** A signed 64-bit time (DateTime: epoch ms, negative before 1970): a number within ±2^53, else its exact decimal string. */
function snum64(l: PbLong): number | string {
  return bigToJson(BigInt.asIntN(64, big(l)));
}

function bigToJson(b: bigint): number | string {
  return b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(b) : b.toString();
}

// --- floats ------------------------------------------------------------------------------

function special(v: number): string | undefined {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  return undefined;
}

/** A 32-bit float as the shortest decimal that reads back as the same float. */
export function float32(v: number): number | string {
  const s = special(v);
  if (s !== undefined) return s;
  for (let p = 1; p < 10; p++) {
    const n = Number(v.toPrecision(p));
    if (Math.fround(n) === v) return n;
  }
  return v;
}

/** A 64-bit float; NaN and infinities as strings. */
export function float64(v: number): number | string {
  return special(v) ?? v;
}

// --- scalars ---------------------------------------------------------------------------

/** A datatype number the specification defines (1–34); anything else decodes by field. */
export function isKnownType(datatype: number | null): datatype is number {
  return datatype !== null && datatype > 0 && datatype < NAMES.length;
}

/**
 * The value of a Metric, PropertyValue, Parameter or DataSetValue of a scalar datatype, following
 * the rules above; `undefined` when it holds no value field. An unknown datatype decodes by the
 * field that is set. A known datatype in a field it cannot travel in (a UInt64 in `double_value`)
 * throws SparkplugDataError: the record would claim a type its value does not have.
 */
export function scalarValue(h: PbValueHolder, datatype: number | null, where: string): Json | undefined {
  const field = h.value;
  if (field === undefined) return undefined;
  if (!isKnownType(datatype)) return byField(h);
  const iv = field === 'int_value' ? (h.int_value as number) : undefined;
  const lv = field === 'long_value' ? (h.long_value as PbLong) : undefined;
  const int = iv !== undefined || lv !== undefined;
  switch (datatype) {
    case DT.Int8:
      if (int) return iv !== undefined ? (iv << 24) >> 24 : (lv!.low << 24) >> 24;
      break;
    case DT.Int16:
      if (int) return iv !== undefined ? (iv << 16) >> 16 : (lv!.low << 16) >> 16;
      break;
    case DT.Int32:
      if (int) return iv !== undefined ? iv | 0 : lv!.low | 0;
      break;
    case DT.Int64:
      if (int) return lv ? i64(lv) : String(iv! | 0);
      break;
    case DT.UInt8:
    case DT.UInt16:
    case DT.UInt32:
      // UInt32 travels in long_value with Tahu's Java and JavaScript encoders.
      if (int) return iv !== undefined ? iv >>> 0 : num64(lv!);
      break;
    case DT.UInt64:
      if (int) return lv ? u64(lv) : String(iv! >>> 0);
      break;
    case DT.DateTime:
      if (int) return lv ? snum64(lv) : iv! >>> 0;
      break;
    case DT.Float:
    case DT.Double:
      if (field === 'float_value') return float32(h.float_value as number);
      if (field === 'double_value') return float64(h.double_value as number);
      break;
    case DT.Boolean:
      if (field === 'boolean_value') return h.boolean_value as boolean;
      break;
    case DT.String:
    case DT.Text:
    case DT.UUID:
      if (field === 'string_value') return h.string_value as string;
      break;
  }
  if (field === 'extension_value') return null; // third-party extension: nothing we can decode
  throw new SparkplugDataError(`${where}: a ${datatypeName(datatype)} value cannot travel in ${field}`);
}

/** Decodes by the field that is set, for an unknown datatype or one whose field does not match. */
function byField(h: PbValueHolder): Json | undefined {
  switch (h.value) {
    case 'int_value':
      return (h.int_value as number) >>> 0;
    case 'long_value':
      return u64(h.long_value as PbLong);
    case 'float_value':
      return float32(h.float_value as number);
    case 'double_value':
      return float64(h.double_value as number);
    case 'boolean_value':
      return h.boolean_value as boolean;
    case 'string_value':
      return h.string_value as string;
    default:
      // Bytes, DataSet, Template, property sets and extensions are decoded by the caller.
      return undefined;
  }
}

// --- arrays (datatypes 22–34, packed little-endian in bytes_value) ---------------------------

const ELEMENT_BYTES: Readonly<Record<number, number>> = { 22: 1, 23: 2, 24: 4, 25: 8, 26: 1, 27: 2, 28: 4, 29: 8, 30: 4, 31: 8, 34: 8 };

/** True for the array datatypes (22–34). */
export function isArrayType(datatype: number | null): boolean {
  return datatype !== null && datatype >= DT.Int8Array && datatype <= DT.DateTimeArray;
}

/**
 * Decodes an array metric's bytes. Throws SparkplugDataError when the bytes do not fit the type,
 * SparkplugTooLarge (before allocating) when the elements alone would exceed the budget.
 */
export function arrayValue(bytes: Uint8Array, datatype: number, budget: RecordBudget): Json[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (datatype === 32) return booleanArray(view, budget);
  if (datatype === 33) return stringArray(bytes);
  const size = ELEMENT_BYTES[datatype] as number;
  if (bytes.byteLength % size !== 0) {
    throw new SparkplugDataError(`${datatypeName(datatype)} of ${bytes.byteLength} bytes is not a whole number of ${size}-byte elements`);
  }
  const n = bytes.byteLength / size;
  spend(budget, n, 2); // a one-digit number and a comma
  const out: Json[] = new Array<Json>(n);
  for (let i = 0, o = 0; i < n; i++, o += size) {
    switch (datatype) {
      case 22: out[i] = view.getInt8(o); break;
      case 23: out[i] = view.getInt16(o, true); break;
      case 24: out[i] = view.getInt32(o, true); break;
      case 25: out[i] = view.getBigInt64(o, true).toString(); break;
      case 26: out[i] = view.getUint8(o); break;
      case 27: out[i] = view.getUint16(o, true); break;
      case 28: out[i] = view.getUint32(o, true); break;
      case 29: out[i] = view.getBigUint64(o, true).toString(); break;
      case 30: out[i] = float32(view.getFloat32(o, true)); break;
      case 31: out[i] = float64(view.getFloat64(o, true)); break;
      default: out[i] = bigToJson(view.getBigInt64(o, true)); // 34 DateTimeArray: epoch ms
    }
  }
  return out;
}

/** BooleanArray: a uint32 (LE) count, then the booleans packed most significant bit first. */
function booleanArray(view: DataView, budget: RecordBudget): boolean[] {
  if (view.byteLength < 4) throw new SparkplugDataError(`BooleanArray of ${view.byteLength} bytes has no 4-byte count`);
  const n = view.getUint32(0, true);
  if (view.byteLength - 4 < Math.ceil(n / 8)) throw new SparkplugDataError(`BooleanArray says ${n} booleans but holds ${(view.byteLength - 4) * 8} bits`);
  spend(budget, n, 5); // "true," or "false"
  const out = new Array<boolean>(n);
  for (let i = 0; i < n; i++) out[i] = (view.getUint8(4 + (i >> 3)) & (0x80 >> (i & 7))) !== 0;
  return out;
}

/** StringArray: UTF-8 strings, each terminated by a NUL byte (a missing last terminator is tolerated). */
function stringArray(bytes: Uint8Array): string[] {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  if (text.length === 0) return [];
  const parts = text.split('\u0000');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}
