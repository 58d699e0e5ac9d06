import { execFile } from 'node:child_process';

/** One record as read back by kcat (an independent librdkafka consumer). */
export interface ReadRecord {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  /** The value decoded as UTF-8 (what text payloads need). */
  value: string | null;
  /** The value's exact bytes (binary payloads, invalid UTF-8 kept intact). */
  bytes: Buffer | null;
  headers: Record<string, string>;
  timestamp: number;
}

/** One `kcat -C ... -e -J` pass over the topic: all records from the beginning to the current end. */
export function kcatRead(kcat: string, bootstrap: string, topic: string, timeoutMs: number): Promise<ReadRecord[]> {
  // -C consume, -o beginning, -e exit at end of every partition, -J one JSON envelope per line,
  // -q no informational stderr. librdkafka is an independent client: it does not share the
  // bridge's Kafka client's bugs.
  const args = ['-C', '-b', bootstrap, '-t', topic, '-o', 'beginning', '-e', '-J', '-q', '-X', 'log_level=3'];
  return new Promise((resolve, reject) => {
    // latin1: kcat -J writes bytes >= 0x80 unescaped, so reading its output as latin1 keeps every
    // byte of a value recoverable (parseKcatJson re-encodes the strings).
    execFile(kcat, args, { timeout: timeoutMs, maxBuffer: 512 * 1024 * 1024, encoding: 'latin1' }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`kcat failed: ${err.message}\n${stderr}`));
        return;
      }
      try {
        resolve(parseKcatJson(stdout));
      } catch (parseErr) {
        reject(parseErr as Error);
      }
    });
  });
}

interface KcatEnvelope {
  topic: string;
  partition: number;
  offset: number;
  ts?: number;
  key: string | null;
  payload: string | null;
  headers?: (string | null)[];
}

/**
 * Parses kcat -J output read as latin1 (see kcatRead); headers come as a flat
 * ["k1","v1","k2","v2"] array. Strings are turned back into their bytes, then decoded as UTF-8.
 */
export function parseKcatJson(stdout: string): ReadRecord[] {
  const out: ReadRecord[] = [];
  const utf8 = (s: string): string => Buffer.from(s, 'latin1').toString('utf8');
  for (const line of stdout.split('\n')) {
    if (!line.trim()) continue;
    const e = JSON.parse(line) as KcatEnvelope;
    const headers: Record<string, string> = {};
    const flat = e.headers ?? [];
    for (let i = 0; i + 1 < flat.length; i += 2) headers[utf8(flat[i] ?? '')] = utf8(flat[i + 1] ?? '');
    const bytes = e.payload === null || e.payload === undefined ? null : Buffer.from(e.payload, 'latin1');
    out.push({
      topic: e.topic,
      partition: e.partition,
      offset: e.offset,
      key: e.key === null || e.key === undefined ? null : utf8(e.key),
      value: bytes === null ? null : bytes.toString('utf8'),
      bytes,
      headers,
      timestamp: e.ts ?? -1,
    });
  }
  out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  return out;
}
