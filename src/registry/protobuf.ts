import protobuf from 'protobufjs';
import { valueKind } from './values.js';

/**
 * Protobuf values in the Confluent wire format, with protobufjs. Not @platformatic/kafka's
 * Protobuf serializer, which (2.12.1) writes no message indexes after the schema id (Confluent
 * deserializers read them, so its records do not decode elsewhere), parses .proto files with
 * protobufjs' default camelCase field names (so JSON with the declared names encodes nothing),
 * and checks nothing before encoding (a string in a double field becomes garbage, not an error).
 *
 * The JSON value follows the proto3 JSON mapping, with the field names as declared in the .proto:
 * enums by name or number, 64-bit integers as numbers or decimal strings, bytes as base64, null =
 * not set. A field the message does not have is a mismatch (nothing is dropped silently).
 */

/** A compiled message type, ready to check and encode JSON values. */
export interface ProtobufCodec {
  /** Full name without the leading dot (`demo.Reading`). */
  readonly messageName: string;
  /** The message's Confluent index path in its file ([0] = the first top-level message). */
  readonly indexes: readonly number[];
  /** Problems with the value, empty when it fits. */
  check(value: unknown): string[];
  /** Encodes a value `check` accepted (no framing). */
  encode(value: unknown): Buffer;
}

/** Compiles a .proto source and picks `message` (or the first message). Throws Error with a readable message. */
export function compileProtobuf(source: string, message?: string): ProtobufCodec {
  let parsed: protobuf.IParserResult;
  try {
    parsed = protobuf.parse(source, { keepCase: true });
  } catch (err) {
    throw new Error(`not a valid .proto file: ${(err as Error).message}`);
  }
  const root = parsed.root;
  root.resolveAll();
  const container = parsed.package ? root.lookup(parsed.package) : root;
  if (!(container instanceof protobuf.Namespace)) throw new Error(`package ${parsed.package ?? ''} not found`);
  const top = messagesOf(container);
  if (top.length === 0) throw new Error('the .proto file defines no message');
  let type: protobuf.Type;
  if (message === undefined) type = top[0] as protobuf.Type;
  else {
    const found = root.lookup(message.startsWith('.') ? message : `.${message}`) ?? (parsed.package ? root.lookup(`.${parsed.package}.${message}`) : null);
    if (!(found instanceof protobuf.Type)) {
      throw new Error(`message ${message} is not defined (messages: ${allMessages(container).map((t) => t.fullName.slice(1)).join(', ')})`);
    }
    type = found;
  }
  const indexes = indexPath(type, container);
  return {
    messageName: type.fullName.slice(1),
    indexes,
    check(value) {
      const out: string[] = [];
      checkMessage(type, value, '', out);
      return out;
    },
    encode(value) {
      return Buffer.from(type.encode(type.fromObject(value as Record<string, unknown>)).finish());
    },
  };
}

/** Confluent's message-index prefix: zigzag varints, count first; [0] is written as one 0 byte. */
export function messageIndexBytes(indexes: readonly number[]): Buffer {
  if (indexes.length === 1 && indexes[0] === 0) return Buffer.from([0]);
  const bytes: number[] = [];
  for (const n of [indexes.length, ...indexes]) {
    let z = ((n << 1) ^ (n >> 31)) >>> 0;
    while (z > 0x7f) {
      bytes.push((z & 0x7f) | 0x80);
      z >>>= 7;
    }
    bytes.push(z);
  }
  return Buffer.from(bytes);
}

function messagesOf(ns: protobuf.NamespaceBase): protobuf.Type[] {
  return ns.nestedArray.filter((n): n is protobuf.Type => n instanceof protobuf.Type);
}

function allMessages(ns: protobuf.NamespaceBase): protobuf.Type[] {
  const out: protobuf.Type[] = [];
  for (const t of messagesOf(ns)) out.push(t, ...allMessages(t));
  return out;
}

function indexPath(type: protobuf.Type, container: protobuf.NamespaceBase): number[] {
  const path: number[] = [];
  let t: protobuf.NamespaceBase = type;
  while (t !== container && t.parent) {
    const parent: protobuf.NamespaceBase = t.parent;
    path.unshift(messagesOf(parent).indexOf(t as protobuf.Type));
    t = parent;
  }
  return path;
}

const MAX_PROBLEMS = 5;


function checkMessage(type: protobuf.Type, v: unknown, path: string, out: string[]): void {
  if (out.length >= MAX_PROBLEMS) return;
  const at = path === '' ? '(value)' : path;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    out.push(`${at}: ${valueKind(v)} is not a ${type.name} message (an object)`);
    return;
  }
  const o = v as Record<string, unknown>;
  for (const [k, x] of Object.entries(o)) {
    const p = path === '' ? k : `${path}.${k}`;
    const f = Object.hasOwn(type.fields, k) ? type.fields[k] : undefined;
    if (!f) {
      out.push(`${p}: not a field of ${type.fullName.slice(1)}`);
      continue;
    }
    if (x === null || x === undefined) continue;
    if (f.map) {
      if (typeof x !== 'object' || Array.isArray(x)) out.push(`${p}: ${valueKind(x)} is not a map (an object)`);
      else for (const [mk, mv] of Object.entries(x as Record<string, unknown>)) checkValue(f, mv, `${p}.${mk}`, out);
    } else if (f.repeated) {
      if (!Array.isArray(x)) out.push(`${p}: ${valueKind(x)} is not a list`);
      else x.forEach((e, i) => checkValue(f, e, `${p}[${i}]`, out));
    } else checkValue(f, x, p, out);
    if (out.length >= MAX_PROBLEMS) return;
  }
  for (const f of type.fieldsArray) {
    if (f.required && (o[f.name] === undefined || o[f.name] === null)) out.push(`${path === '' ? f.name : `${path}.${f.name}`}: required field missing`);
  }
  for (const oneof of type.oneofsArray) {
    const set = oneof.oneof.filter((n) => o[n] !== undefined && o[n] !== null);
    if (set.length > 1) out.push(`${at}: fields ${set.join(', ')} are all set, but they are one of "${oneof.name}"`);
  }
}

const INT_RANGES: Record<string, readonly [bigint, bigint]> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

function checkValue(f: protobuf.Field, x: unknown, p: string, out: string[]): void {
  const rt = f.resolvedType;
  if (rt instanceof protobuf.Type) {
    checkMessage(rt, x, p, out);
    return;
  }
  if (rt instanceof protobuf.Enum) {
    const ok = (typeof x === 'string' && Object.hasOwn(rt.values, x)) || (typeof x === 'number' && Object.values(rt.values).includes(x));
    if (!ok) out.push(`${p}: ${valueKind(x)} is not a value of enum ${rt.name} (${Object.keys(rt.values).join(', ')})`);
    return;
  }
  const range = INT_RANGES[f.type];
  if (range) {
    let n: bigint | undefined;
    if (typeof x === 'number' && Number.isSafeInteger(x)) n = BigInt(x);
    else if (typeof x === 'string' && /^-?\d{1,20}$/.test(x) && range[1] > 2n ** 32n) n = BigInt(x);
    if (n === undefined || n < range[0] || n > range[1]) out.push(`${p}: ${valueKind(x)} is not a ${f.type}`);
    return;
  }
  switch (f.type) {
    case 'double':
    case 'float':
      if (typeof x !== 'number') out.push(`${p}: ${valueKind(x)} is not a number (${f.type})`);
      return;
    case 'bool':
      if (typeof x !== 'boolean') out.push(`${p}: ${valueKind(x)} is not a bool`);
      return;
    case 'string':
      if (typeof x !== 'string') out.push(`${p}: ${valueKind(x)} is not a string`);
      return;
    case 'bytes':
      if (typeof x !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(x)) out.push(`${p}: ${valueKind(x)} is not base64 bytes`);
      return;
    default:
      out.push(`${p}: field type ${f.type} is not supported`);
  }
}
