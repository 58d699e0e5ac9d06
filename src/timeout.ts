/** What withTimeout rejects with; the Kafka side classifies it as a `timeout` write error. */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/**
 * Settles like `p`, or rejects with a TimeoutError after `ms` (`what` names the step in the
 * message). The timer is cleared either way, and a late rejection of `p` is not left unhandled.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
