import { levelsCover } from '../../mqtt/topic-filter.js';
import type { Problems } from './fail.js';

/**
 * MQTT match patterns: an MQTT topic filter whose levels may also be `{name}` (one level,
 * captured under that name). Compiled once at load into per-level matchers so that a
 * message costs one `split('/')` plus a few string compares per rule.
 */

/** Names the template language gives a fixed meaning; a segment may not shadow them. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'topic',
  'topic_kafka',
  'payload',
  'uuid',
  'message_id',
  'received_at',
  'qos',
  'retain',
]);

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

type Level =
  | { readonly kind: 'literal'; readonly text: string }
  /** `+` (capture = -1) or `{name}` (capture = index into the captures array). */
  | { readonly kind: 'one'; readonly capture: number }
  /** `#`: this level and everything below it, including nothing at all. */
  | { readonly kind: 'rest' };

/** A compiled match pattern. */
export interface Pattern {
  readonly source: string;
  /** Capture names in level order; `captures[i]` of a match belongs to `names[i]`. */
  readonly names: readonly string[];
  /** The MQTT subscription filter for this pattern (`{name}` -> `+`). */
  readonly filter: string;
  /**
   * Matches pre-split topic levels. Returns the captured levels (empty array when the
   * pattern names none) or undefined when the topic does not match.
   */
  match(levels: readonly string[]): string[] | undefined;
}

/**
 * Compiles `source` (e.g. `cackalacky/badge/egress/{badge_id}/cp/{event}`). Problems are
 * reported to `problems`; the result is undefined when there were any.
 */
export function compilePattern(source: string, problems: Problems): Pattern | undefined {
  const before = problems.count;
  if (source.length === 0) {
    problems.add('must not be empty');
    return undefined;
  }
  if (Buffer.byteLength(source) > 65535) problems.add('is longer than an MQTT topic filter can be (65535 bytes)');
  if (source.includes('\u0000')) problems.add('must not contain the NUL character');

  const parts = source.split('/');
  const levels: Level[] = [];
  const names: string[] = [];
  parts.forEach((part, i) => {
    if (part === '#') {
      if (i !== parts.length - 1) problems.add(`'#' must be the last level (level ${i + 1} of ${parts.length})`);
      levels.push({ kind: 'rest' });
    } else if (part === '+') {
      levels.push({ kind: 'one', capture: -1 });
    } else if (part.startsWith('{') && part.endsWith('}')) {
      const name = part.slice(1, -1);
      if (!NAME.test(name)) {
        problems.add(`level ${i + 1} "${part}": a segment name is letters, digits and '_' (not starting with a digit)`);
      } else if (RESERVED_NAMES.has(name)) {
        problems.add(`level ${i + 1} "${part}": "${name}" is a built-in template variable; pick another segment name`);
      } else if (names.includes(name)) {
        problems.add(`level ${i + 1} "${part}": segment name "${name}" is used twice`);
      }
      names.push(name);
      levels.push({ kind: 'one', capture: names.length - 1 });
    } else if (/[+#{}]/.test(part)) {
      // MQTT forbids wildcards inside a level, and half-templated levels ("cp-{x}") would make
      // the subscription filter lie about what matches.
      problems.add(
        `level ${i + 1} "${part}": '+', '#', '{' and '}' must fill a whole level ('+', '#' or '{name}')`,
      );
    } else {
      levels.push({ kind: 'literal', text: part });
    }
  });
  if (problems.count > before) return undefined;
  return buildPattern(source, levels, names);
}

function buildPattern(source: string, levels: readonly Level[], names: readonly string[]): Pattern {
  const hasRest = levels[levels.length - 1]?.kind === 'rest';
  const fixed = hasRest ? levels.length - 1 : levels.length;
  const captureLevels: number[] = [];
  levels.forEach((l, i) => {
    if (l.kind === 'one' && l.capture >= 0) captureLevels.push(i);
  });
  // MQTT: a filter starting with a wildcard does not match topics starting with '$' ($SYS/...).
  const firstIsWildcard = levels[0]?.kind !== 'literal';
  const filter = levels.map((l) => (l.kind === 'literal' ? l.text : l.kind === 'rest' ? '#' : '+')).join('/');

  return {
    source,
    names,
    filter,
    match(topicLevels: readonly string[]): string[] | undefined {
      const n = topicLevels.length;
      // `a/#` also matches `a` (MQTT 4.7.1.2), hence `fixed` levels and not one more.
      if (hasRest ? n < fixed : n !== fixed) return undefined;
      if (firstIsWildcard && (topicLevels[0] ?? '').startsWith('$')) return undefined;
      for (let i = 0; i < fixed; i++) {
        const l = levels[i] as Level;
        if (l.kind === 'literal' && l.text !== topicLevels[i]) return undefined;
      }
      const captures: string[] = new Array<string>(captureLevels.length);
      for (let c = 0; c < captureLevels.length; c++) captures[c] = topicLevels[captureLevels[c] as number] as string;
      return captures;
    },
  };
}

/** True when every topic matched by MQTT filter `inner` is also matched by filter `outer`. */
export function filterCovers(outer: string, inner: string): boolean {
  return levelsCover(outer.split('/'), inner.split('/'));
}

/**
 * The MQTT subscriptions a set of patterns needs: deduplicated, and without filters that
 * another one already covers (`a/+/b` next to `a/#`), because some brokers deliver one copy
 * per matching subscription and the bridge would then see duplicates. Order is kept.
 */
export function subscriptionsFor(filters: readonly string[]): string[] {
  const unique = [...new Set(filters)];
  return unique.filter((f, i) => !unique.some((other, j) => j !== i && filterCovers(other, f) && !(filterCovers(f, other) && j > i)));
}
