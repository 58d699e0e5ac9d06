import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { envelope, isLegalKafkaTopic, KAFKA_TOPIC_MAX } from '../mapping.js';
import type { InboundMessage } from '../../mqtt/types.js';
import type { SchemaUse, ValueEncoder } from '../../registry/types.js';
import type { SparkplugDecoded, SparkplugDecoder } from '../../sparkplug/index.js';
import type { TransformResult } from '../types.js';
import { compileCondition, type Condition } from './conditions.js';
import { Fail, type Problems } from './fail.js';
import { dropPath, parsePath } from './paths.js';
import { compilePattern, type Pattern } from './pattern.js';
import { compileRequire, type RequireCheck } from './require.js';
import { isRegistryFormat, type Format, type RuleSpec } from './schema.js';
import { compileTemplate, type RenderContext, type Template, type TemplateScope } from './template.js';

/**
 * One compiled rule: its match pattern and the function that turns a matching message into
 * a TransformResult. Everything that can be decided from the routes file is decided here,
 * at load; `apply` only does per-message work.
 */
export interface CompiledRule {
  readonly name: string;
  readonly format: Format;
  readonly pattern: Pattern;
  /** Maps a message whose topic matched (`captures` from the pattern). Does not throw. */
  apply(msg: InboundMessage, captures: readonly string[]): TransformResult;
}

/** Shared by every record without route headers (the bridge adds its own mqtt.* ones). */
export const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

const TOPIC_CHARS = /^[a-zA-Z0-9._-]*$/;

/**
 * Checks a topic template at load: a constant must be a legal Kafka topic, and literal text
 * must only use characters Kafka allows (no placeholder value can repair a '/').
 */
export function checkTopicTemplate(t: Template, problems: Problems): void {
  if (t.constant !== undefined) {
    if (!isLegalKafkaTopic(t.constant)) {
      problems.add(`"${t.constant}" is not a legal Kafka topic (1-${KAFKA_TOPIC_MAX} of a-z A-Z 0-9 . _ -, not "." or "..")`);
    }
    return;
  }
  const bad = t.literals.find((l) => !TOPIC_CHARS.test(l));
  if (bad !== undefined) problems.add(`literal text "${bad}" has characters Kafka topics cannot contain (allowed: a-z A-Z 0-9 . _ -)`);
  if (t.literals.join('').length > KAFKA_TOPIC_MAX) problems.add(`literal text alone is longer than ${KAFKA_TOPIC_MAX} characters`);
}

/** What rules in a registry format (avro, protobuf, json_schema) need from the routes file. */
export interface RuleSchemas {
  /** Directory of the routes file: schema files are named relative to it. */
  readonly baseDir: string;
  /** Records a route's schema; returns its index (the `use` of ValueEncoder.encode). */
  add(use: SchemaUse): number;
  /** The encoder, once the bridge has given it (before the first message). */
  encoder(): ValueEncoder | undefined;
}

/**
 * Compiles a structurally valid rule; problems go to the rule's own collector. `sparkplug`
 * gives the decoder shared by every sparkplug rule of the file (its state belongs to the edge
 * nodes, not to a rule).
 */
export function compileRule(spec: RuleSpec, separator: string, maxMessageBytes: number, sparkplug: () => SparkplugDecoder, schemas?: RuleSchemas): CompiledRule | undefined {
  const p = spec.problems;
  const before = p.count;
  // The payload is parsed (a JSON object) on json routes and on the registry formats.
  const json = spec.format === 'json' || isRegistryFormat(spec.format);

  const pattern = spec.match === undefined ? undefined : compilePattern(spec.match, p.at('match'));
  // Without a valid pattern the segment names are unknown, and checking templates against
  // an empty list would report false "unknown variable" errors: they wait for a fixed match.
  const scope: TemplateScope = { segments: pattern?.names ?? [], payload: json, separator };
  const tpl = (source: string, at: Problems): Template | undefined =>
    pattern ? compileTemplate(source, scope, at) : undefined;

  const topicAt = p.at('topic');
  const topic = tpl(spec.topic, topicAt);
  if (topic) checkTopicTemplate(topic, topicAt);

  let key: Template | null | undefined = spec.key === null ? null : undefined;
  if (typeof spec.key === 'string') {
    key = tpl(spec.key, p.at('key'));
    if (key?.constant === '') p.at('key').add('renders empty; write "key: null" for records without a key');
  }

  const headers: [string, Template][] = [];
  for (const [name, source] of spec.headers) {
    const t = tpl(source, p.at('headers').at(name));
    if (t) headers.push([name, t]);
  }

  const needsJson = (field: string): boolean => {
    if (json) return true;
    p.at(field).add(`needs "format: json" (or avro, protobuf, json_schema: the payload is only parsed on those routes; format is ${spec.format})`);
    return false;
  };

  let filter: Condition | undefined;
  if (spec.filter !== undefined && needsJson('filter')) filter = compileCondition(spec.filter, p.at('filter'));
  let require: RequireCheck | undefined;
  if (spec.require !== undefined && needsJson('require')) require = compileRequire(spec.require, p.at('require'));
  const drop: (readonly string[])[] = [];
  if (spec.drop.length > 0 && needsJson('drop')) {
    spec.drop.forEach((d, i) => {
      const path = parsePath(d, p.at('drop').at(i), true);
      if (path) drop.push(path.levels);
    });
  }
  const enrich: [string, Template | string | number | boolean | null][] = [];
  if (spec.enrich.length > 0 && needsJson('enrich')) {
    for (const [field, v] of spec.enrich) {
      if (typeof v !== 'string') {
        enrich.push([field, v]);
        continue;
      }
      const t = tpl(v, p.at('enrich').at(field));
      if (t) enrich.push([field, t.constant ?? t]);
    }
  }

  let schemaUse: number | undefined;
  if (isRegistryFormat(spec.format) && spec.schema && schemas) {
    const s = spec.schema;
    let file: string | undefined;
    let text: string | undefined;
    if (s.file !== undefined) {
      file = isAbsolute(s.file) ? s.file : resolve(schemas.baseDir, s.file);
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        p.at('schema').add(`cannot read the schema file '${file}' (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    }
    if (p.count === before) {
      schemaUse = schemas.add({
        route: spec.name,
        format: spec.format,
        file,
        text,
        autoRegister: s.autoRegister,
        version: s.version,
        message: s.message,
        staticTopic: topic?.constant,
      });
    }
  }

  if (p.count > before || !pattern || !topic || (key === undefined && typeof spec.key === 'string')) return undefined;
  return buildRule({
    name: spec.name,
    format: spec.format,
    pattern,
    topic,
    key,
    headers,
    filter,
    require,
    drop,
    enrich,
    maxMessageBytes,
    sparkplug: spec.format === 'sparkplug' ? sparkplug() : undefined,
    schemaUse,
    encoder: schemas ? () => schemas.encoder() : () => undefined,
  });
}

interface RuleParts {
  readonly name: string;
  readonly format: Format;
  readonly pattern: Pattern;
  readonly topic: Template;
  /** undefined = the MQTT topic; null = no key. */
  readonly key: Template | null | undefined;
  readonly headers: readonly (readonly [string, Template])[];
  readonly filter: Condition | undefined;
  readonly require: RequireCheck | undefined;
  readonly drop: readonly (readonly string[])[];
  readonly enrich: readonly (readonly [string, Template | string | number | boolean | null])[];
  readonly maxMessageBytes: number;
  readonly sparkplug: SparkplugDecoder | undefined;
  /** Registry formats: the index of the rule's schema. */
  readonly schemaUse: number | undefined;
  readonly encoder: () => ValueEncoder | undefined;
}

/** Parses a json route's payload: must be non-empty UTF-8 holding a JSON object. */
export function parseJsonObject(payload: Buffer): Record<string, unknown> | Fail {
  if (payload.length === 0) return new Fail('empty_payload', 'json route needs a payload');
  if (!isUtf8(payload)) return new Fail('invalid_utf8', 'payload is not valid UTF-8');
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    return new Fail('invalid_json', 'payload is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    return new Fail('invalid_json', `payload is JSON ${Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v}, not an object`);
  }
  return v as Record<string, unknown>;
}

function buildRule(r: RuleParts): CompiledRule {
  const { name, maxMessageBytes } = r;
  const registry = isRegistryFormat(r.format);
  const json = r.format === 'json' || registry;
  const reserialize = r.drop.length > 0 || r.enrich.length > 0;
  const dead = (f: Fail): TransformResult => ({ kind: 'dead', route: name, reason: f.reason, detail: f.detail });
  const tooLarge = (n: number): TransformResult => ({
    kind: 'dead',
    route: name,
    reason: 'too_large',
    detail: `value is ${n} bytes, limit ${maxMessageBytes}`,
  });

  const apply = (msg: InboundMessage, captures: readonly string[]): TransformResult => {
    // Forwarded bytes are known before any work: refuse oversize early (no parse of a huge payload).
    if ((r.format === 'raw' || (r.format === 'json' && !reserialize)) && msg.payload.length > maxMessageBytes) return tooLarge(msg.payload.length);

    let payload: Record<string, unknown> | undefined;
    if (json) {
      const parsed = parseJsonObject(msg.payload);
      if (parsed instanceof Fail) return dead(parsed);
      payload = parsed;
      // Filter before require: messages the rule does not want are not "invalid".
      if (r.filter && !r.filter(payload)) return { kind: 'skip', route: name, reason: 'filtered' };
      if (r.require) {
        const f = r.require(payload);
        if (f) return dead(f);
      }
    }
    // Sparkplug: decoded (and BIRTH state updated) before anything can refuse the message, so a
    // BIRTH dead-lettered for its topic or size still defines the aliases that follow.
    let sp: SparkplugDecoded | undefined;
    if (r.sparkplug) {
      const d = r.sparkplug.decode(msg);
      if ('invalid' in d) return dead(new Fail('invalid_sparkplug', d.invalid));
      if ('tooLarge' in d) return { kind: 'dead', route: name, reason: 'too_large', detail: `decoded record would be at least ${d.tooLarge} bytes, limit ${maxMessageBytes}` };
      sp = d;
    }
    const ctx: RenderContext = { msg, captures, payload, uuid: undefined };

    const topic = r.topic.render(ctx);
    if (topic instanceof Fail) return dead(topic);
    if (!isLegalKafkaTopic(topic)) {
      return dead(new Fail('bad_topic', topic.length === 0 ? 'topic renders empty' : `topic renders to an illegal Kafka topic (${topic.length} chars)`));
    }

    let key: string | null;
    if (r.key === undefined && sp) key = sp.key;
    else if (r.key === undefined) {
      // An empty MQTT topic is a protocol violation (or an unresolved topic alias); an empty
      // key would still hash like any other, so refuse it like an empty rendered key.
      if (msg.topic.length === 0) return dead(new Fail('bad_key', 'key (the MQTT topic) is empty'));
      key = msg.topic;
    } else if (r.key === null) key = null;
    else {
      const k = r.key.render(ctx);
      if (k instanceof Fail) return dead(k);
      if (k.length === 0) return dead(new Fail('bad_key', 'key renders empty'));
      key = k;
    }

    let headers = NO_HEADERS;
    if (r.headers.length > 0) {
      const h: Record<string, string> = {};
      for (const [hn, t] of r.headers) {
        const v = t.render(ctx);
        if (v instanceof Fail) return dead(v);
        h[hn] = v;
      }
      headers = h;
    }
    // The decoder's sparkplug.* headers win over the rule's own.
    if (sp) headers = headers === NO_HEADERS ? sp.headers : { ...headers, ...sp.headers };

    if (registry) {
      const obj = reserialize ? reshapeObject(payload as Record<string, unknown>, ctx, r) : (payload as Record<string, unknown>);
      if (obj instanceof Fail) return dead(obj);
      return encoded(obj, topic, key, headers);
    }

    let value: Buffer;
    if (sp) value = sp.value;
    else if (r.format === 'raw' || (json && !reserialize)) value = msg.payload;
    else if (r.format === 'envelope') value = envelope(msg.topic, msg.payload);
    else {
      const out = reshape(payload as Record<string, unknown>, ctx, r);
      if (out instanceof Fail) return dead(out);
      value = out;
    }
    if (value.length > maxMessageBytes) return tooLarge(value.length);
    return { kind: 'record', route: name, topic, key, value, headers };
  };

  /** Registry formats: the value through the route's schema, or why not (yet). */
  const encoded = (obj: Record<string, unknown>, topic: string, key: string | null, headers: Readonly<Record<string, string>>): TransformResult => {
    const encoder = r.encoder();
    if (!encoder || r.schemaUse === undefined) return { kind: 'dead', route: name, reason: 'schema_refused', detail: 'no schema registry is configured for this route (SCHEMA_REGISTRY_URL)' };
    const out = encoder.encode(r.schemaUse, topic, obj);
    switch (out.kind) {
      case 'encoded':
        if (out.value.length > maxMessageBytes) return tooLarge(out.value.length);
        return { kind: 'record', route: name, topic, key, value: out.value, headers };
      case 'mismatch':
        return { kind: 'dead', route: name, reason: 'schema_mismatch', detail: out.detail };
      case 'refused':
        return { kind: 'dead', route: name, reason: 'schema_refused', detail: out.detail };
      case 'waiting':
        return { kind: 'deferred', route: name, topic, key, ready: out.ready, resolve: () => encoded(obj, topic, key, headers) };
    }
  };

  return { name, format: r.format, pattern: r.pattern, apply };
}

/** json route with drop/enrich: compute enrich values (they see the payload as received), drop, set, serialize. */
function reshape(payload: Record<string, unknown>, ctx: RenderContext, r: RuleParts): Buffer | Fail {
  const obj = reshapeObject(payload, ctx, r);
  if (obj instanceof Fail) return obj;
  try {
    return Buffer.from(JSON.stringify(obj), 'utf8');
  } catch {
    // JSON.stringify recurses: a payload nested some thousands deep overflows the stack.
    return new Fail('invalid_json', 'payload nested too deeply to re-serialize');
  }
}

/** drop/enrich applied to the parsed payload (in place). */
function reshapeObject(payload: Record<string, unknown>, ctx: RenderContext, r: RuleParts): Record<string, unknown> | Fail {
  const values: unknown[] = new Array<unknown>(r.enrich.length);
  for (let i = 0; i < r.enrich.length; i++) {
    const t = (r.enrich[i] as readonly [string, Template | string | number | boolean | null])[1];
    const v = t !== null && typeof t === 'object' ? t.value(ctx) : t;
    if (v instanceof Fail) return v;
    values[i] = v;
  }
  try {
    // A copied subtree must not lose the fields drop removes from the original.
    for (let i = 0; i < values.length; i++) if (typeof values[i] === 'object' && values[i] !== null) values[i] = structuredClone(values[i]);
    for (const levels of r.drop) dropPath(payload, levels);
    for (let i = 0; i < values.length; i++) payload[(r.enrich[i] as readonly [string, unknown])[0]] = values[i];
    return payload;
  } catch {
    // structuredClone recurses: a payload nested some thousands deep overflows the stack.
    return new Fail('invalid_json', 'payload nested too deeply to re-serialize');
  }
}
