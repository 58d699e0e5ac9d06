import { MISSING, type Problems } from './fail.js';

/**
 * Payload paths: `a.b.c` walks object keys; a level that is a non-negative integer also
 * indexes arrays (`items.0.id`); `*` (drop paths only) is every key of an object or every
 * element of an array. Keys that themselves contain '.' cannot be addressed.
 *
 * Lookups use own properties only, so `constructor` or `__proto__` in a path never reaches
 * Object.prototype.
 */

/** A parsed path: its levels, and the text it came from (used in dead-letter details). */
export interface PayloadPath {
  readonly text: string;
  readonly levels: readonly string[];
}

const INDEX = /^(0|[1-9][0-9]*)$/;

/**
 * Parses a dotted path. `wildcards` allows `*` levels (drop only). Problems go to
 * `problems`; returns undefined if there were any.
 */
export function parsePath(text: string, problems: Problems, wildcards: boolean): PayloadPath | undefined {
  if (text.length === 0) {
    problems.add('a payload path must not be empty');
    return undefined;
  }
  const levels = text.split('.');
  if (levels.some((l) => l.length === 0)) {
    problems.add(`payload path "${text}" has an empty level (leading, trailing or doubled '.')`);
    return undefined;
  }
  if (!wildcards && levels.includes('*')) {
    problems.add(`payload path "${text}": '*' is only allowed in drop paths`);
    return undefined;
  }
  return { text, levels };
}

/** The value at `path` in `root`, or MISSING. A JSON null is returned as null. */
export function getPath(root: unknown, levels: readonly string[]): unknown {
  let cur: unknown = root;
  for (let i = 0; i < levels.length; i++) {
    const key = levels[i] as string;
    if (cur === null || typeof cur !== 'object') return MISSING;
    if (Array.isArray(cur)) {
      if (!INDEX.test(key)) return MISSING;
      const idx = Number(key);
      if (idx >= cur.length) return MISSING;
      cur = cur[idx];
    } else {
      if (!Object.hasOwn(cur, key)) return MISSING;
      cur = (cur as Record<string, unknown>)[key];
    }
  }
  return cur;
}

/**
 * Removes every property `path` reaches from `root`, in place (the payload was parsed for
 * this message alone). The last level removes object properties only: deleting array
 * elements would shift or null out the others, which no consumer expects.
 */
export function dropPath(root: unknown, levels: readonly string[]): void {
  dropFrom(root, levels, 0);
}

function dropFrom(cur: unknown, levels: readonly string[], at: number): void {
  if (cur === null || typeof cur !== 'object') return;
  const key = levels[at] as string;
  const last = at === levels.length - 1;
  if (Array.isArray(cur)) {
    if (last) return;
    if (key === '*') {
      for (const el of cur) dropFrom(el, levels, at + 1);
    } else if (INDEX.test(key)) {
      const idx = Number(key);
      if (idx < cur.length) dropFrom(cur[idx], levels, at + 1);
    }
    return;
  }
  const obj = cur as Record<string, unknown>;
  if (key === '*') {
    if (last) {
      for (const k of Object.keys(obj)) delete obj[k];
    } else {
      for (const k of Object.keys(obj)) dropFrom(obj[k], levels, at + 1);
    }
    return;
  }
  if (!Object.hasOwn(obj, key)) return;
  if (last) delete obj[key];
  else dropFrom(obj[key], levels, at + 1);
}
