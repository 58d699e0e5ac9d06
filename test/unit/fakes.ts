// Test doubles and helpers shared by the unit suites that drive a Kafka producer client
// (writer-pool, replayer, bridge). Not a test file itself: vitest only collects *.test.ts.

import { MultipleErrors, NetworkError, ResponseError } from '@platformatic/kafka';
import pino from 'pino';
import { expect } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';
import type { KafkaProducerClient, OutRecord } from '../../src/kafka/types.js';
import type { Telemetry } from '../../src/observability/telemetry.js';

// --- fakes -------------------------------------------------------------------------------

/** What one send() does: succeed, fail with this error, or hang until the test releases it. */
export type Step = 'ok' | 'hang' | Error;

// The Kafka client's own error classes, shaped as a failed send() reports them.
export const connectionError = (): Error =>
  new MultipleErrors('produce failed 4 times.', [new NetworkError('Connection to 127.0.0.1:9092 failed.', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9092'), { code: 'ECONNREFUSED' }) })]);
export const tooLarge = (): Error => new MultipleErrors('Producing messages failed.', [new ResponseError(0, 11, { '/responses/0/partitionResponses/0': [10, null] }, {})]);

export interface Hung {
  readonly records: OutRecord[];
  resolve(): void;
  reject(err: Error): void;
}

/** A KafkaProducerClient that records every batch it was given and does what the test scripts. */
export class FakeClient implements KafkaProducerClient {
  /** Every batch handed to send(), in call order. */
  readonly batches: OutRecord[][] = [];
  /** Batches whose send() resolved (Kafka acknowledged them). */
  readonly acked: OutRecord[][] = [];
  readonly hung: Hung[] = [];
  /** Steps consumed one per send(); `mode` (or `decide`) applies once they run out. */
  readonly script: Step[] = [];
  mode: Step = 'ok';
  decide: ((records: readonly OutRecord[]) => Step) | undefined;
  /** When set, probe() fails with it. */
  probeError: Error | undefined;
  probes = 0;
  /** connect() calls (setting the producer up ahead of the first write). */
  connects = 0;
  inFlight = 0;
  maxInFlight = 0;
  closed = 0;
  /** Called on every send(), before it settles (to observe the rest of the system mid-run). */
  onSend: ((records: readonly OutRecord[]) => void) | undefined;
  /** Called when a batch is acknowledged, right after it is added to `acked`. */
  onAck: ((records: readonly OutRecord[]) => void) | undefined;
  /** Called on every close(). */
  onClose: (() => void) | undefined;

  constructor(readonly name = 'client') {}

  send(records: readonly OutRecord[]): Promise<void> {
    const batch = [...records];
    this.batches.push(batch);
    this.onSend?.(batch);
    const step = this.script.shift() ?? this.decide?.(batch) ?? this.mode;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const ok = (): void => {
      this.inFlight--;
      this.acked.push(batch);
      this.onAck?.(batch);
    };
    if (step === 'ok') return Promise.resolve().then(ok);
    if (step instanceof Error) {
      return Promise.resolve().then(() => {
        this.inFlight--;
        throw step;
      });
    }
    return new Promise<void>((resolve, reject) => {
      this.hung.push({
        records: batch,
        resolve: () => {
          ok();
          resolve();
        },
        reject: (err) => {
          this.inFlight--;
          reject(err);
        },
      });
    });
  }

  /** Lets the oldest hung request succeed (or fail with `err`). */
  release(err?: Error): void {
    const h = this.hung.shift();
    if (!h) throw new Error(`${this.name}: no request in flight`);
    if (err) h.reject(err);
    else h.resolve();
  }

  async probe(): Promise<void> {
    this.probes++;
    if (this.probeError) throw this.probeError;
  }
  async connect(): Promise<void> {
    this.connects++;
  }
  async recreate(): Promise<void> {}
  async close(): Promise<void> {
    this.closed++;
    this.onClose?.();
  }
}

// --- helpers -----------------------------------------------------------------------------

export function kafkaConfig(over: Partial<Config['kafka']> = {}): Config['kafka'] {
  return {
    brokers: ['127.0.0.1:9092'],
    clientId: 'test',
    workers: 2,
    lingerMs: 0,
    autoCreateTopics: false,
    batchMaxMessages: 1000,
    replayBatchMaxMessages: 1000,
    batchMaxBytes: 1_000_000,
    writeTimeoutMs: 1000,
    deliveryTimeoutMs: 30_000,
    connectTimeoutMs: 1000,
    compression: 'none',
    ...over,
  };
}

/** Lets every pending promise continuation run (one macrotask turn; not a timed sleep). */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

export const ids = (xs: readonly { id: string }[]): string[] => xs.map((x) => x.id);
export const recIds = (rs: readonly OutRecord[]): string[] => rs.map((r) => r.headers['mqtt.message_id']!);

/** Sum of a counter/gauge's values whose labels include `labels`. */
export async function metric(t: Telemetry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = t.registry.getSingleMetric(`mqtt_kafka_${name}`);
  if (!m) throw new Error(`no metric ${name}`);
  const data = await m.get();
  let sum = 0;
  for (const v of data.values) {
    if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) sum += v.value;
  }
  return sum;
}

/** An in-memory StateStore for fake spools. */
export { MemoryState } from '../../src/spool/memory-state.js';

// --- logs --------------------------------------------------------------------------------

/** One JSON log line as pino writes it (level as its label). */
export interface LogLine {
  level: string;
  msg: string;
  component?: string;
  fault?: string;
  failures?: number;
  sinceLastLine?: number;
  lastErr?: string;
  err?: string;
  durationMs?: number;
  [k: string]: unknown;
}

/** A pino logger writing JSON lines into an array (synchronously), with level labels. */
export function captureLogger(level = 'debug'): { logger: pino.Logger; lines: LogLine[]; atLeastWarn: () => LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level, formatters: { level: (label) => ({ level: label }) } }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines, atLeastWarn: () => lines.filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal') };
}

/** The problems loadConfig reports for `env` (it must refuse it with a ConfigError); `check` sees the error too. */
export function configProblems(env: Record<string, string>, check?: (err: ConfigError) => void): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    check?.(err as ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('expected a ConfigError');
}
