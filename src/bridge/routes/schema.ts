import { REGISTRY_FORMATS, type RegistryFormat } from '../../registry/types.js';
import type { Problems } from './fail.js';

/**
 * The routes file: its shape, and the structural checks done before anything is compiled.
 * (Patterns, templates, conditions and types are checked where they are compiled.)
 *
 * ```yaml
 * # What happens to a message no rule matches (default: dead_letter).
 * #   skip              -> counted as skipped (reason "unmatched"), not written anywhere
 * #   dead_letter       -> dead letter, reason "unmatched"
 * #   { topic: <tpl> }  -> written raw to that topic, key = MQTT topic. The template may use
 * #                        topic, topic_kafka, uuid, message_id, received_at, qos, retain.
 * unmatched: dead_letter
 *
 * # Rules, tried in order; the first whose `match` fits the MQTT topic handles the message.
 * routes:
 *   - name: cp-events          # optional; default "rule-<index>". Metric label: letters, digits,
 *                              # '_', '.', '-' (max 64), unique, not "unmatched".
 *     match: a/{badge_id}/+/#  # MQTT filter; {name} = one level captured as a variable.
 *     topic: ingress-{event}   # Kafka topic template (default "{topic_kafka}").
 *     key: "{badge_id}"        # key template (default: the MQTT topic); null = no key.
 *     format: json             # raw (default) | envelope | json | sparkplug | avro | protobuf | json_schema
 *     schema: heartbeat.avsc   # avro, protobuf, json_schema: the schema file (beside the routes file), or
 *                              # { file, auto_register: true, version: latest|N, message: pkg.Name }
 *     # json (and avro, protobuf, json_schema):
 *     filter: { message: "x" } # condition; false -> skipped (reason "filtered")
 *     require: { ts: number }  # field: type or [types]; missing_field / wrong_type
 *     drop: [secret, "meta.*.raw"]   # payload paths removed from the value
 *     enrich: { badge_id: "{badge_id}", n: 1 }   # top-level fields set after drop
 *     headers: { source: "{badge_id}" }          # Kafka headers (templates); any format
 *     description: free text   # ignored; for people
 *
 * # Keys starting with "x-" at the top level are ignored: use them for YAML anchors
 * # (`x-common: &common {...}` and `<<: *common` in a mapping).
 * ```
 *
 * On a json route the pipeline is: parse -> filter -> require -> render templates (they
 * see the payload as received) -> drop -> enrich -> serialize. Without drop and enrich the
 * payload bytes are forwarded unchanged. See docs/routes.md.
 */

/**
 * How a rule builds the record value. `sparkplug` decodes Sparkplug B (src/sparkplug): the value
 * is a JSON record with metric names resolved from BIRTH certificates, the key defaults to
 * `group/edge_node[/device]`.
 */
export type Format = 'raw' | 'envelope' | 'json' | 'sparkplug' | RegistryFormat;
/** Every format, in the order error messages list them. */
export const FORMATS: readonly Format[] = ['raw', 'envelope', 'json', 'sparkplug', ...REGISTRY_FORMATS];

/** True for the formats written through a schema registry (the payload is parsed as on json routes). */
export function isRegistryFormat(f: Format): f is RegistryFormat {
  return (REGISTRY_FORMATS as readonly string[]).includes(f);
}

/** A rule's `schema`, after the structural checks (the file is read when the rule is compiled). */
export interface SchemaSpec {
  /** As written, relative to the routes file's directory unless absolute. */
  readonly file?: string | undefined;
  readonly autoRegister: boolean;
  readonly version?: number | 'latest' | undefined;
  readonly message?: string | undefined;
}

/** The `unmatched` setting. */
export type UnmatchedSpec = { readonly action: 'skip' } | { readonly action: 'dead_letter' } | { readonly action: 'topic'; readonly topic: string };

/** One rule after the structural checks. Fields that failed them are left out. */
export interface RuleSpec {
  readonly index: number;
  readonly name: string;
  /** Where problems about this rule are reported ("routes[2] (cp-events)"). */
  readonly problems: Problems;
  readonly match?: string | undefined;
  readonly topic: string;
  /** undefined = default (the MQTT topic); null = no key. */
  readonly key: string | null | undefined;
  readonly format: Format;
  readonly enrich: ReadonlyArray<readonly [string, string | number | boolean | null]>;
  readonly drop: readonly string[];
  /** Raw `require` / `filter` nodes (undefined when absent), compiled elsewhere. */
  readonly require: unknown;
  readonly filter: unknown;
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** avro, protobuf, json_schema: where the schema comes from. */
  readonly schema?: SchemaSpec | undefined;
}

/** A routes document after the structural checks. */
export interface RoutesSpec {
  readonly unmatched: UnmatchedSpec;
  readonly rules: readonly RuleSpec[];
}

const TOP_KEYS = ['unmatched', 'routes'];
const RULE_KEYS = ['name', 'description', 'match', 'topic', 'key', 'format', 'schema', 'enrich', 'drop', 'require', 'filter', 'headers'];
const SCHEMA_KEYS = ['file', 'auto_register', 'version', 'message'];
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** The `route` of results for messages no rule matches; reserved as a rule name. */
export const UNMATCHED_ROUTE = 'unmatched';
/** Header names the bridge writes itself on every record. */
const RESERVED_HEADER_PREFIX = 'mqtt.';

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * YAML reads `key: {badge_id}` (unquoted) as a one-entry mapping `{badge_id: null}`.
 * Recognise that so the error can say "quote it" instead of "must be a string".
 */
function unquotedTemplate(v: unknown): string | undefined {
  if (!isMapping(v)) return undefined;
  const keys = Object.keys(v);
  return keys.length === 1 && v[keys[0] as string] === null ? `{${keys[0]}}` : undefined;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (isMapping(v)) return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function expectString(v: unknown, problems: Problems, what = 'a string'): string | undefined {
  if (typeof v === 'string') return v;
  const tpl = unquotedTemplate(v);
  if (tpl !== undefined) problems.add(`YAML read the unquoted template ${tpl} as a mapping: quote it ("${tpl}")`);
  else problems.add(`must be ${what}, got ${describe(v)}`);
  return undefined;
}

/** Levenshtein distance, for "did you mean" on misspelt field names. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j] as number;
      row[j] = Math.min(cur + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length] as number;
}

function unknownKeys(obj: Record<string, unknown>, allowed: readonly string[], problems: Problems, extensions: boolean): void {
  for (const k of Object.keys(obj)) {
    if (allowed.includes(k) || (extensions && k.startsWith('x-'))) continue;
    const near = allowed.find((a) => distance(a, k) <= 2);
    problems.add(`unknown field "${k}"${near ? ` (did you mean "${near}"?)` : ''}; fields: ${allowed.join(', ')}`);
  }
}

/** Structural validation of a parsed routes document. Problems go to `problems`. */
export function readRoutesSpec(doc: unknown, problems: Problems): RoutesSpec {
  const rules: RuleSpec[] = [];
  if (!isMapping(doc)) {
    problems.add(`the routes file must be a mapping with "routes" (and optionally "unmatched"), got ${describe(doc)}`);
    return { unmatched: { action: 'dead_letter' }, rules };
  }
  unknownKeys(doc, TOP_KEYS, problems, true);
  const unmatched = readUnmatched(doc.unmatched, problems.at('unmatched'));

  const list = doc.routes;
  if (list === undefined) problems.add('"routes" is missing: list at least one rule');
  else if (!Array.isArray(list)) problems.at('routes').add(`must be a list of rules, got ${describe(list)}`);
  else if (list.length === 0) problems.at('routes').add('must list at least one rule');
  else {
    const seen = new Map<string, number>();
    list.forEach((node, index) => {
      const rule = readRule(node, index, problems);
      if (!rule) return;
      const first = seen.get(rule.name);
      if (first !== undefined) rule.problems.at('name').add(`"${rule.name}" is already the name of routes[${first}]; names must be unique (they are metric labels)`);
      else seen.set(rule.name, index);
      rules.push(rule);
    });
  }
  return { unmatched, rules };
}

function readUnmatched(v: unknown, problems: Problems): UnmatchedSpec {
  if (v === undefined || v === 'dead_letter') return { action: 'dead_letter' };
  if (v === 'skip') return { action: 'skip' };
  if (isMapping(v) && Object.keys(v).length === 1 && 'topic' in v) {
    const topic = expectString(v.topic, problems.at('topic'));
    if (topic !== undefined) return { action: 'topic', topic };
    return { action: 'dead_letter' };
  }
  problems.add(`must be skip, dead_letter or { topic: <kafka topic> }, got ${describe(v)}`);
  return { action: 'dead_letter' };
}

function readRule(node: unknown, index: number, root: Problems): RuleSpec | undefined {
  if (!isMapping(node)) {
    root.scope(`routes[${index}]`).add(`a rule must be a mapping with at least "match", got ${describe(node)}`);
    return undefined;
  }
  let name = `rule-${index}`;
  const rawName = node.name;
  let nameProblem: string | undefined;
  if (rawName !== undefined) {
    if (typeof rawName === 'string' && NAME.test(rawName) && rawName !== UNMATCHED_ROUTE) name = rawName;
    else if (rawName === UNMATCHED_ROUTE) nameProblem = `"${UNMATCHED_ROUTE}" is reserved for messages no rule matches`;
    else nameProblem = `must be 1-64 letters, digits, '_', '.' or '-' starting with a letter or digit (it is a metric label), got ${describe(rawName)}`;
  }
  const label = typeof rawName === 'string' && rawName.length > 0 && rawName.length <= 64 ? `routes[${index}] (${rawName})` : `routes[${index}]`;
  const problems = root.scope(label);
  if (nameProblem) problems.at('name').add(nameProblem);
  unknownKeys(node, RULE_KEYS, problems, false);
  if (node.description !== undefined) expectString(node.description, problems.at('description'));

  let match: string | undefined;
  if (node.match === undefined) problems.add('"match" is missing: give the MQTT topic pattern this rule handles');
  else match = expectString(node.match, problems.at('match'));

  let topic = '{topic_kafka}';
  if (node.topic !== undefined) topic = expectString(node.topic, problems.at('topic'), 'a Kafka topic template string') ?? topic;

  let key: string | null | undefined;
  if (node.key === null) key = null;
  else if (node.key !== undefined) key = expectString(node.key, problems.at('key'), 'a key template string or null');

  let format: Format = 'raw';
  if (node.format !== undefined) {
    if (typeof node.format === 'string' && (FORMATS as readonly string[]).includes(node.format)) format = node.format as Format;
    else problems.at('format').add(`must be one of ${FORMATS.join(', ')}, got ${describe(node.format)}`);
  }

  const enrich: [string, string | number | boolean | null][] = [];
  if (node.enrich !== undefined) {
    const at = problems.at('enrich');
    if (!isMapping(node.enrich)) at.add(`must be a mapping of field to value template, got ${describe(node.enrich)}`);
    else
      for (const [k, v] of Object.entries(node.enrich)) {
        if (k === '__proto__') at.add('"__proto__" cannot be a field name');
        else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || v === null) enrich.push([k, v]);
        else expectString(v, at.at(k), 'a template string, number, boolean or null');
      }
  }

  const drop: string[] = [];
  if (node.drop !== undefined) {
    const at = problems.at('drop');
    if (!Array.isArray(node.drop)) at.add(`must be a list of payload paths, got ${describe(node.drop)}`);
    else
      node.drop.forEach((d, i) => {
        const s = expectString(d, at.at(i), 'a payload path string');
        if (s !== undefined) drop.push(s);
      });
  }

  const headers: [string, string][] = [];
  if (node.headers !== undefined) {
    const at = problems.at('headers');
    if (!isMapping(node.headers)) at.add(`must be a mapping of header name to value template, got ${describe(node.headers)}`);
    else
      for (const [k, v] of Object.entries(node.headers)) {
        if (k.length === 0) at.add('a header name must not be empty');
        else if (k === '__proto__') at.add('"__proto__" cannot be a header name');
        else if (k.toLowerCase().startsWith(RESERVED_HEADER_PREFIX)) at.at(k).add(`header names starting with "${RESERVED_HEADER_PREFIX}" are written by the bridge itself`);
        else if (typeof v === 'number' || typeof v === 'boolean') headers.push([k, String(v)]);
        else {
          const s = expectString(v, at.at(k), 'a template string');
          if (s !== undefined) headers.push([k, s]);
        }
      }
  }

  const schema = readSchema(node.schema, format, problems.at('schema'));

  return { index, name, problems, match, topic, key, format, enrich, drop, require: node.require, filter: node.filter, headers, schema };
}

/** `schema: file.avsc` or `schema: { file, auto_register, version, message }`; required by the registry formats, refused by the others. */
function readSchema(v: unknown, format: Format, problems: Problems): SchemaSpec | undefined {
  if (!isRegistryFormat(format)) {
    if (v !== undefined) problems.add(`only the formats ${REGISTRY_FORMATS.join(', ')} take a schema (format is ${format})`);
    return undefined;
  }
  if (v === undefined) {
    problems.add(`format ${format} needs a schema: a file (.${format === 'avro' ? 'avsc' : format === 'protobuf' ? 'proto' : 'json'}) beside the routes file, or { auto_register: false, version: latest }`);
    return undefined;
  }
  if (typeof v === 'string') {
    if (v.trim() === '') problems.add('must name a schema file');
    return { file: v, autoRegister: true };
  }
  if (!isMapping(v)) {
    problems.add(`must be a schema file name or a mapping (${SCHEMA_KEYS.join(', ')}), got ${describe(v)}`);
    return undefined;
  }
  unknownKeys(v, SCHEMA_KEYS, problems, false);
  const before = problems.count;
  const file = v.file === undefined ? undefined : expectString(v.file, problems.at('file'), 'a schema file name');
  let autoRegister = true;
  if (v.auto_register !== undefined) {
    if (typeof v.auto_register === 'boolean') autoRegister = v.auto_register;
    else problems.at('auto_register').add(`must be true or false, got ${describe(v.auto_register)}`);
  }
  let version: number | 'latest' | undefined;
  if (v.version !== undefined) {
    if (v.version === 'latest' || (typeof v.version === 'number' && Number.isSafeInteger(v.version) && v.version > 0)) version = v.version;
    else problems.at('version').add(`must be latest or a version number (1, 2, ...), got ${describe(v.version)}`);
  }
  let message: string | undefined;
  if (v.message !== undefined) {
    message = expectString(v.message, problems.at('message'), 'a message name (package.Message)');
    if (format !== 'protobuf') problems.at('message').add('only protobuf schemas name a message');
  }
  if (problems.count > before) return undefined;
  if (autoRegister && version !== undefined) problems.at('version').add('a version is looked up, not registered: set auto_register: false with it');
  else if (autoRegister && file === undefined) problems.at('file').add('auto_register needs the schema file to register');
  else if (!autoRegister && version === undefined && file === undefined) problems.add('with auto_register: false give the version to look up (latest or a number), or the file whose schema the subject must have');
  else if (version !== undefined && file !== undefined) problems.add('give either file (registered or looked up) or version (the registry\'s schema), not both');
  return { file, autoRegister, version, message };
}
