import type { InboundMessage } from '../mqtt/types.js';

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
  | 'unmatched'
  | 'rejected_by_kafka';

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
  | { readonly kind: 'skip'; readonly route: string; readonly reason: SkipReason };

/** Maps MQTT messages to Kafka records. Must not throw for any input. */
export interface Transform {
  apply(msg: InboundMessage): TransformResult;
  /** MQTT subscriptions this transform needs (used when MQTT_TOPIC is not set). */
  readonly subscriptions: readonly string[];
}
