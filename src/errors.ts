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
  BRIDGE_ERR_SPOOL_FULL: 'The spool reached SPOOL_MAX_BYTES; the full policy applies.',
  BRIDGE_ERR_KAFKA_WRITE: 'A produce request failed or timed out; its records move to the spool.',
  BRIDGE_ERR_KAFKA_CONNECT: 'Kafka could not be reached at start or by the replay probe.',
  BRIDGE_ERR_MQTT_CONNECT: 'The MQTT broker refused or dropped the connection.',
  BRIDGE_ERR_MQTT_SEAM: 'The installed mqtt package no longer has the PUBACK seam the bridge relies on.',
  BRIDGE_ERR_CLOSED: 'The component was closed; no more work is accepted.',
  BRIDGE_ERR_SHUTDOWN_TIMEOUT: 'Graceful shutdown did not finish within SHUTDOWN_TIMEOUT_MS.',
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

/** Best-effort one-line description of an unknown thrown value, for logs. Credentials in URLs (user:password@) are removed. */
export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    text = typeof code === 'string' ? `${err.name} ${code}: ${err.message}` : `${err.name}: ${err.message}`;
  } else text = String(err);
  return text.replace(/\/\/([^@/\s'"]+)@/g, '//[redacted]@');
}
