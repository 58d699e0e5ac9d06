import { fnv1a } from '../kafka/hash.js';
import type { OutRecord, Pending } from '../kafka/types.js';
import type { InboundMessage } from '../mqtt/types.js';
import type { DeadLetterReason } from './types.js';

/** Standard headers on every record (documented in README "Record format"). */
export const HEADER = {
  topic: 'mqtt.topic',
  qos: 'mqtt.qos',
  retain: 'mqtt.retain',
  dup: 'mqtt.dup',
  receivedAt: 'mqtt.received_at',
  messageId: 'mqtt.message_id',
  dlqReason: 'dlq.reason',
  dlqDetail: 'dlq.detail',
  dlqRoute: 'dlq.route',
  dlqTruncated: 'dlq.original_bytes',
  dlqTopicBytes: 'dlq.topic_bytes',
} as const;

/** How much of a very long MQTT topic a dead letter keeps (key and `mqtt.topic` header). */
const DLQ_TOPIC_KEEP = 1024;

/** The standard mqtt.* headers, then MQTT 5 user properties (which never override ours). */
export function standardHeaders(msg: InboundMessage): Record<string, string> {
  const h: Record<string, string> = {};
  const up = msg.userProperties;
  if (up) {
    for (const [k, v] of Object.entries(up)) h[k] = Array.isArray(v) ? v.join(',') : v;
  }
  h[HEADER.topic] = msg.topic;
  h[HEADER.qos] = String(msg.qos);
  h[HEADER.retain] = msg.retain ? 'true' : 'false';
  h[HEADER.dup] = msg.dup ? 'true' : 'false';
  h[HEADER.receivedAt] = String(msg.receivedAtMs);
  h[HEADER.messageId] = msg.id;
  return h;
}

/** Bytes Kafka will count for this record (value, key, headers), without batch overhead. */
export function recordBytes(r: Pick<OutRecord, 'key' | 'value' | 'headers'>): number {
  let n = r.value.length + (r.key === null ? 0 : Buffer.byteLength(r.key));
  const h = r.headers;
  for (const k in h) n += k.length + Buffer.byteLength(h[k]!);
  return n + 64;
}

export function pending(msg: InboundMessage, record: OutRecord, bytes = recordBytes(record)): Pending {
  return {
    record,
    seq: msg.seq,
    id: msg.id,
    keyHash: fnv1a(record.key ?? record.topic),
    receivedAtMs: msg.receivedAtMs,
    bytes,
  };
}

/**
 * A dead-letter record: the original payload bytes, keyed by the MQTT topic, with the reason in
 * headers. A payload too large for Kafka is cut to fit and `dlq.original_bytes` says so.
 */
export function deadLetterRecord(
  msg: InboundMessage,
  dlqTopic: string,
  maxBytes: number,
  reason: DeadLetterReason,
  route: string,
  detail: string,
): OutRecord {
  const headers = standardHeaders(msg);
  // MQTT allows 65,535-byte topics; in both the key and a header that alone can exceed what Kafka
  // takes. Keep the first 1 KiB of each and say how long the topic was.
  const long = Buffer.byteLength(msg.topic) > DLQ_TOPIC_KEEP;
  const key = long ? msg.topic.slice(0, DLQ_TOPIC_KEEP) : msg.topic;
  if (long) {
    headers[HEADER.topic] = key;
    headers[HEADER.dlqTopicBytes] = String(Buffer.byteLength(msg.topic));
  }
  headers[HEADER.dlqReason] = reason;
  headers[HEADER.dlqRoute] = route;
  headers[HEADER.dlqDetail] = detail.slice(0, 1024);
  let value = msg.payload;
  const room = maxBytes - recordBytes({ key, value: Buffer.alloc(0), headers }) - 64;
  if (value.length > room) {
    headers[HEADER.dlqTruncated] = String(value.length);
    value = value.subarray(0, Math.max(0, room));
  }
  return { topic: dlqTopic, key, value, headers, timestampMs: msg.receivedAtMs };
}
