import type { SentCheck } from './log-check.js';
/** A record ready for Kafka. Header values are UTF-8 strings. */
export interface OutRecord {
  readonly topic: string;
  /** Partitioning key; null only when a route asks for no key. */
  readonly key: string | null;
  readonly value: Buffer;
  readonly headers: Readonly<Record<string, string>>;
  /** Record timestamp, ms since epoch (the MQTT receive time). */
  readonly timestampMs: number;
}

/**
 * A record travelling through the writers, with what it takes to acknowledge it.
 * `seq` is the MQTT receive sequence to settle once durable (-1: nothing to settle, e.g. spool replay).
 */
export interface Pending {
  readonly record: OutRecord;
  readonly seq: number;
  /** Stable message id (also in the `mqtt.message_id` header): duplicates share it. */
  readonly id: string;
  /** hash(key) used to pick the worker and the spool order class. */
  readonly keyHash: number;
  readonly receivedAtMs: number;
  /** Approximate size in bytes (value + key + headers), for batch and spool bounds. */
  readonly bytes: number;
}

/**
 * The Kafka client behind the writers' own small interface, so the library can be swapped.
 * One instance serves one worker: one produce request in flight at a time.
 */
export interface KafkaProducerClient {
  /** Writes all records with acks=all. Resolves only when every record is acknowledged. */
  send(records: readonly OutRecord[]): Promise<void>;
  /** Throws unless Kafka answers (metadata request). */
  probe(): Promise<void>;
  /**
   * Sets the producer up ahead of its first send (connection, producer id), so the first batch
   * does not wait for it. Never throws: a failure here is left for send() to meet and report.
   */
  connect(): Promise<void>;
  /** Drops the underlying producer and makes a fresh one (fatal idempotence errors, stuck producer). */
  recreate(): Promise<void>;
  close(): Promise<void>;
}

/** Classifies a failed write for metrics and logs. */
export type WriteErrorKind =
  | 'timeout'
  | 'connection'
  | 'leader_unavailable'
  | 'topic_missing'
  | 'too_large'
  /** The broker's record validation refused a record (null key on a compacted topic, timestamp out of range, corrupt). */
  | 'invalid_record'
  /** Fewer in-sync replicas than min.insync.replicas: an acks=all write cannot be acknowledged. */
  | 'not_enough_replicas'
  | 'fatal_producer'
  /** SASL authentication failed, or an ACL refused the write. */
  | 'auth'
  /** TLS handshake failed (certificate not trusted, plain-text listener, client certificate refused). */
  | 'tls'
  | 'unknown';

/** Makes the producer clients of the writers and the replayer; one per caller. */
export interface KafkaClientFactory {
  /** A producer client for one worker (or the replayer). */
  create(name: string): KafkaProducerClient;
  close(): Promise<void>;
  /** A setting Kafka rejects (SASL credentials, TLS trust) until a connection succeeds again, or topics that do not exist until a write to them succeeds; /readyz reports it. */
  securityProblem?(): string | undefined;
  /** Reads Kafka back to find which of some records it has already (replay after a restart; log-check.ts). */
  sentCheck?(): SentCheck;
}
