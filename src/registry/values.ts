/** The kind of a value, never its content (details go to logs and headers; payloads may be confidential). */
export function valueKind(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : Number.isFinite(v) ? 'a fractional number' : 'a non-finite number';
  if (typeof v === 'boolean') return 'a boolean';
  return typeof v;
}
