import { describe, expect, it } from 'vitest';
import { createDefaultMapping, envelope, isLegalKafkaTopic, kafkaTopicFromMqtt } from '../../src/bridge/mapping.js';
import { deadLetterRecord, recordBytes, standardHeaders } from '../../src/bridge/records.js';
import { fnv1a, workerFor } from '../../src/kafka/hash.js';
import type { InboundMessage } from '../../src/mqtt/types.js';

const msg = (topic: string, payload = 'hello', extra: Partial<InboundMessage> = {}): InboundMessage => ({
  seq: 3,
  id: 'abc-3',
  topic,
  payload: Buffer.from(payload),
  qos: 1,
  retain: false,
  dup: false,
  receivedAtMs: 1_700_000_000_000,
  ...extra,
});

describe('Kafka topic from MQTT topic', () => {
  it("replaces '/' with the separator", () => {
    expect(kafkaTopicFromMqtt('spBv1.0/group/NDATA/node', '_')).toBe('spBv1.0_group_NDATA_node');
    expect(kafkaTopicFromMqtt('a/b/c', '.')).toBe('a.b.c');
    expect(kafkaTopicFromMqtt('a/b/c', '-')).toBe('a-b-c');
  });

  it('replaces characters Kafka does not allow with _', () => {
    expect(kafkaTopicFromMqtt('badge/ünï cödé/$SYS#', '_')).toBe('badge__n__c_d___SYS_');
  });

  it('cuts to 249 characters', () => {
    const t = kafkaTopicFromMqtt('x'.repeat(70_000), '_');
    expect(t).toHaveLength(249);
    expect(isLegalKafkaTopic(t!)).toBe(true);
  });

  it('gives nothing for names Kafka cannot take', () => {
    expect(kafkaTopicFromMqtt('', '_')).toBeUndefined();
    expect(kafkaTopicFromMqtt('.', '.')).toBeUndefined();
    expect(kafkaTopicFromMqtt('/', '.')).toBeUndefined(); // '..'
  });
});

describe('default mapping', () => {
  it('writes raw payloads to KAFKA_TOPIC keyed by the MQTT topic', () => {
    const m = createDefaultMapping({ topic: 'mqtt', separator: '_', format: 'raw', subscriptions: ['#'] });
    const r = m.apply(msg('cackalacky/badge/egress/b1/cp/create', '{"ts":1}'));
    expect(r).toEqual({ kind: 'record', route: 'default', topic: 'mqtt', key: 'cackalacky/badge/egress/b1/cp/create', value: Buffer.from('{"ts":1}'), headers: {} });
  });

  it("derives the topic when KAFKA_TOPIC is unset and writes Metamorphosis' envelope", () => {
    const m = createDefaultMapping({ separator: '_', format: 'envelope', subscriptions: ['#'] });
    const r = m.apply(msg('a/b', '\u0000\u00ff'));
    expect(r.kind).toBe('record');
    if (r.kind !== 'record') return;
    expect(r.topic).toBe('a_b');
    expect(JSON.parse(r.value.toString())).toEqual({ topic: 'a/b', content: Buffer.from('\u0000\u00ff').toString('base64') });
    expect(envelope('t', Buffer.from('x')).toString()).toBe('{"topic":"t","content":"eA=="}');
  });

  it('dead-letters a message whose topic yields no legal Kafka topic', () => {
    const m = createDefaultMapping({ separator: '.', format: 'raw', subscriptions: ['#'] });
    expect(m.apply(msg('/'))).toMatchObject({ kind: 'dead', reason: 'bad_topic' });
  });
});

describe('records', () => {
  it('carries the standard headers and MQTT 5 user properties, ours winning on a clash', () => {
    const h = standardHeaders(msg('t/1', 'x', { retain: true, dup: true, userProperties: { site: 'A', multi: ['1', '2'], 'mqtt.topic': 'spoofed' } }));
    expect(h).toEqual({
      site: 'A',
      multi: '1,2',
      'mqtt.topic': 't/1',
      'mqtt.qos': '1',
      'mqtt.retain': 'true',
      'mqtt.dup': 'true',
      'mqtt.received_at': '1700000000000',
      'mqtt.message_id': 'abc-3',
    });
  });

  it('dead-letter records keep the original bytes and the reason, cut to fit when too large', () => {
    const small = deadLetterRecord(msg('t', 'not json'), 'dlq', 10_000, 'invalid_json', 'r1', 'Unexpected token');
    expect(small.value.toString()).toBe('not json');
    expect(small.headers).toMatchObject({ 'dlq.reason': 'invalid_json', 'dlq.route': 'r1', 'dlq.detail': 'Unexpected token' });
    const big = deadLetterRecord(msg('t', 'x'.repeat(50_000)), 'dlq', 10_000, 'too_large', 'r1', 'big');
    expect(big.headers['dlq.original_bytes']).toBe('50000');
    expect(recordBytes(big)).toBeLessThanOrEqual(10_000);
  });
});

describe('worker hashing', () => {
  it('is stable and spreads keys over workers', () => {
    expect(fnv1a('badge-1')).toBe(fnv1a('badge-1'));
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[workerFor(fnv1a(`badge-${i}`), 4)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
  });
});
