import { execFile } from 'node:child_process';

/** One record as read back by kcat (an independent librdkafka consumer). */
export interface ReadRecord {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
  timestamp: number;
}

/** One `kcat -C ... -e -J` pass over the topic: all records from the beginning to the current end. */
export function kcatRead(kcat: string, bootstrap: string, topic: string, timeoutMs: number): Promise<ReadRecord[]> {
  // -C consume, -o beginning, -e exit at end of every partition, -J one JSON envelope per line,
  // -q no informational stderr. librdkafka is an independent client: it does not share our
  // (kafkajs) bugs.
  const args = ['-C', '-b', bootstrap, '-t', topic, '-o', 'beginning', '-e', '-J', '-q', '-X', 'log_level=3'];
  return new Promise((resolve, reject) => {
    execFile(kcat, args, { timeout: timeoutMs, maxBuffer: 512 * 1024 * 1024 }, (err, stdout, stderr) => {
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

/** Parses kcat -J output; headers come as a flat ["k1","v1","k2","v2"] array. */
export function parseKcatJson(stdout: string): ReadRecord[] {
  const out: ReadRecord[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.trim()) continue;
    const e = JSON.parse(line) as KcatEnvelope;
    const headers: Record<string, string> = {};
    const flat = e.headers ?? [];
    for (let i = 0; i + 1 < flat.length; i += 2) headers[flat[i] ?? ''] = flat[i + 1] ?? '';
    out.push({
      topic: e.topic,
      partition: e.partition,
      offset: e.offset,
      key: e.key ?? null,
      value: e.payload ?? null,
      headers,
      timestamp: e.ts ?? -1,
    });
  }
  out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  return out;
}
