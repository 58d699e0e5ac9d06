import type { InboundMessage } from '../mqtt/types.js';
import type { SchemaUse, ValueEncoder } from '../registry/types.js';
import type { SparkplugTelemetry } from '../sparkplug/types.js';
import type { StateStore } from '../spool/types.js';

/** Why a message went to the dead-letter topic. Bounded set: used as a metric label. */
export type DeadLetterReason =
  | 'invalid_utf8'
  | 'invalid_json'
  | 'missing_field'
  | 'wrong_type'
  | 'too_large'
  | 'bad_topic'
  | 'bad_key'
  | 'empty_payload'
  | 'invalid_sparkplug'
  | 'unmatched'
  | 'rejected_by_kafka'
  /** Queued by the broker for a filter removed from the configuration (MQTT_REMOVED_FILTER_POLICY=dead_letter). */
  | 'unsubscribed'
  /** avro, protobuf, json_schema: the value does not fit its schema (the validator's words in dlq.detail). */
  | 'schema_mismatch'
  /** avro, protobuf, json_schema: the schema registry refused the route's schema for this topic's subject. */
  | 'schema_refused';

/** Why a message was skipped on purpose (counted, not dead-lettered). */
export type SkipReason = 'filtered' | 'unmatched';

/** The result of mapping one MQTT message. Never thrown: every input ends in one of these. */
export type TransformResult =
  | {
      readonly kind: 'record';
      /** Route name (bounded: rule names from the routes file, or 'default'). */
      readonly route: string;
      readonly topic: string;
      readonly key: string | null;
      readonly value: Buffer;
      /** Route-specific headers; the bridge adds the standard mqtt.* headers. */
      readonly headers: Readonly<Record<string, string>>;
    }
  | { readonly kind: 'dead'; readonly route: string; readonly reason: DeadLetterReason; readonly detail: string }
  | { readonly kind: 'skip'; readonly route: string; readonly reason: SkipReason }
  | DeferredResult;

/**
 * A record whose value cannot be made yet: its schema id is not known and the schema registry
 * cannot be reached. The bridge holds it (not acknowledged) and every later record of its topic
 * and key behind it, and asks `resolve()` once `ready` settles.
 */
export interface DeferredResult {
  readonly kind: 'deferred';
  readonly route: string;
  /** The record's topic and key: later records of this topic with this key wait behind this one. */
  readonly topic: string;
  readonly key: string | null;
  /** Resolves (never rejects) when resolve() can give the final result. */
  readonly ready: Promise<void>;
  /** The final result: the record, a dead letter, or (the registry went away again) another deferred one. */
  resolve(): TransformResult;
}

/** What a stateful transform gets from the bridge once the spool is open. */
export interface TransformDeps {
  /** Durable key-value state in the spool database (Sparkplug BIRTH certificates). */
  readonly state: StateStore;
  /** Counts and logs what Sparkplug decoding finds (unresolved aliases, seq errors). */
  readonly telemetry: SparkplugTelemetry;
}

/**
 * Maps MQTT messages to Kafka records. Must not throw for any input. `apply` is called in
 * receive order, one message at a time; a transform may keep state across calls (Sparkplug
 * BIRTH certificates), so the order is part of the contract.
 */
export interface Transform {
  apply(msg: InboundMessage): TransformResult;
  /** MQTT subscriptions this transform needs (used when MQTT_TOPIC is not set). */
  readonly subscriptions: readonly string[];
  /**
   * Called once by the bridge after the spool opened and before the first apply(), for
   * transforms that keep durable state. Until then such a transform keeps its state in memory.
   */
  attach?(deps: TransformDeps): void;
  /** The schemas of the routes in a registry format (avro, protobuf, json_schema); absent or empty otherwise. */
  readonly schemaUses?: readonly SchemaUse[];
  /** Gives the transform the encoder of its schemaUses, before the first apply(). */
  useEncoder?(encoder: ValueEncoder): void;
}
