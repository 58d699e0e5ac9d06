import mqtt, { type MqttClient } from 'mqtt';
import protobuf from 'protobufjs';
import { payloadType } from '../../src/sparkplug/index.js';

/**
 * Sparkplug B payloads and an edge node simulator for tests. Payloads are encoded with the same
 * protobuf definition the bridge decodes with (src/sparkplug/schema.ts); values are placed in
 * the fields the specification assigns to each data type. Nothing here imports vitest.
 */

/** Data type numbers (Sparkplug 3.0, section 6.4.16). */
export const DataType = {
  Int8: 1, Int16: 2, Int32: 3, Int64: 4, UInt8: 5, UInt16: 6, UInt32: 7, UInt64: 8, Float: 9, Double: 10, Boolean: 11, String: 12,
  DateTime: 13, Text: 14, UUID: 15, DataSet: 16, Bytes: 17, File: 18, Template: 19, PropertySet: 20, PropertySetList: 21,
  Int8Array: 22, Int16Array: 23, Int32Array: 24, Int64Array: 25, UInt8Array: 26, UInt16Array: 27, UInt32Array: 28, UInt64Array: 29,
  FloatArray: 30, DoubleArray: 31, BooleanArray: 32, StringArray: 33, DateTimeArray: 34,
} as const;

/** A plain object in the shape of the protobuf messages (snake_case), as PayloadType.fromObject takes it. */
export type PbObject = Record<string, unknown>;

/** Encodes a payload object (fields as in the .proto, 64-bit values as decimal strings or numbers). */
export function encodePayload(p: PbObject): Buffer {
  // fromObject ignores unknown keys: a misspelt field would silently vanish from a test payload.
  const PayloadType = payloadType();
  checkKeys(PayloadType, p, 'payload');
  const m = PayloadType.fromObject(p);
  const err = PayloadType.verify(m);
  if (err) throw new Error(`not a Sparkplug payload: ${err}`);
  return Buffer.from(PayloadType.encode(m).finish());
}

function checkKeys(type: protobuf.Type, o: PbObject, where: string): void {
  for (const [k, v] of Object.entries(o)) {
    const f = type.fields[k];
    if (!f) throw new Error(`${where}: ${type.name} has no field ${k}`);
    const sub = f.resolve().resolvedType;
    if (!(sub instanceof protobuf.Type) || v === null || v === undefined) continue;
    for (const [i, item] of (f.repeated ? (v as PbObject[]) : [v as PbObject]).entries()) checkKeys(sub, item, `${where}.${k}${f.repeated ? `[${i}]` : ''}`);
  }
}

/** Little-endian packing of the array data types (specification 6.4.17). */
export function packArray(datatype: number, values: readonly unknown[]): Buffer {
  switch (datatype) {
    case DataType.BooleanArray: {
      const b = Buffer.alloc(4 + Math.ceil(values.length / 8));
      b.writeUInt32LE(values.length, 0);
      values.forEach((v, i) => {
        if (v) b[4 + (i >> 3)]! |= 0x80 >> (i & 7);
      });
      return b;
    }
    case DataType.StringArray:
      return Buffer.concat(values.map((v) => Buffer.from(`${String(v)}\u0000`, 'utf8')));
  }
  const size = { 22: 1, 23: 2, 24: 4, 25: 8, 26: 1, 27: 2, 28: 4, 29: 8, 30: 4, 31: 8, 34: 8 }[datatype];
  if (!size) throw new Error(`not an array type: ${datatype}`);
  const b = Buffer.alloc(size * values.length);
  values.forEach((v, i) => {
    const o = i * size;
    switch (datatype) {
      case 22: b.writeInt8(v as number, o); break;
      case 23: b.writeInt16LE(v as number, o); break;
      case 24: b.writeInt32LE(v as number, o); break;
      case 25: b.writeBigInt64LE(BigInt(v as string), o); break;
      case 26: b.writeUInt8(v as number, o); break;
      case 27: b.writeUInt16LE(v as number, o); break;
      case 28: b.writeUInt32LE(v as number, o); break;
      case 29: b.writeBigUInt64LE(BigInt(v as string), o); break;
      case 30: b.writeFloatLE(v as number, o); break;
      case 31: b.writeDoubleLE(v as number, o); break;
      default: b.writeBigInt64LE(BigInt(v as number), o); // 34 DateTimeArray
    }
  });
  return b;
}

/** The value field for a scalar of this data type, as the specification assigns it. */
export function valueField(datatype: number, value: unknown): PbObject {
  switch (datatype) {
    case DataType.Int8:
    case DataType.Int16:
    case DataType.Int32:
      return { int_value: (value as number) >>> 0 }; // two's complement in a uint32
    case DataType.UInt8:
    case DataType.UInt16:
    case DataType.UInt32:
      return { int_value: value as number };
    case DataType.Int64:
      return { long_value: BigInt.asUintN(64, BigInt(value as string | number)).toString() };
    case DataType.UInt64:
    case DataType.DateTime:
      return { long_value: String(value) };
    case DataType.Float:
      return { float_value: value };
    case DataType.Double:
      return { double_value: value };
    case DataType.Boolean:
      return { boolean_value: value };
    case DataType.String:
    case DataType.Text:
    case DataType.UUID:
      return { string_value: value };
    case DataType.Bytes:
    case DataType.File:
      return { bytes_value: value };
    default:
      if (datatype >= 22 && datatype <= 34) return { bytes_value: packArray(datatype, value as unknown[]) };
      throw new Error(`valueField: datatype ${datatype} needs its own encoding`);
  }
}

/** A metric definition for the simulator: name, alias, datatype, value (or null). */
export interface SimMetric {
  readonly name: string;
  readonly alias: number;
  readonly datatype: number;
}

/** A metric object for a payload: by name and/or alias, with or without datatype. */
export function metric(m: { name?: string; alias?: number | string; datatype?: number; timestamp?: number }, value: unknown): PbObject {
  const o: PbObject = {};
  if (m.name !== undefined) o.name = m.name;
  if (m.alias !== undefined) o.alias = String(m.alias);
  if (m.timestamp !== undefined) o.timestamp = String(m.timestamp);
  if (m.datatype !== undefined) o.datatype = m.datatype;
  if (value === null) o.is_null = true;
  else if (m.datatype !== undefined) Object.assign(o, valueField(m.datatype, value));
  return o;
}

export interface EdgeNodeOptions {
  readonly url: string;
  readonly group: string;
  readonly node: string;
  /** Publishes in flight at once (QoS 1). Default 100. */
  readonly window?: number;
}

/**
 * An edge node: keeps `seq` (0-255, NBIRTH = 0) and `bdSeq`, sets its NDEATH as the MQTT Will,
 * and publishes QoS 1 in order on one connection (so the broker delivers them in that order).
 */
export class EdgeNode {
  private client: MqttClient | undefined;
  private seq = 0;
  bdSeq = 0;
  readonly inflight = new Set<Promise<unknown>>();
  published = 0;

  constructor(readonly opts: EdgeNodeOptions) {}

  topic(type: string, device?: string): string {
    return `spBv1.0/${this.opts.group}/${type}/${this.opts.node}${device === undefined ? '' : `/${device}`}`;
  }

  async connect(): Promise<void> {
    const will = encodePayload({ timestamp: String(Date.now()), metrics: [metric({ name: 'bdSeq', datatype: DataType.Int64 }, this.bdSeq)] });
    this.client = await mqtt.connectAsync(this.opts.url, {
      clientId: `edge-${this.opts.group}-${this.opts.node}-${process.pid}-${Date.now()}`,
      will: { topic: this.topic('NDEATH'), payload: will, qos: 1, retain: false },
    });
  }

  /** NBIRTH with these metrics (names, aliases, datatypes, values) plus bdSeq; seq restarts at 0. */
  async nbirth(defs: readonly SimMetric[], values: readonly unknown[]): Promise<void> {
    this.seq = 0;
    const metrics = [metric({ name: 'bdSeq', datatype: DataType.Int64 }, this.bdSeq), ...defs.map((d, i) => metric(d, values[i]))];
    await this.send('NBIRTH', undefined, metrics);
  }

  async dbirth(device: string, defs: readonly SimMetric[], values: readonly unknown[]): Promise<void> {
    await this.send('DBIRTH', device, defs.map((d, i) => metric(d, values[i])));
  }

  /** NDATA/DDATA by alias only (no name, no datatype), as the specification recommends. */
  async data(device: string | undefined, defs: readonly SimMetric[], values: readonly unknown[]): Promise<void> {
    await this.send(device === undefined ? 'NDATA' : 'DDATA', device, defs.map((d, i) => ({ alias: String(d.alias), ...valueField(d.datatype, values[i]) })));
  }

  async ddeath(device: string): Promise<void> {
    await this.send('DDEATH', device, []);
  }

  /** NDEATH published by the node itself (as on a clean disconnect), then bdSeq moves on. */
  async ndeath(): Promise<void> {
    const payload = encodePayload({ timestamp: String(Date.now()), metrics: [metric({ name: 'bdSeq', datatype: DataType.Int64 }, this.bdSeq)] });
    await this.publish(this.topic('NDEATH'), payload);
    this.bdSeq = (this.bdSeq + 1) & 0xff;
  }

  private async send(type: string, device: string | undefined, metrics: PbObject[]): Promise<void> {
    const payload = encodePayload({ timestamp: String(Date.now()), seq: String(this.seq), metrics });
    this.seq = (this.seq + 1) & 0xff;
    await this.publish(this.topic(type, device), payload);
  }

  private async publish(topic: string, payload: Buffer): Promise<void> {
    if (!this.client) throw new Error('EdgeNode: connect() first');
    const p = this.client.publishAsync(topic, payload, { qos: 1 });
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
    this.published++;
    if (this.inflight.size >= (this.opts.window ?? 100)) await Promise.race(this.inflight);
  }

  /** Waits until the broker acknowledged every publish. */
  async flush(): Promise<void> {
    await Promise.all(this.inflight);
  }

  /** Disconnects cleanly (the broker does not publish the Will). */
  async close(): Promise<void> {
    await this.flush();
    await this.client?.endAsync();
    this.client = undefined;
  }
}
