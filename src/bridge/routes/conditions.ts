import { MISSING, type Problems } from './fail.js';
import { getPath, parsePath } from './paths.js';

/**
 * The `filter` condition language, compiled at load into plain closures.
 *
 *   condition := mapping whose entries must ALL hold:
 *                  all: [condition, ...]       every one holds
 *                  any: [condition, ...]       at least one holds
 *                  not: condition              does not hold
 *                  <payload path>: test        e.g. message, meta.kind, items.0.id
 *   test      := <scalar or null>              shorthand for { equals: ... }
 *              | mapping whose entries must ALL hold:
 *                  equals: <scalar or null>    field present and strictly equal (no "1" == 1)
 *                  in: [<scalar or null>, ...] field present and equal to one of them
 *                  exists: true | false        field present (a JSON null is present)
 *
 * `all`, `any` and `not` are reserved at the condition level, so a payload field literally
 * named like that cannot be tested there (write `x.not` for nested ones, which is fine).
 * Equality is on scalars only: comparing objects would need a deep walk per message.
 */
export type Condition = (payload: unknown) => boolean;

type Scalar = string | number | boolean | null;
const TESTS = ['equals', 'in', 'exists'];

function isScalar(v: unknown): v is Scalar {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Compiles a condition. Problems go to `problems`; undefined if there were any. */
export function compileCondition(node: unknown, problems: Problems): Condition | undefined {
  const before = problems.count;
  const c = compileNode(node, problems);
  return problems.count > before ? undefined : c;
}

function compileNode(node: unknown, problems: Problems): Condition | undefined {
  if (!isMapping(node) || Object.keys(node).length === 0) {
    problems.add('a condition is a non-empty mapping (all / any / not / <payload path>: test)');
    return undefined;
  }
  const parts: Condition[] = [];
  for (const [key, value] of Object.entries(node)) {
    const at = problems.at(key);
    if (key === 'all' || key === 'any') {
      if (!Array.isArray(value) || value.length === 0) {
        at.add('must be a non-empty list of conditions');
        continue;
      }
      const subs = value.map((v, i) => compileNode(v, at.at(i)));
      if (subs.some((s) => s === undefined)) continue;
      const list = subs as Condition[];
      parts.push(key === 'all' ? (p) => list.every((s) => s(p)) : (p) => list.some((s) => s(p)));
    } else if (key === 'not') {
      const sub = compileNode(value, at);
      if (sub) parts.push((p) => !sub(p));
    } else {
      const path = parsePath(key, at, false);
      const test = compileTest(value, at);
      if (path && test) {
        const levels = path.levels;
        parts.push((p) => test(getPath(p, levels)));
      }
    }
  }
  if (parts.length === 1) return parts[0];
  return (p) => {
    for (let i = 0; i < parts.length; i++) if (!(parts[i] as Condition)(p)) return false;
    return true;
  };
}

function compileTest(node: unknown, problems: Problems): ((v: unknown) => boolean) | undefined {
  if (isScalar(node)) return (v) => v === node;
  if (!isMapping(node) || Object.keys(node).length === 0) {
    problems.add(`a test is a scalar or a mapping with ${TESTS.join(' / ')}`);
    return undefined;
  }
  const checks: ((v: unknown) => boolean)[] = [];
  for (const [op, arg] of Object.entries(node)) {
    const at = problems.at(op);
    switch (op) {
      case 'equals':
        if (!isScalar(arg)) at.add('must be a string, number, boolean or null');
        else checks.push((v) => v === arg);
        break;
      case 'in':
        if (!Array.isArray(arg) || arg.length === 0 || !arg.every(isScalar)) {
          at.add('must be a non-empty list of strings, numbers, booleans or null');
        } else {
          const set = new Set<unknown>(arg);
          checks.push((v) => v !== MISSING && set.has(v));
        }
        break;
      case 'exists':
        if (typeof arg !== 'boolean') at.add('must be true or false');
        else checks.push(arg ? (v) => v !== MISSING : (v) => v === MISSING);
        break;
      default:
        problems.add(`unknown test "${op}" (tests: ${TESTS.join(', ')}; use all/any/not around field tests)`);
    }
  }
  if (checks.length === 1) return checks[0];
  return (v) => checks.every((c) => c(v));
}
