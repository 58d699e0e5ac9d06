/**
 * The error catalogue. Every error the bridge raises on purpose has a stable code here,
 * documented in README.md ("Error codes"); a unit test keeps the two in step.
 * Callers test errors with `instanceof BridgeError` and `err.code`, never by message text.
 */
export const ERROR_CODES = {
  BRIDGE_ERR_CONFIG: 'The configuration is invalid; the message lists every problem. Exit code 2.',
  BRIDGE_ERR_ROUTES: 'The routes file cannot be read or is invalid (file, rule index, field). Exit code 2.',
  BRIDGE_ERR_SPOOL_OPEN: 'The spool file cannot be opened or is corrupt. Exit code 3; the file is never deleted.',
  BRIDGE_ERR_SPOOL_WRITE: 'A spool transaction failed (disk full, I/O error); nothing in it was acknowledged.',
  BRIDGE_ERR_SPOOL_DELETE: 'Replayed rows could not be deleted from the spool (full file system, I/O error); replay pauses until they can be, and never sends them again meanwhile.',
  BRIDGE_ERR_SPOOL_FULL: 'The spool reached SPOOL_MAX_BYTES; the full policy applies.',
  BRIDGE_ERR_KAFKA_WRITE: 'A produce request failed or timed out; its records move to the spool.',
  BRIDGE_ERR_KAFKA_CONNECT: 'Kafka could not be reached at start or by the replay probe.',
  BRIDGE_ERR_MQTT_CONNECT: 'The MQTT broker refused or dropped the connection.',
  BRIDGE_ERR_MQTT_SEAM: 'The installed mqtt package no longer has the PUBACK or keepalive seam the bridge relies on.',
  BRIDGE_ERR_CLOSED: 'The component was closed; no more work is accepted.',
  BRIDGE_ERR_SHUTDOWN_TIMEOUT: 'Graceful shutdown did not finish within SHUTDOWN_TIMEOUT_MS.',
  BRIDGE_ERR_SCHEMA_REFUSED: 'The schema registry refused a route\'s schema at start (an incompatible change, an invalid schema, an unknown subject or version, bad credentials); the message names each route and subject with the registry\'s words. Exit code 2.',
  BRIDGE_ERR_SCHEMA_REGISTRY: 'The schema registry cannot be reached for a schema id not known yet; the records that need it are held (not acknowledged) and retried every SCHEMA_REGISTRY_RETRY_MS, never dead-lettered.',
  BRIDGE_ERR_DRAIN_INCOMPLETE: 'A drain for scale-down (drain-on-stop) could not empty the spool or end the MQTT session in time; exit code 1. Nothing is lost: keep the volume and start the replica again.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class BridgeError extends Error {
  override readonly name: string = 'BridgeError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Configuration problems: one error carrying every problem found. */
export class ConfigError extends BridgeError {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];

  constructor(problems: readonly string[], code: ErrorCode = 'BRIDGE_ERR_CONFIG') {
    super(code, `invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/**
 * Best-effort one-line description of an unknown thrown value, for logs. An error that wraps or
 * aggregates others (the Kafka client's "Producing messages failed." over per-partition errors)
 * names its root causes too, up to three distinct ones. Credentials in URLs (user:password@) are
 * removed.
 */
export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof Error) {
    text = oneError(err);
    // Causes already in the message (a wrapper that quotes its cause) are not repeated.
    const roots = rootCauses(err).filter((r) => !text.includes(r));
    if (roots.length > 0) text += ` (caused by: ${roots.join('; ')})`;
  } else text = String(err);
  return text.replace(/\/\/([^@/\s'"]+)@/g, '//[redacted]@');
}

function oneError(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? `${err.name} ${code}: ${err.message}` : `${err.name}: ${err.message}`;
}

/** The distinct leaves of an error tree below `err` (Kafka protocol errors by their code name). */
function rootCauses(err: Error): string[] {
  const out = new Set<string>();
  for (const e of errorChain(err)) {
    if (e === (err as unknown)) continue;
    const hasChildren = (Array.isArray(e.errors) && e.errors.length > 0) || e.cause !== undefined || e.originalError !== undefined;
    if (hasChildren) continue;
    const apiId = typeof e.apiId === 'string' ? e.apiId : undefined;
    const message = typeof e.message === 'string' ? e.message.split('\n')[0]! : String(e);
    out.add(apiId ? `${apiId}${typeof e.path === 'string' && e.path ? ` at ${e.path}` : ''}` : typeof e.code === 'string' ? `${e.code}: ${message}` : message);
    if (out.size >= 3) break;
  }
  return [...out];
}

/**
 * Every error in `err`'s chain, depth first: the error itself, its `cause`, a wrapped
 * `originalError`, and the members of an aggregate (`errors`, as the Kafka client's
 * MultipleErrors and Node's AggregateError carry them). Cycles are cut.
 */
export function* errorChain(err: unknown): Generator<Record<string, unknown>> {
  const seen = new Set<unknown>();
  const stack: unknown[] = [err];
  while (stack.length > 0) {
    const e = stack.pop();
    if (!e || typeof e !== 'object' || seen.has(e)) continue;
    seen.add(e);
    const o = e as Record<string, unknown>;
    yield o;
    const children: unknown[] = [];
    if (Array.isArray(o.errors)) children.push(...(o.errors as unknown[]));
    children.push(o.originalError, o.cause);
    // Reversed onto the stack, so the first member is visited first.
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
}
