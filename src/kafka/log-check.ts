import { randomUUID } from 'node:crypto';
import { compatibilityPartitioner, Consumer, MessagesStreamModes } from '@platformatic/kafka';
import type { Config } from '../config/types.js';
import { withTimeout } from '../timeout.js';
import type { KafkaSecurityOptions } from './security.js';

/** What the replayer asks before re-sending rows an earlier process may have sent already. */
export interface SentCheck {
  /** The message ids (`mqtt.message_id`) of `records` that are already in Kafka. Throws when Kafka cannot be read. */
  inKafka(records: readonly CheckedRecord[]): Promise<Set<string>>;
}

export interface CheckedRecord {
  readonly id: string;
  readonly topic: string;
  readonly key: string | null;
}

/** Most records read back from one partition: at least this, or 4 × the rows to find in it. */
const MIN_TAIL = 2_000;
/** Most records read back in one check, over all partitions. */
const MAX_READ = 200_000;
const CHECK_TIMEOUT_MS = 60_000;

const MESSAGE_ID = Buffer.from('mqtt.message_id');

/**
 * Reads back the tail of the partitions the records map to (the Java partitioner, as the
 * producer uses it) and collects the `mqtt.message_id` headers found there. The records were
 * sent just before the earlier process stopped, so if Kafka has them they are among the last
 * records of their partitions: per partition the last max(2,000, 4 × rows to find) records are
 * read, at most 200,000 in all. It reads with a consumer in manual mode (no offsets committed)
 * under a group of its own (`<KAFKA_CLIENT_ID>-replay-check-<uuid>`), which the broker forgets
 * once it is empty.
 */
export function createTailCheck(config: Config['kafka'], security: KafkaSecurityOptions = {}): SentCheck {
  return {
    async inKafka(records) {
      if (records.length === 0) return new Set();
      const consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
        clientId: `${config.clientId}-replay-check`,
        groupId: `${config.clientId}-replay-check-${randomUUID()}`,
        bootstrapBrokers: [...config.brokers],
        connectTimeout: config.connectTimeoutMs,
        requestTimeout: Math.max(2000, config.writeTimeoutMs),
        retries: 3,
        retryDelay: 250,
        autocommit: false,
        maxWaitTime: 200,
        ...security,
      });
      try {
        return await withTimeout(read(consumer, records), CHECK_TIMEOUT_MS, 'replay check');
      } finally {
        await consumer.close(true).catch(() => undefined);
      }
    },
  };
}

async function read(consumer: Consumer<Buffer, Buffer, Buffer, Buffer>, records: readonly CheckedRecord[]): Promise<Set<string>> {
  const topics = [...new Set(records.map((r) => r.topic))];
  const metadata = await consumer.metadata({ topics });
  const wanted = new Set<string>();
  const perPartition = new Map<string, number>();
  for (const r of records) {
    wanted.add(r.id);
    const count = metadata.topics.get(r.topic)?.partitionsCount ?? 1;
    const partition = r.key === null ? 0 : compatibilityPartitioner(undefined as never, Buffer.from(r.key)) % count;
    const k = `${r.topic}:${partition}`;
    perPartition.set(k, (perPartition.get(k) ?? 0) + 1);
  }
  const [ends, starts] = await Promise.all([consumer.listOffsets({ topics }), consumer.listOffsets({ topics, timestamp: -2n })]);
  const offsets: { topic: string; partition: number; offset: bigint }[] = [];
  /** partition key -> the last offset to read (end - 1). */
  const until = new Map<string, bigint>();
  let budget = BigInt(MAX_READ);
  for (const [k, n] of perPartition) {
    const i = k.lastIndexOf(':');
    const topic = k.slice(0, i);
    const partition = Number(k.slice(i + 1));
    const end = ends.get(topic)?.[partition] ?? 0n;
    const earliest = starts.get(topic)?.[partition] ?? 0n;
    let span = BigInt(Math.max(MIN_TAIL, 4 * n));
    if (span > budget) span = budget;
    budget -= span;
    const from = end - span > earliest ? end - span : earliest;
    if (from >= end) continue;
    offsets.push({ topic, partition, offset: from });
    until.set(k, end - 1n);
  }
  const found = new Set<string>();
  if (offsets.length === 0) return found;
  const stream = await consumer.consume({ topics, mode: MessagesStreamModes.MANUAL, offsets, autocommit: false, maxWaitTime: 200 });
  try {
    for await (const m of stream) {
      const k = `${m.topic}:${m.partition}`;
      const last = until.get(k);
      if (last === undefined) continue;
      for (const [hk, hv] of m.headers) {
        if (hk.equals(MESSAGE_ID)) {
          const id = hv.toString();
          if (wanted.has(id)) found.add(id);
          break;
        }
      }
      if (m.offset >= last) until.delete(k);
      if (until.size === 0 || found.size === wanted.size) break;
    }
  } finally {
    await stream.close().catch(() => undefined);
  }
  return found;
}
