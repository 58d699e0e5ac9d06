import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { buildTransform } from '../../src/main.js';
import { compileRoutes, loadRoutesFile } from '../../src/bridge/routes/index.js';
import type { DeferredResult, TransformResult } from '../../src/bridge/types.js';
import { ConfigError } from '../../src/errors.js';
import type { InboundMessage } from '../../src/mqtt/types.js';
import type { EncodeOutcome, ValueEncoder } from '../../src/registry/types.js';
import { configProblems } from './fakes.js';

const dir = mkdtempSync(join(tmpdir(), 'routes-registry-'));
writeFileSync(join(dir, 'r.avsc'), '{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}');
const opts = { separator: '_' as const, maxMessageBytes: 1000, baseDir: dir };
const msg = (topic: string, payload: string): InboundMessage => ({ seq: 1, id: 'm1', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false, receivedAtMs: 0 });

function problems(routes: unknown[]): string[] {
  try {
    compileRoutes({ routes }, 'routes.yaml', opts);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  return [];
}

/** Records what it was asked; answers from `next`. */
class FakeEncoder implements ValueEncoder {
  asked: [number, string, unknown][] = [];
  next: EncodeOutcome = { kind: 'encoded', value: Buffer.from('x') };
  encode(use: number, topic: string, value: unknown): EncodeOutcome {
    this.asked.push([use, topic, structuredClone(value)]);
    return this.next;
  }
}

describe('routes in a registry format', () => {
  it('checks the schema setting at load: required, only on registry formats, version vs file, readable file', () => {
    const r = (extra: Record<string, unknown>) => ({ name: 'x', match: 'a/{b}', topic: 't', ...extra });
    expect(problems([r({ format: 'avro' })])).toEqual([expect.stringContaining('format avro needs a schema: a file (.avsc)')]);
    expect(problems([r({ format: 'json', schema: 'r.avsc' })])).toEqual([expect.stringContaining('schema: only the formats avro, protobuf, json_schema take a schema (format is json)')]);
    expect(problems([r({ format: 'avro', schema: { file: 'r.avsc', version: 2 } })])).toEqual([expect.stringContaining('schema.version: a version is looked up, not registered: set auto_register: false with it')]);
    expect(problems([r({ format: 'avro', schema: { auto_register: false } })])).toEqual([expect.stringContaining('with auto_register: false give the version')]);
    expect(problems([r({ format: 'avro', schema: { auto_register: false, version: 'first' } })])).toEqual([expect.stringContaining('schema.version: must be latest or a version number')]);
    expect(problems([r({ format: 'avro', schema: { file: 'r.avsc', message: 'a.B' } })])).toEqual([expect.stringContaining('schema.message: only protobuf schemas name a message')]);
    expect(problems([r({ format: 'avro', schema: { fil: 'r.avsc' } })])).toEqual([expect.stringContaining('schema: unknown field "fil" (did you mean "file"?)'), expect.stringContaining('schema.file: auto_register needs the schema file to register')]);
    expect(problems([r({ format: 'protobuf', schema: 'missing.proto' })])).toEqual([expect.stringMatching(/schema: cannot read the schema file '.*missing\.proto' \(ENOENT\)/)]);
    expect(problems([r({ format: 'avro', schema: 'r.avsc', require: { a: 'integer' }, enrich: { b: '{b}' } })])).toEqual([]);
  });

  it('lists its schemas (file read, static topic known), and encodes the value after require and enrich', () => {
    const t = compileRoutes({ routes: [{ name: 'x', match: 'a/{b}', topic: 'in-{b}', key: '{b}', format: 'avro', schema: 'r.avsc', enrich: { b: '{b}' }, drop: ['secret'] }, { name: 'y', match: 'c/#', topic: 'fixed', format: 'json_schema', schema: { auto_register: false, version: 3 } }] }, 'routes.yaml', opts);
    expect(t.schemaUses).toEqual([
      { route: 'x', format: 'avro', file: join(dir, 'r.avsc'), text: expect.stringContaining('"name":"R"'), autoRegister: true, version: undefined, message: undefined, staticTopic: undefined },
      { route: 'y', format: 'json_schema', file: undefined, text: undefined, autoRegister: false, version: 3, message: undefined, staticTopic: 'fixed' },
    ]);
    const enc = new FakeEncoder();
    t.useEncoder(enc);
    const r = t.apply(msg('a/k1', '{"a":1,"secret":2}'));
    expect(r).toMatchObject({ kind: 'record', topic: 'in-k1', key: 'k1', value: Buffer.from('x') });
    expect(enc.asked).toEqual([[0, 'in-k1', { a: 1, b: 'k1' }]]);
    enc.next = { kind: 'mismatch', detail: 'a: "x" is not an int' };
    expect(t.apply(msg('a/k1', '{"a":"x"}'))).toEqual({ kind: 'dead', route: 'x', reason: 'schema_mismatch', detail: 'a: "x" is not an int' });
    enc.next = { kind: 'refused', detail: 'HTTP 409' };
    expect(t.apply(msg('c/d', '{}'))).toEqual({ kind: 'dead', route: 'y', reason: 'schema_refused', detail: 'HTTP 409' });
    expect(t.apply(msg('a/k1', 'not json'))).toMatchObject({ kind: 'dead', reason: 'invalid_json' });
    enc.next = { kind: 'encoded', value: Buffer.alloc(1001) };
    expect(t.apply(msg('a/k1', '{}'))).toMatchObject({ kind: 'dead', reason: 'too_large' });
  });

  it('a value whose schema id is not known yet is deferred, keeps topic and key, and resolves to the record later', async () => {
    const t = compileRoutes({ routes: [{ name: 'x', match: 'a/{b}', topic: 'in', key: '{b}', format: 'avro', schema: 'r.avsc' }] }, 'routes.yaml', opts);
    const enc = new FakeEncoder();
    t.useEncoder(enc);
    enc.next = { kind: 'waiting', ready: Promise.resolve() };
    const r = t.apply(msg('a/k1', '{"a":1}')) as DeferredResult;
    expect(r).toMatchObject({ kind: 'deferred', route: 'x', topic: 'in', key: 'k1' });
    enc.next = { kind: 'encoded', value: Buffer.from('late') };
    const done: TransformResult = r.resolve();
    expect(done).toEqual({ kind: 'record', route: 'x', topic: 'in', key: 'k1', value: Buffer.from('late'), headers: {} });
    expect(enc.asked.map((a) => a[2])).toEqual([{ a: 1 }, { a: 1 }]);
  });

  it('without an encoder (no registry configured) the records are schema_refused dead letters, never thrown', () => {
    // Schema files are found beside the routes file (no baseDir given).
    const t = loadRoutesFile(join(dir, writeRoutes()), { separator: '_', maxMessageBytes: 1000 });
    expect(t.apply(msg('a/k', '{"a":1}'))).toMatchObject({ kind: 'dead', reason: 'schema_refused' });
  });

  it('MESSAGE_FORMAT=avro without a routes file is the default mapping as one avro rule', () => {
    const env = { MQTT_BROKER: 'localhost', MQTT_TOPIC: 'a/#', KAFKA_BROKER: 'k', SPOOL_PATH: join(dir, 'spool.db'), MESSAGE_FORMAT: 'avro', MESSAGE_SCHEMA_FILE: join(dir, 'r.avsc'), SCHEMA_REGISTRY_URL: 'http://registry:8081' };
    expect(configProblems({ ...env, SCHEMA_REGISTRY_URL: '' })).toEqual(['SCHEMA_REGISTRY_URL: required with MESSAGE_FORMAT=avro']);
    expect(configProblems({ ...env, MESSAGE_SCHEMA_FILE: '' })).toEqual([expect.stringContaining('MESSAGE_SCHEMA_FILE: required with MESSAGE_FORMAT=avro')]);
    const t = buildTransform(loadConfig(env));
    expect(t.schemaUses).toEqual([expect.objectContaining({ route: 'default', format: 'avro', file: join(dir, 'r.avsc'), autoRegister: true })]);
    const enc = new FakeEncoder();
    t.useEncoder?.(enc);
    expect(t.apply(msg('a/b/c', '{"a":1}'))).toMatchObject({ kind: 'record', topic: 'a_b_c', key: 'a/b/c' });
  });
});

function writeRoutes(): string {
  writeFileSync(join(dir, 'routes.yaml'), 'routes:\n  - name: x\n    match: a/{b}\n    topic: in\n    format: avro\n    schema: r.avsc\n');
  return 'routes.yaml';
}

describe('SCHEMA_REGISTRY_* settings', () => {
  const env = { MQTT_BROKER: 'localhost', MQTT_TOPIC: 'a/#', KAFKA_BROKER: 'k', SPOOL_PATH: join(dir, 'spool.db') };
  it('are validated at start with the rest, secrets never echoed', () => {
    expect(configProblems({ ...env, SCHEMA_REGISTRY_URL: 'ftp://r' })).toEqual(["SCHEMA_REGISTRY_URL: unsupported scheme 'ftp:' (use http or https)"]);
    expect(configProblems({ ...env, SCHEMA_REGISTRY_URL: 'http://u:hunter2@r:8081' }).join('\n')).not.toContain('hunter2');
    expect(configProblems({ ...env, SCHEMA_REGISTRY_URL: 'http://r', SCHEMA_REGISTRY_TOKEN: 't', SCHEMA_REGISTRY_USERNAME: 'u', SCHEMA_REGISTRY_PASSWORD: 'p' })).toEqual([expect.stringContaining('SCHEMA_REGISTRY_TOKEN and SCHEMA_REGISTRY_USERNAME/PASSWORD are both set')]);
    expect(configProblems({ ...env, SCHEMA_REGISTRY_URL: 'http://r', SCHEMA_REGISTRY_USERNAME: 'u' })).toEqual([expect.stringContaining('SCHEMA_REGISTRY_PASSWORD: required with SCHEMA_REGISTRY_USERNAME')]);
    expect(configProblems({ ...env, SCHEMA_REGISTRY_URL: 'http://r', SCHEMA_REGISTRY_TLS_CA: '/ca.pem' })).toEqual(['SCHEMA_REGISTRY_TLS_CA set, but SCHEMA_REGISTRY_URL uses http:// (no TLS): use https://']);
    expect(configProblems({ ...env, SCHEMA_REGISTRY_URL: 'https://r', SCHEMA_REGISTRY_TLS_CA: join(dir, 'nope.pem') })).toEqual([expect.stringContaining("SCHEMA_REGISTRY_TLS_CA: cannot read '")]);
    expect(configProblems({ ...env, SCHEMA_REGISTRY_PASSWORD: 'p' })).toEqual(['SCHEMA_REGISTRY_PASSWORD set, but SCHEMA_REGISTRY_URL is not']);
    const pwFile = join(dir, 'pw');
    writeFileSync(pwFile, 's3cret\n');
    const c = loadConfig({ ...env, SCHEMA_REGISTRY_URL: 'https://r:8081/apis/ccompat/v7/', SCHEMA_REGISTRY_USERNAME: 'u', SCHEMA_REGISTRY_PASSWORD_FILE: pwFile, SCHEMA_REGISTRY_TIMEOUT_MS: '2000' });
    expect(loadConfig({ ...env, SCHEMA_REGISTRY_ULR: 'http://r' }).warnings).toEqual(['SCHEMA_REGISTRY_ULR is not a setting of this bridge (misspelled?); ignored']);
    expect(c.registry).toEqual({ url: 'https://r:8081/apis/ccompat/v7', username: 'u', password: 's3cret', token: undefined, tls: { caFile: undefined, certFile: undefined, keyFile: undefined, keyPassphrase: undefined, insecure: false }, timeoutMs: 2000, retryMs: 5000 });
  });
});
