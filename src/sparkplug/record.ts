import type { Birth } from './births.js';
import { has, type PbDataSet, type PbMetaData, type PbMetric, type PbParameter, type PbPayload, type PbPropertySet, type PbPropertyValue, type PbTemplate } from './schema.js';
import { arrayValue, datatypeName, DT, isArrayType, isKnownType, num64, scalarValue, SparkplugDataError, SparkplugTooLarge, type Json, type RecordBudget } from './values.js';

/**
 * Builds the JSON record of a decoded Sparkplug payload (docs/routes.md "format: sparkplug"):
 *
 *     { "group", "message_type", "edge_node", "device", "timestamp", "seq", ["uuid"], ["body"],
 *       "metrics": [ { "name", "alias", "timestamp", "datatype", "type", "is_null",
 *                      ["is_historical"], ["is_transient"], "value", ["properties"], ["metadata"] } ] }
 *
 * Top-level metric names come from the message, or else from the BIRTH certificate by alias;
 * so does a datatype the message leaves out. Metrics nested in templates are decoded as sent.
 */

/** Deeper nesting (templates in templates, property sets in property sets) is refused. */
const MAX_DEPTH = 32;

export interface RecordHead {
  readonly group: string;
  readonly message_type: string;
  readonly edge_node: string;
  readonly device: string | null;
}

export interface BuiltRecord {
  readonly record: { [k: string]: Json };
  /** Top-level metrics whose name neither the message nor the BIRTH gives. */
  readonly unresolved: number;
  /** Their aliases (decimal), for the log line. */
  readonly unresolvedAliases: string[];
}

/** Sets `k` as an own property even when it is "__proto__" (names come from the network). */
function put(o: { [k: string]: Json }, k: string, v: Json): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/**
 * Builds the record. Throws SparkplugDataError when a value cannot be decoded as its type says,
 * SparkplugTooLarge when its array metrics alone would make it larger than `maxBytes`.
 */
export function buildRecord(head: RecordHead, p: PbPayload, birth: Birth | undefined, maxBytes = Number.POSITIVE_INFINITY): BuiltRecord {
  const budget: RecordBudget = { left: maxBytes };
  const unresolvedAliases: string[] = [];
  let unresolved = 0;
  const metrics: Json[] = new Array<Json>(p.metrics.length);
  for (let i = 0; i < p.metrics.length; i++) {
    const m = p.metrics[i] as PbMetric;
    let name: string | null = has(m, 'name') ? (m.name as string) : null;
    const aliasJson = has(m, 'alias') ? num64(m.alias!) : null;
    const alias = aliasJson === null ? null : String(aliasJson);
    let datatype: number | null = has(m, 'datatype') ? (m.datatype as number) : null;
    if (name === null && alias !== null) {
      const known = birth?.byAlias.get(alias);
      if (known) {
        name = known.name;
        datatype ??= known.datatype;
      }
    } else if (name !== null && datatype === null) {
      datatype = birth?.typeByName.get(name) ?? null;
    }
    if (name === null) {
      unresolved++;
      if (alias !== null && unresolvedAliases.length < 20) unresolvedAliases.push(alias);
    }
    metrics[i] = metric(m, name, datatype, 0, `metric ${i}`, budget, aliasJson);
  }
  const record: { [k: string]: Json } = {
    group: head.group,
    message_type: head.message_type,
    edge_node: head.edge_node,
    device: head.device,
    timestamp: has(p, 'timestamp') ? num64(p.timestamp!) : null,
    seq: has(p, 'seq') ? num64(p.seq!) : null,
  };
  if (has(p, 'uuid')) record.uuid = p.uuid as string;
  if (has(p, 'body')) record.body = Buffer.from(p.body as Uint8Array).toString('base64');
  record.metrics = metrics;
  return { record, unresolved, unresolvedAliases };
}

function metric(m: PbMetric, name: string | null, datatype: number | null, depth: number, where: string, budget: RecordBudget, alias: Json = has(m, 'alias') ? num64(m.alias!) : null): Json {
  if (depth > MAX_DEPTH) throw new SparkplugDataError(`${where}: nested more than ${MAX_DEPTH} levels deep`);
  const isNull = m.is_null === true;
  const o: { [k: string]: Json } = {
    name,
    alias,
    timestamp: has(m, 'timestamp') ? num64(m.timestamp!) : null,
    datatype,
    type: datatype === null ? null : datatypeName(datatype),
    is_null: isNull,
  };
  if (m.is_historical === true) o.is_historical = true;
  if (m.is_transient === true) o.is_transient = true;
  o.value = isNull ? null : metricValue(m, datatype, depth, where, budget);
  if (has(m, 'properties')) o.properties = propertySet(m.properties!, depth + 1, `${where} properties`);
  if (has(m, 'metadata')) o.metadata = metaData(m.metadata!);
  return o;
}

/** The field each composite datatype travels in (an unknown datatype takes whatever is there). */
function fits(datatype: number | null, field: string): boolean {
  if (!isKnownType(datatype)) return true;
  if (field === 'bytes_value') return datatype === DT.Bytes || datatype === DT.File || isArrayType(datatype);
  if (field === 'dataset_value') return datatype === DT.DataSet;
  return datatype === DT.Template;
}

function metricValue(m: PbMetric, datatype: number | null, depth: number, where: string, budget: RecordBudget): Json {
  const field = m.value;
  if ((field === 'bytes_value' || field === 'dataset_value' || field === 'template_value') && !fits(datatype, field)) {
    throw new SparkplugDataError(`${where}: a ${datatypeName(datatype as number)} value cannot travel in ${field}`);
  }
  switch (field) {
    case 'bytes_value': {
      const bytes = m.bytes_value as Uint8Array;
      if (isArrayType(datatype)) {
        try {
          return arrayValue(bytes, datatype as number, budget);
        } catch (err) {
          if (err instanceof SparkplugTooLarge) throw err;
          throw new SparkplugDataError(`${where}: ${(err as Error).message}`);
        }
      }
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
    }
    case 'dataset_value':
      return dataSet(m.dataset_value!, where);
    case 'template_value':
      return template(m.template_value!, depth + 1, `${where} template`, budget);
    default:
      return scalarValue(m, datatype, where) ?? null;
  }
}

function dataSet(d: PbDataSet, where: string): Json {
  const types = d.types;
  if (d.columns.length !== types.length) throw new SparkplugDataError(`${where}: DataSet has ${d.columns.length} columns but ${types.length} types`);
  // An element without a value (a null cell) is null.
  const rows: Json[] = d.rows.map((r) => r.elements.map((e, i) => scalarValue(e, types[i] ?? null, `${where} DataSet column ${i}`) ?? null));
  return {
    num_of_columns: has(d, 'num_of_columns') ? num64(d.num_of_columns!) : d.columns.length,
    columns: [...d.columns],
    types: types.map(datatypeName),
    rows,
  };
}

function template(t: PbTemplate, depth: number, where: string, budget: RecordBudget): Json {
  const o: { [k: string]: Json } = {};
  if (has(t, 'version')) o.version = t.version as string;
  if (has(t, 'template_ref')) o.template_ref = t.template_ref as string;
  o.is_definition = t.is_definition === true;
  o.metrics = t.metrics.map((m, i) => {
    const name = has(m, 'name') ? (m.name as string) : null;
    const dt = has(m, 'datatype') ? (m.datatype as number) : null;
    return metric(m, name, dt, depth, `${where} metric ${i}`, budget);
  });
  o.parameters = t.parameters.map((p, i) => parameter(p, `${where} parameter ${i}`));
  return o;
}

function parameter(p: PbParameter, where: string): Json {
  const t = has(p, 'type') ? (p.type as number) : null;
  return { name: has(p, 'name') ? (p.name as string) : null, type: t === null ? null : datatypeName(t), value: scalarValue(p, t, where) ?? null };
}

function propertySet(s: PbPropertySet, depth: number, where: string): Json {
  if (depth > MAX_DEPTH) throw new SparkplugDataError(`${where}: nested more than ${MAX_DEPTH} levels deep`);
  if (s.keys.length !== s.values.length) throw new SparkplugDataError(`${where}: ${s.keys.length} keys but ${s.values.length} values`);
  const o: { [k: string]: Json } = {};
  for (let i = 0; i < s.keys.length; i++) put(o, s.keys[i] as string, propertyValue(s.values[i] as PbPropertyValue, depth, where));
  return o;
}

function propertyValue(v: PbPropertyValue, depth: number, where: string): Json {
  const t = has(v, 'type') ? (v.type as number) : null;
  const o: { [k: string]: Json } = { type: t === null ? null : datatypeName(t) };
  if (v.is_null === true) {
    o.is_null = true;
    o.value = null;
    return o;
  }
  switch (v.value) {
    case 'propertyset_value':
      o.value = propertySet(v.propertyset_value!, depth + 1, where);
      break;
    case 'propertysets_value':
      o.value = v.propertysets_value!.propertyset.map((s) => propertySet(s, depth + 1, where));
      break;
    default:
      o.value = scalarValue(v, t, where) ?? null;
  }
  return o;
}

function metaData(m: PbMetaData): Json {
  const o: { [k: string]: Json } = {};
  if (has(m, 'is_multi_part')) o.is_multi_part = m.is_multi_part as boolean;
  if (has(m, 'content_type')) o.content_type = m.content_type as string;
  if (has(m, 'size')) o.size = num64(m.size!);
  if (has(m, 'seq')) o.seq = num64(m.seq!);
  if (has(m, 'file_name')) o.file_name = m.file_name as string;
  if (has(m, 'file_type')) o.file_type = m.file_type as string;
  if (has(m, 'md5')) o.md5 = m.md5 as string;
  if (has(m, 'description')) o.description = m.description as string;
  return o;
}
