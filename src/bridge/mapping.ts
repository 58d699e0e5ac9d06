import type { InboundMessage } from '../mqtt/types.js';
import type { Transform, TransformResult } from './types.js';

/** The default mapping adds no headers of its own: one shared empty set, not an object per message. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** Kafka's limit on a topic name. */
export const KAFKA_TOPIC_MAX = 249;
const ILLEGAL = /[^a-zA-Z0-9._-]/g;

/**
 * Derives a Kafka topic from an MQTT topic: '/' becomes `separator`, every character Kafka
 * does not allow (anything but ASCII letters, digits, '.', '_', '-') becomes '_', and the result
 * is cut to 249 characters. Leading/trailing separators from '/a/b/' are kept so that
 * distinct MQTT topics stay distinct where possible. Returns undefined when nothing usable
 * remains ('' or the reserved names '.' and '..').
 */
export function kafkaTopicFromMqtt(mqttTopic: string, separator: string): string | undefined {
  const t = mqttTopic.split('/').join(separator).replace(ILLEGAL, '_').slice(0, KAFKA_TOPIC_MAX);
  return isLegalKafkaTopic(t) ? t : undefined;
}

/** True when Kafka would accept `t` as a topic name. */
export function isLegalKafkaTopic(t: string): boolean {
  return t.length > 0 && t.length <= KAFKA_TOPIC_MAX && t !== '.' && t !== '..' && !/[^a-zA-Z0-9._-]/.test(t);
}

/** Metamorphosis' record value: `{"topic": <mqtt topic>, "content": <base64 payload>}`. */
export function envelope(topic: string, payload: Buffer): Buffer {
  return Buffer.from(JSON.stringify({ topic, content: payload.toString('base64') }));
}

export interface DefaultMappingOptions {
  /** KAFKA_TOPIC: every message goes here. Unset: derived from the MQTT topic. */
  readonly topic?: string | undefined;
  readonly separator: string;
  readonly format: 'raw' | 'envelope';
  readonly subscriptions: readonly string[];
}

/**
 * The mapping used without a routes file: topic from KAFKA_TOPIC or derived from the MQTT
 * topic, key = MQTT topic, value = payload (raw) or Metamorphosis envelope.
 */
export function createDefaultMapping(opts: DefaultMappingOptions): Transform {
  const cache = new Map<string, string | undefined>();
  const topicFor = (mqttTopic: string): string | undefined => {
    if (opts.topic !== undefined) return opts.topic;
    let t = cache.get(mqttTopic);
    if (t === undefined && !cache.has(mqttTopic)) {
      t = kafkaTopicFromMqtt(mqttTopic, opts.separator);
      // Bounded: a device fleet has many topics, but a runaway one must not grow memory.
      if (cache.size > 100_000) cache.clear();
      cache.set(mqttTopic, t);
    }
    return t;
  };
  return {
    subscriptions: opts.subscriptions,
    apply(msg: InboundMessage): TransformResult {
      const topic = topicFor(msg.topic);
      if (topic === undefined) {
        return { kind: 'dead', route: 'default', reason: 'bad_topic', detail: `no legal Kafka topic can be derived from MQTT topic` };
      }
      const value = opts.format === 'envelope' ? envelope(msg.topic, msg.payload) : msg.payload;
      return { kind: 'record', route: 'default', topic, key: msg.topic, value, headers: NO_HEADERS };
    },
  };
}
