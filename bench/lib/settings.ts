/**
 * Extra bridge settings from a benchmark's environment variable: space-separated K=V pairs,
 * e.g. BENCH_BRIDGE_ENV='KAFKA_WORKERS=2 KAFKA_BATCH_MAX_MESSAGES=1000'. Tokens without '=' are ignored.
 */
export function settingsFrom(value: string | undefined): Record<string, string> {
  return Object.fromEntries(
    (value ?? '')
      .split(' ')
      .filter((kv) => kv.includes('='))
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}
