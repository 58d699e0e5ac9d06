import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, topicFilterProblem } from '../../src/config/load.js';
import { configProblems } from './fakes.js';

const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
const notADir = join(dir, 'file');
writeFileSync(notADir, 'x');
const base = { MQTT_BROKER: 'localhost', MQTT_TOPIC: 'a/#', KAFKA_BROKER: 'kafka', SPOOL_PATH: join(dir, 'spool.db') };

const problems = configProblems;

describe('configuration', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig(base, { hostname: () => 'pod-0' });
    expect(c.mqtt).toMatchObject({ url: 'mqtt://localhost:1883', topics: ['a/#'], clientId: 'pod-0', qos: 1, protocolVersion: 5, maxInFlight: 10000 });
    expect(c.kafka).toMatchObject({ brokers: ['kafka:9092'], workers: 4, autoCreateTopics: false });
    expect(c.mapping).toMatchObject({ topic: undefined, separator: '_', format: 'raw', dlqTopic: 'mqtt-dead-letter' });
    expect(c.spool).toMatchObject({ replayIntervalMs: 10000, fullPolicy: 'block' });
    expect(c.http.port).toBe(8080);
  });

  it('is frozen after start', () => {
    const c = loadConfig(base);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.mqtt.topics)).toBe(true);
  });

  it('reads Metamorphosis variables with their meaning', () => {
    const c = loadConfig({ ...base, MQTT_TOPIC: 'a/#, b/+/c ,', MQTT_CLIENT_ID: 'bridge-%h', KAFKA_PORT: '9093', KAFKA_TOPIC: 'mqtt', KAFKA_WORKERS: '5', HEALTH_PORT: '9000', LOG_LEVEL: 'TRACE' }, { hostname: () => 'h1' });
    expect(c.mqtt.topics).toEqual(['a/#', 'b/+/c']);
    expect(c.mqtt.clientId).toBe('bridge-h1');
    expect(c.kafka.brokers).toEqual(['kafka:9093']);
    expect(c.mapping.topic).toBe('mqtt');
    expect(c.kafka.workers).toBe(5);
    expect(c.logLevel).toBe('trace');
  });

  it('accepts KAFKA_BROKERS as a host:port list and MQTT URLs', () => {
    const { KAFKA_BROKER: _, ...rest } = base;
    const c = loadConfig({ ...rest, KAFKA_BROKERS: 'k1:9092,k2:9093', MQTT_BROKER: 'mqtts://broker.example' });
    expect(c.kafka.brokers).toEqual(['k1:9092', 'k2:9093']);
    expect(c.mqtt.url).toBe('mqtts://broker.example:1883');
  });

  it('ignores Kubernetes service-link values such as KAFKA_PORT=tcp://…', () => {
    const c = loadConfig({ ...base, KAFKA_PORT: 'tcp://10.0.0.1:9092', KAFKA_PORT_9092_TCP: 'tcp://10.0.0.1:9092', KAFKA_SERVICE_HOST: '10.0.0.1' });
    expect(c.kafka.brokers).toEqual(['kafka:9092']);
    expect(c.warnings).toEqual([]);
  });

  it('warns about unknown MQTT_/KAFKA_/SPOOL_ variables (misspellings) without failing', () => {
    const c = loadConfig({ ...base, KAFKA_WORKER: '3' });
    expect(c.warnings).toEqual([expect.stringContaining('KAFKA_WORKER')]);
  });

  it('names every missing required variable in one error', () => {
    const p = problems({ SPOOL_PATH: base.SPOOL_PATH });
    expect(p).toEqual(
      expect.arrayContaining([expect.stringMatching(/^MQTT_BROKER: required/), expect.stringMatching(/^MQTT_TOPIC: required/), expect.stringMatching(/^KAFKA_BROKER or KAFKA_BROKERS: required/)]),
    );
  });

  it.each([
    ['MQTT_PORT', '70000', /MQTT_PORT: must be at most 65535 \(got '70000'\)/],
    ['MQTT_PORT', 'abc', /MQTT_PORT: must be an integer/],
    ['MQTT_QOS', '2', /MQTT_QOS: must be at most 1/],
    ['MQTT_VERSION', '3', /MQTT_VERSION: must be at least 4/],
    ['KAFKA_WORKERS', '0', /KAFKA_WORKERS: must be at least 1/],
    ['KAFKA_AUTO_CREATE_TOPICS', 'maybe', /KAFKA_AUTO_CREATE_TOPICS: must be true or false/],
    ['MESSAGE_FORMAT', 'xml', /MESSAGE_FORMAT: must be one of raw, envelope/],
    ['SPOOL_FULL_POLICY', 'panic', /SPOOL_FULL_POLICY: must be one of block, drop_oldest, drop_newest/],
    ['KAFKA_TOPIC_SEPARATOR', '/', /KAFKA_TOPIC_SEPARATOR: must be '_', '.' or '-'/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL: must be one of/],
    ['MQTT_TOPIC', 'a/#/b', /MQTT_TOPIC: 'a\/#\/b' has '#' that is not alone in the last level/],
    ['MQTT_BROKER', 'http://x', /MQTT_BROKER: unsupported scheme 'http:'/],
    ['KAFKA_BROKERS', 'k1,k2:x', /KAFKA_BROKERS: 'k1' is not host:port/],
    ['SPOOL_PATH', join(notADir, 'spool.db'), /SPOOL_PATH: '.*' is not writable/],
  ])('rejects %s=%s with a message naming it', (name, value, re) => {
    const p = problems({ ...base, [name]: value });
    expect(p.some((m) => re.test(m))).toBe(true);
  });

  it('lists several problems together', () => {
    const p = problems({ ...base, MQTT_PORT: 'x', KAFKA_WORKERS: '-1', MESSAGE_FORMAT: 'xml' });
    expect(p).toHaveLength(3);
  });

  it('reads secrets from *_FILE and never echoes them in errors', () => {
    const c = loadConfig({ ...base, MQTT_PASSWORD_FILE: '/run/secrets/pw' }, { readFile: () => 's3cret\n' });
    expect(c.mqtt.password).toBe('s3cret');
    const p = problems({ ...base, MQTT_PASSWORD: 'hunter2', MQTT_PASSWORD_FILE: '/x' });
    expect(p.join('\n')).not.toContain('hunter2');
    expect(p).toEqual([expect.stringContaining('MQTT_PASSWORD and MQTT_PASSWORD_FILE are both set')]);
  });

  it('validates MQTT topic filters', () => {
    expect(topicFilterProblem('a/+/b/#')).toBeUndefined();
    expect(topicFilterProblem('a+/b')).toMatch(/'\+'/);
    expect(topicFilterProblem('')).toMatch(/empty/);
  });
});

describe('node version', () => {
  it('accepts Node 24.6 and later, refuses older with a line naming the version needed', async () => {
    const { unsupportedNode } = await import('../../src/node-version.js');
    for (const ok of ['24.6.0', '24.21.0', '25.1.0', '26.0.0']) expect(unsupportedNode(ok)).toBeUndefined();
    for (const bad of ['20.20.2', '22.22.0', '24.5.9']) expect(unsupportedNode(bad)).toMatch(new RegExp(`^Node ${bad.replace(/\./g, '\\.')} is not supported: .*Node 24 LTS \\(24\\.6 or later\\)`));
  });
});
