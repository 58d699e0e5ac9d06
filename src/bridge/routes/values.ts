import { createHash } from 'node:crypto';

/**
 * Value helpers used by template variables and filters. All of them are total: bad input
 * gives undefined, never an exception (a Date out of range throws in toISOString).
 */

/** Namespace for event UUIDs (an arbitrary fixed v4 UUID; changing it changes every event_uuid). */
const UUID_NAMESPACE = Buffer.from('6f1c3b0e5a8d4c2b9e7f1a2b3c4d5e6f', 'hex');

/**
 * A name-based (version 5, SHA-1) UUID of `name`. Deterministic: every copy of one MQTT
 * receipt (the spool replaying it, a retried produce) carries the same message id and hence
 * the same event_uuid, so consumers can deduplicate on it.
 */
export function uuidFrom(name: string): string {
  const h = createHash('sha1').update(UUID_NAMESPACE).update(name, 'utf8').digest();
  h[6] = ((h[6] as number) & 0x0f) | 0x50;
  h[8] = ((h[8] as number) & 0x3f) | 0x80;
  const hex = h.toString('hex', 0, 16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Above this an epoch number is taken as milliseconds (1e12 s is the year 33658; 1e12 ms is 2001). */
const MS_THRESHOLD = 1e12;
const NUMERIC = /^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/;

/**
 * Epoch milliseconds for an epoch number (seconds, or milliseconds when > 1e12), a numeric
 * string, or a date string Date.parse understands (ISO 8601). Undefined when it is none of
 * those or out of Date's range.
 */
export function toEpochMs(v: unknown): number | undefined {
  let ms: number;
  if (typeof v === 'number') {
    ms = Math.abs(v) > MS_THRESHOLD ? v : v * 1000;
  } else if (typeof v === 'string') {
    if (NUMERIC.test(v)) {
      const n = Number(v);
      ms = Math.abs(n) > MS_THRESHOLD ? n : n * 1000;
    } else {
      ms = Date.parse(v);
    }
  } else {
    return undefined;
  }
  // Date's range is +-8.64e15 ms; outside it toISOString throws.
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) return undefined;
  return ms;
}

/** ISO 8601 (UTC, milliseconds) for anything toEpochMs accepts; undefined otherwise. */
export function toIso8601(v: unknown): string | undefined {
  const ms = toEpochMs(v);
  return ms === undefined ? undefined : new Date(Math.trunc(ms)).toISOString();
}

/** A short type name for details ("expected number, got string"). */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isFinite(v) ? (Number.isInteger(v) ? 'integer' : 'number') : 'non-finite number';
  return typeof v;
}
