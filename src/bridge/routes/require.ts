import { Fail, MISSING, type Problems } from './fail.js';
import { getPath, parsePath } from './paths.js';
import { typeName } from './values.js';

/**
 * `require`: payload fields that must be present, with their allowed types. Checked in
 * declaration order; the first failure dead-letters the message (`missing_field` or
 * `wrong_type`, detail = the field and the types).
 *
 * Types: string, number (finite), integer (finite, no fraction), boolean, object (not an
 * array), array, any (present, even null). A JSON null satisfies only `any`.
 */
export const FIELD_TYPES = ['string', 'number', 'integer', 'boolean', 'object', 'array', 'any'] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

interface Requirement {
  readonly path: string;
  readonly levels: readonly string[];
  readonly types: readonly FieldType[];
  readonly ok: (v: unknown) => boolean;
}

/** Compiled `require` block: returns the first failure, or undefined when all hold. */
export type RequireCheck = (payload: unknown) => Fail | undefined;

const CHECKS: Record<FieldType, (v: unknown) => boolean> = {
  string: (v) => typeof v === 'string',
  number: (v) => typeof v === 'number' && Number.isFinite(v),
  integer: (v) => typeof v === 'number' && Number.isInteger(v),
  boolean: (v) => typeof v === 'boolean',
  object: (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  array: (v) => Array.isArray(v),
  any: () => true,
};

/** Compiles a `require` mapping (`field: type` or `field: [type, ...]`). */
export function compileRequire(node: unknown, problems: Problems): RequireCheck | undefined {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) {
    problems.add('must be a mapping of payload path to type, e.g. { site_code: string, value: [number, string] }');
    return undefined;
  }
  const before = problems.count;
  const reqs: Requirement[] = [];
  for (const [key, spec] of Object.entries(node)) {
    const at = problems.at(key);
    const path = parsePath(key, at, false);
    const list: unknown[] = Array.isArray(spec) ? spec : [spec];
    if (list.length === 0) at.add(`give at least one type (${FIELD_TYPES.join(', ')})`);
    const bad = list.filter((t) => typeof t !== 'string' || !(FIELD_TYPES as readonly string[]).includes(t));
    if (bad.length > 0) at.add(`unknown type ${bad.map((b) => JSON.stringify(b)).join(', ')} (types: ${FIELD_TYPES.join(', ')})`);
    if (!path || bad.length > 0 || list.length === 0) continue;
    const types = list as FieldType[];
    const fns = types.map((t) => CHECKS[t]);
    reqs.push({ path: key, levels: path.levels, types, ok: fns.length === 1 ? (fns[0] as (v: unknown) => boolean) : (v) => fns.some((f) => f(v)) });
  }
  if (problems.count > before) return undefined;
  return (payload) => {
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i] as Requirement;
      const v = getPath(payload, r.levels);
      if (v === MISSING) return new Fail('missing_field', r.path);
      if (!r.ok(v)) return new Fail('wrong_type', `${r.path}: expected ${r.types.join(' or ')}, got ${typeName(v)}`);
    }
    return undefined;
  };
}
