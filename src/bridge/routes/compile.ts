import { ConfigError } from '../../errors.js';
import { isLegalKafkaTopic } from '../mapping.js';
import type { InboundMessage } from '../../mqtt/types.js';
import type { SchemaUse, ValueEncoder } from '../../registry/types.js';
import { SparkplugDecoder } from '../../sparkplug/index.js';
import type { Transform, TransformDeps, TransformResult } from '../types.js';
import { Fail, Problems } from './fail.js';
import { subscriptionsFor } from './pattern.js';
import { checkTopicTemplate, compileRule, NO_HEADERS, type CompiledRule, type RuleSchemas } from './rule.js';
import { isRegistryFormat, readRoutesSpec, UNMATCHED_ROUTE, type UnmatchedSpec } from './schema.js';
import { compileTemplate, type Template } from './template.js';

/** Settings the routes compiler takes from the environment configuration. */
export interface RoutesOptions {
  /** KAFKA_TOPIC_SEPARATOR: replaces '/' in `{topic_kafka}` and the `kafka` filter. */
  readonly separator: '_' | '.' | '-';
  /** Records whose value would exceed this many bytes are dead-lettered as `too_large`. */
  readonly maxMessageBytes: number;
  /** Where schema files (avro, protobuf, json_schema routes) are looked for: the routes file's directory. Default: the working directory. */
  readonly baseDir?: string | undefined;
}

/** A Transform built from a routes file, plus the names it can report (bounded metric labels). */
export interface RoutesTransform extends Transform {
  /** Every `route` value apply() can return: the rule names, then "unmatched". */
  readonly routeNames: readonly string[];
  readonly schemaUses: readonly SchemaUse[];
  useEncoder(encoder: ValueEncoder): void;
}

/**
 * Validates and compiles a parsed routes document. `source` names it in error messages
 * (usually the file path). Throws ConfigError (code BRIDGE_ERR_ROUTES) listing every
 * problem found; the returned transform never throws.
 */
export function compileRoutes(doc: unknown, source: string, opts: RoutesOptions): RoutesTransform {
  const problems = Problems.root(source);
  if (!(Number.isSafeInteger(opts.maxMessageBytes) && opts.maxMessageBytes > 0)) {
    problems.add(`maxMessageBytes must be a positive integer, got ${String(opts.maxMessageBytes)}`);
  }
  const spec = readRoutesSpec(doc, problems);
  const rules: CompiledRule[] = [];
  let decoder: SparkplugDecoder | undefined;
  const sparkplug = (): SparkplugDecoder => (decoder ??= new SparkplugDecoder(opts.maxMessageBytes));
  const uses: SchemaUse[] = [];
  let encoder: ValueEncoder | undefined;
  const schemas: RuleSchemas = {
    baseDir: opts.baseDir ?? process.cwd(),
    add: (u) => uses.push(u) - 1,
    encoder: () => encoder,
  };
  for (const r of spec.rules) {
    const c = compileRule(r, opts.separator, opts.maxMessageBytes, sparkplug, schemas);
    if (c) rules.push(c);
  }
  const unmatched = compileUnmatched(spec.unmatched, problems.at('unmatched'), opts);
  if (problems.count > 0) throw new ConfigError(byRule(problems.all, source), 'BRIDGE_ERR_ROUTES');
  const t = buildTransform(rules, unmatched, opts.maxMessageBytes, decoder);
  return {
    ...t,
    schemaUses: Object.freeze(uses),
    useEncoder: (e: ValueEncoder) => {
      encoder = e;
    },
  };
}

/**
 * Problems grouped by rule (file-level ones first), keeping their order within a rule:
 * structural checks and compilation run in two passes, and a reader wants one rule's
 * problems together.
 */
function byRule(list: readonly string[], source: string): string[] {
  const head = `${source}: routes[`;
  const idx = (p: string): number => (p.startsWith(head) ? parseInt(p.slice(head.length), 10) : -1);
  return list.map((p, i) => ({ p, i, r: idx(p) })).sort((a, b) => a.r - b.r || a.i - b.i).map((x) => x.p);
}

type UnmatchedAction = { readonly action: 'skip' | 'dead_letter' } | { readonly action: 'topic'; readonly topic: Template };

function compileUnmatched(u: UnmatchedSpec, problems: Problems, opts: RoutesOptions): UnmatchedAction {
  if (u.action !== 'topic') return u;
  const at = problems.at('topic');
  const t = compileTemplate(u.topic, { segments: [], payload: false, separator: opts.separator }, at);
  if (!t) return { action: 'dead_letter' };
  checkTopicTemplate(t, at);
  return { action: 'topic', topic: t };
}

function buildTransform(rules: readonly CompiledRule[], unmatched: UnmatchedAction, maxMessageBytes: number, decoder: SparkplugDecoder | undefined): Omit<RoutesTransform, 'schemaUses' | 'useEncoder'> {
  const route = UNMATCHED_ROUTE;
  const onUnmatched = (msg: InboundMessage): TransformResult => {
    switch (unmatched.action) {
      case 'skip':
        return { kind: 'skip', route, reason: 'unmatched' };
      case 'dead_letter':
        return { kind: 'dead', route, reason: 'unmatched', detail: 'no rule matches the MQTT topic' };
      case 'topic': {
        const topic = unmatched.topic.render({ msg, captures: [], payload: undefined, uuid: undefined });
        if (topic instanceof Fail) return { kind: 'dead', route, reason: topic.reason, detail: topic.detail };
        if (!isLegalKafkaTopic(topic)) return { kind: 'dead', route, reason: 'bad_topic', detail: 'unmatched topic renders to an illegal Kafka topic' };
        if (msg.topic.length === 0) return { kind: 'dead', route, reason: 'bad_key', detail: 'key (the MQTT topic) is empty' };
        if (msg.payload.length > maxMessageBytes) {
          return { kind: 'dead', route, reason: 'too_large', detail: `value is ${msg.payload.length} bytes, limit ${maxMessageBytes}` };
        }
        return { kind: 'record', route, topic, key: msg.topic, value: msg.payload, headers: NO_HEADERS };
      }
    }
  };

  return {
    subscriptions: Object.freeze(subscriptionsFor(rules.map((r) => r.pattern.filter))),
    routeNames: Object.freeze([...rules.map((r) => r.name), UNMATCHED_ROUTE]),
    // Only a file with sparkplug rules keeps state.
    ...(decoder ? { attach: (deps: TransformDeps) => decoder.attach(deps) } : {}),
    apply(msg: InboundMessage): TransformResult {
      let current: CompiledRule | undefined;
      try {
        const levels = msg.topic.split('/');
        for (let i = 0; i < rules.length; i++) {
          current = rules[i] as CompiledRule;
          const captures = current.pattern.match(levels);
          if (captures) return current.apply(msg, captures);
        }
        current = undefined;
        return onUnmatched(msg);
      } catch (err) {
        // Not expected (every known failure is returned as a value); the contract is that
        // apply never throws, so an unforeseen input still ends as a counted dead letter.
        const what = err instanceof Error ? err.name : typeof err;
        return {
          kind: 'dead',
          route: current?.name ?? route,
          reason: current?.format === 'json' ? 'invalid_json' : current?.format === 'sparkplug' ? 'invalid_sparkplug' : current && isRegistryFormat(current.format) ? 'schema_mismatch' : 'bad_topic',
          detail: `unexpected ${what} while mapping`,
        };
      }
    },
  };
}
