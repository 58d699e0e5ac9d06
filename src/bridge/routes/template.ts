import { kafkaTopicFromMqtt } from '../mapping.js';
import type { InboundMessage } from '../../mqtt/types.js';
import { Fail, MISSING, type Problems } from './fail.js';
import { getPath, parsePath } from './paths.js';
import { RESERVED_NAMES } from './pattern.js';
import { toIso8601, typeName, uuidFrom } from './values.js';

/**
 * Templates: text with `{expression}` placeholders, compiled once at load.
 *
 *   expression := variable ( '|' filter )*
 *   variable   := <segment name from the match pattern>
 *               | topic | topic_kafka | uuid | message_id | received_at | qos | retain
 *               | payload.<path>                       (format: json only)
 *   filter     := iso8601 | lower | upper | kafka[:<separator>] | default:<text>
 *
 * `{{` and `}}` are literal braces. Unknown variables, segments the match pattern does not
 * define, unknown filters and `payload.*` on non-json routes are load-time errors; a payload
 * field that is absent (or null) at run time is a `missing_field` dead letter unless a
 * `default:` filter supplies a value.
 */

/** What a template may refer to; fixed per rule at load. */
export interface TemplateScope {
  /** Segment names the rule's match pattern captures, in capture order. */
  readonly segments: readonly string[];
  /** True on json routes: `payload.*` is allowed. */
  readonly payload: boolean;
  /** KAFKA_TOPIC_SEPARATOR: used by `{topic_kafka}` and the `kafka` filter without argument. */
  readonly separator: string;
}

/** Per-message inputs to rendering. `uuid` is filled lazily (hashing costs a little). */
export interface RenderContext {
  readonly msg: InboundMessage;
  readonly captures: readonly string[];
  /** The parsed payload object on json routes; undefined otherwise. */
  readonly payload: unknown;
  uuid?: string | undefined;
}

/** A compiled template. */
export interface Template {
  readonly source: string;
  /** Set when the template has no placeholders: its text, known at load. */
  readonly constant: string | undefined;
  /** True when rendering reads the payload. */
  readonly usesPayload: boolean;
  /** The literal text between placeholders (lets the loader reject "a/{x}" as a topic). */
  readonly literals: readonly string[];
  /** Renders to text (topic, key, header, or an enrich value with surrounding text). */
  render(ctx: RenderContext): string | Fail;
  /**
   * Renders an enrich value. A template that is exactly one placeholder without filters
   * keeps the JSON type of what it refers to (`"{payload.value}"` stays a number,
   * `"{received_at}"` is epoch ms); anything else is text.
   */
  value(ctx: RenderContext): unknown;
}

type Getter = (ctx: RenderContext) => unknown;
type Filter = (v: unknown, ctx: RenderContext) => unknown;

interface Expr {
  readonly text: string;
  readonly get: Getter;
  readonly filters: readonly Filter[];
}

const FILTER_NAMES = ['iso8601', 'lower', 'upper', 'kafka', 'default'];

/** Compiles `source` in `scope`. Problems go to `problems`; undefined if there were any. */
export function compileTemplate(source: string, scope: TemplateScope, problems: Problems): Template | undefined {
  const before = problems.count;
  const parts: (string | Expr)[] = [];
  let lit = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i];
    if (c === '{' && source[i + 1] === '{') {
      lit += '{';
      i += 2;
    } else if (c === '}' && source[i + 1] === '}') {
      lit += '}';
      i += 2;
    } else if (c === '}') {
      problems.add(`template "${source}": unmatched '}' (write '}}' for a literal brace)`);
      i++;
    } else if (c === '{') {
      const end = source.indexOf('}', i + 1);
      const open = source.indexOf('{', i + 1);
      if (end < 0 || (open >= 0 && open < end)) {
        problems.add(`template "${source}": unclosed '{' (write '{{' for a literal brace)`);
        break;
      }
      if (lit !== '') parts.push(lit);
      lit = '';
      const expr = compileExpr(source.slice(i + 1, end).trim(), scope, problems);
      if (expr) parts.push(expr);
      i = end + 1;
    } else {
      lit += c;
      i++;
    }
  }
  if (lit !== '') parts.push(lit);
  if (problems.count > before) return undefined;
  return buildTemplate(source, parts);
}

function buildTemplate(source: string, parts: readonly (string | Expr)[]): Template {
  const exprs = parts.filter((p): p is Expr => typeof p !== 'string');
  const usesPayload = exprs.some((e) => e.text.startsWith('payload.'));
  const literals = parts.filter((p): p is string => typeof p === 'string');
  if (exprs.length === 0) {
    const text = literals.join('');
    return { source, constant: text, usesPayload: false, literals, render: () => text, value: () => text };
  }
  const render = (ctx: RenderContext): string | Fail => {
    let out = '';
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as string | Expr;
      if (typeof p === 'string') {
        out += p;
        continue;
      }
      const t = asText(evaluate(p, ctx), p.text);
      if (t instanceof Fail) return t;
      out += t;
    }
    return out;
  };
  const only = parts.length === 1 ? (parts[0] as Expr) : undefined;
  const value =
    only && only.filters.length === 0
      ? (ctx: RenderContext): unknown => {
          const v = only.get(ctx);
          if (v === MISSING || v === null) return missing(only.text);
          // JSON has no Infinity (1e400 parses to it): it would silently become null.
          if (typeof v === 'number' && !Number.isFinite(v)) return new Fail('wrong_type', `${only.text}: non-finite number`);
          return v;
        }
      : render;
  return { source, constant: undefined, usesPayload, literals, render, value };
}

function evaluate(e: Expr, ctx: RenderContext): unknown {
  let v = e.get(ctx);
  for (let i = 0; i < e.filters.length; i++) {
    if (v instanceof Fail) return v;
    v = (e.filters[i] as Filter)(v, ctx);
  }
  return v;
}

function missing(text: string): Fail {
  return new Fail('missing_field', text);
}

/** Text for a template value: strings as is, finite numbers and booleans printed. */
function asText(v: unknown, text: string): string | Fail {
  if (typeof v === 'string') return v;
  if (v instanceof Fail) return v;
  if (v === MISSING || v === null) return missing(text);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : new Fail('wrong_type', `${text}: non-finite number`);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return new Fail('wrong_type', `${text}: ${typeName(v)} cannot be used as text`);
}

function compileExpr(text: string, scope: TemplateScope, problems: Problems): Expr | undefined {
  if (text === '') {
    problems.add('empty placeholder "{}" (write "{{}}" for literal braces)');
    return undefined;
  }
  const [head, ...filterTexts] = text.split('|').map((s) => s.trim());
  const variable = head as string;
  const get = compileVariable(variable, scope, problems);
  const filters: Filter[] = [];
  for (const ft of filterTexts) {
    const f = compileFilter(ft, variable, scope, problems);
    if (f) filters.push(f);
  }
  return get ? { text: variable, get, filters } : undefined;
}

function compileVariable(name: string, scope: TemplateScope, problems: Problems): Getter | undefined {
  const seg = scope.segments.indexOf(name);
  if (seg >= 0) return (ctx) => ctx.captures[seg];
  if (name === 'payload' || name.startsWith('payload.')) {
    if (!scope.payload) {
      problems.add(`{${name}}: payload fields need "format: json"`);
      return undefined;
    }
    if (name === 'payload') {
      problems.add('{payload}: name a field, e.g. {payload.ts}');
      return undefined;
    }
    const path = parsePath(name.slice('payload.'.length), problems, false);
    if (!path) return undefined;
    const levels = path.levels;
    return (ctx) => getPath(ctx.payload, levels);
  }
  switch (name) {
    case 'topic':
      return (ctx) => ctx.msg.topic;
    case 'topic_kafka': {
      const sep = scope.separator;
      // Empty when nothing legal remains; a topic template then fails with bad_topic.
      return (ctx) => kafkaTopicFromMqtt(ctx.msg.topic, sep) ?? '';
    }
    case 'uuid':
      return (ctx) => (ctx.uuid ??= uuidFrom(ctx.msg.id));
    case 'message_id':
      return (ctx) => ctx.msg.id;
    case 'received_at':
      return (ctx) => ctx.msg.receivedAtMs;
    case 'qos':
      return (ctx) => ctx.msg.qos;
    case 'retain':
      return (ctx) => ctx.msg.retain;
  }
  const known = scope.segments.length > 0 ? `segments of the match pattern: ${scope.segments.join(', ')}` : 'the match pattern names no segments';
  problems.add(
    `unknown variable {${name}} (${known}; built-ins: ${[...RESERVED_NAMES].filter((n) => n !== 'payload').join(', ')}${scope.payload ? ', payload.<field>' : ''})`,
  );
  return undefined;
}

function compileFilter(text: string, variable: string, scope: TemplateScope, problems: Problems): Filter | undefined {
  const colon = text.indexOf(':');
  const name = colon < 0 ? text : text.slice(0, colon).trim();
  // Arguments are trimmed like names: `{x | default: none}` means "none".
  const arg = colon < 0 ? undefined : text.slice(colon + 1).trim();
  const label = `${variable}|${name}`;
  switch (name) {
    case 'iso8601':
      if (arg !== undefined) break;
      return (v) => {
        if (v === MISSING || v === null || v instanceof Fail) return v;
        return toIso8601(v) ?? new Fail('wrong_type', `${label}: needs epoch seconds/ms or a date, got ${typeName(v)}`);
      };
    case 'lower':
    case 'upper': {
      if (arg !== undefined) break;
      const upper = name === 'upper';
      return (v) => {
        if (v === MISSING || v === null) return v;
        const t = asText(v, variable);
        return t instanceof Fail ? t : upper ? t.toUpperCase() : t.toLowerCase();
      };
    }
    case 'kafka': {
      const sep = arg ?? scope.separator;
      if (sep !== '_' && sep !== '.' && sep !== '-') {
        problems.add(`{${variable}|${text}}: the kafka separator must be '_', '.' or '-'`);
        return undefined;
      }
      return (v) => {
        if (v === MISSING || v === null) return v;
        const t = asText(v, variable);
        return t instanceof Fail ? t : kafkaTopicFromMqtt(t, sep) ?? '';
      };
    }
    case 'default': {
      if (arg === undefined) {
        problems.add(`{${variable}|default}: give the value, e.g. {${variable}|default:unknown}`);
        return undefined;
      }
      return (v) => (v === MISSING || v === null ? arg : v);
    }
    default:
      problems.add(`{${variable}|${text}}: unknown filter "${name}" (filters: ${FILTER_NAMES.join(', ')})`);
      return undefined;
  }
  problems.add(`{${variable}|${text}}: filter "${name}" takes no argument`);
  return undefined;
}
