import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeldRecords } from '../../src/bridge/held.js';
import type { DeferredResult, TransformResult } from '../../src/bridge/types.js';
import { ConfigError } from '../../src/errors.js';
import type { InboundMessage } from '../../src/mqtt/types.js';
import { createRegistryClient, RegistryError, registryTransport, type RegisteredSchema, type RegistryClient, type SchemaType } from '../../src/registry/client.js';
import { CodecFactory, type Codec } from '../../src/registry/codecs.js';
import { REFUSED_RETRY_MS, SchemaEncoder } from '../../src/registry/encoder.js';
import { compileProtobuf, messageIndexBytes } from '../../src/registry/protobuf.js';
import type { RegistryTelemetry, SchemaUse } from '../../src/registry/types.js';
import { captureLogger, tick } from './fakes.js';

// --- fakes ----------------------------------------------------------------------------------

/** A registry client whose answers the test sets: `down` makes every call unreachable, `refuse` refuses one subject. */
class FakeRegistry implements RegistryClient {
  down = false;
  refuse = new Map<string, RegistryError>();
  calls: string[] = [];
  private ids = new Map<string, number>();
  readonly versions = new Map<string, RegisteredSchema>();
  private check(what: string, subject: string): void {
    this.calls.push(`${what} ${subject}`);
    if (this.down) throw new RegistryError('unreachable', 'cannot reach the registry (ECONNREFUSED)');
    const r = this.refuse.get(subject);
    if (r) throw r;
  }
  async register(subject: string, _t: SchemaType, schema: string): Promise<number> {
    this.check('register', subject);
    let id = this.ids.get(schema);
    if (id === undefined) this.ids.set(schema, (id = this.ids.size + 1));
    return id;
  }
  async version(subject: string, version: number | 'latest'): Promise<RegisteredSchema> {
    this.check(`version ${version}`, subject);
    const v = this.versions.get(subject);
    if (!v) throw new RegistryError('refused', `HTTP 404: Subject '${subject}' not found.`, 404);
    return v;
  }
  async lookup(subject: string, t: SchemaType, schema: string): Promise<RegisteredSchema> {
    this.check('lookup', subject);
    const id = this.ids.get(schema);
    if (id === undefined) throw new RegistryError('refused', 'HTTP 404: The given schema does not match any schema under the subject', 404);
    return { id, schema, schemaType: t };
  }
  async byId(id: number): Promise<RegisteredSchema> {
    throw new Error(`not used ${id}`);
  }
}

/** A codec that frames JSON and refuses values with `bad: true`. */
const fakeCodecs = {
  created: [] as number[],
  async create(id: number): Promise<Codec> {
    fakeCodecs.created.push(id);
    return { id, encode: (v) => ((v as { bad?: boolean }).bad ? { mismatch: 'bad: true is not allowed' } : Buffer.from(`${id}:${JSON.stringify(v)}`)) };
  },
};

class CountingTelemetry implements RegistryTelemetry {
  requests: Record<string, number> = {};
  up: boolean[] = [];
  registryRequest(result: 'ok' | 'refused' | 'unreachable'): void {
    this.requests[result] = (this.requests[result] ?? 0) + 1;
  }
  registryUp(up: boolean): void {
    this.up.push(up);
  }
}

const use = (over: Partial<SchemaUse> = {}): SchemaUse => ({ route: 'r', format: 'avro', file: '/x.avsc', text: '{"type":"string"}', autoRegister: true, ...over });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function encoder(uses: SchemaUse[], client: FakeRegistry, now?: () => number) {
  const log = captureLogger();
  const telemetry = new CountingTelemetry();
  const enc = new SchemaEncoder(uses, { client, codecs: fakeCodecs, logger: log.logger, telemetry, retryMs: 20, ...(now ? { now } : {}) });
  return { enc, log, telemetry };
}

// --- the encoder ----------------------------------------------------------------------------

describe('SchemaEncoder: subjects, cache, outages and refusals', () => {
  it('resolves the subjects of static topics at start (<topic>-value) and encodes from the cache without asking again', async () => {
    const client = new FakeRegistry();
    const { enc } = encoder([use({ staticTopic: 'readings' }), use({ route: 'tpl', text: '{"type":"long"}' })], client);
    await enc.prepare();
    expect(client.calls).toEqual(['register readings-value']);
    client.down = true;
    const out = enc.encode(0, 'readings', { a: 1 });
    expect(out).toEqual({ kind: 'encoded', value: Buffer.from('1:{"a":1}') });
    expect(enc.encode(0, 'readings', { bad: true })).toEqual({ kind: 'mismatch', detail: 'bad: true is not allowed' });
    expect(client.calls).toEqual(['register readings-value']);
    enc.close();
  });

  it('a refusal at start is one ConfigError (BRIDGE_ERR_SCHEMA_REFUSED) naming route, subject, the registry\'s words and what to do; no run-time error line', async () => {
    const client = new FakeRegistry();
    client.refuse.set('readings-value', new RegistryError('refused', 'HTTP 409: Incompatible artifact', 409));
    const { enc, log } = encoder([use({ route: 'readings', staticTopic: 'readings' }), use({ route: 'ok', staticTopic: 'other' })], client);
    const err = await enc.prepare().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('BRIDGE_ERR_SCHEMA_REFUSED');
    expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^route readings: the schema registry refused subject readings-value: HTTP 409: Incompatible artifact -- the schema is not compatible/)]);
    expect(log.lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('an unreachable registry at start is not an error: records wait, one fault line, retried until it answers, then encoded', async () => {
    const client = new FakeRegistry();
    client.down = true;
    const { enc, log, telemetry } = encoder([use({ staticTopic: 'readings' })], client);
    await enc.prepare();
    const w = enc.encode(0, 'readings', { a: 1 });
    expect(w.kind).toBe('waiting');
    expect(enc.status()).toEqual({ up: false, waitingSubjects: 1, refusedSubjects: 0 });
    await sleep(100);
    expect(client.calls.length).toBeGreaterThanOrEqual(3);
    client.down = false;
    await (w as { ready: Promise<void> }).ready;
    expect(enc.encode(0, 'readings', { a: 1 }).kind).toBe('encoded');
    expect(enc.status()).toEqual({ up: false, waitingSubjects: 0, refusedSubjects: 0 }); // up once the fault has settled (5 s)
    const starts = log.lines.filter((l) => l.fault === 'schema_registry' && l.level === 'warn');
    expect(starts.length).toBe(1);
    expect(starts[0]?.code).toBe('BRIDGE_ERR_SCHEMA_REGISTRY');
    expect(telemetry.requests.unreachable).toBeGreaterThanOrEqual(3);
    expect(telemetry.requests.ok).toBe(1);
    expect(telemetry.up).toEqual([true, false]);
    enc.close();
  }, 10_000);

  it('a subject first seen at run time waits for the registry; a run-time refusal is refused (dead letter) and asked again after REFUSED_RETRY_MS', async () => {
    let now = 1_000_000;
    const client = new FakeRegistry();
    client.refuse.set('t2-value', new RegistryError('refused', 'HTTP 409: Incompatible', 409));
    const { enc, log } = encoder([use()], client, () => now);
    const w = enc.encode(0, 't1', { a: 1 });
    expect(w.kind).toBe('waiting');
    await (w as { ready: Promise<void> }).ready;
    expect(enc.encode(0, 't1', { a: 1 }).kind).toBe('encoded');
    const w2 = enc.encode(0, 't2', { a: 1 });
    await (w2 as { ready: Promise<void> }).ready;
    expect(enc.encode(0, 't2', { a: 1 })).toEqual({ kind: 'refused', detail: 'the schema registry refused subject t2-value: HTTP 409: Incompatible' });
    expect(enc.status().refusedSubjects).toBe(1);
    expect(log.lines.filter((l) => l.level === 'error' && l.subject === 't2-value').length).toBe(1);
    client.refuse.clear();
    now += REFUSED_RETRY_MS + 1;
    const w3 = enc.encode(0, 't2', { a: 1 });
    expect(w3.kind).toBe('waiting');
    await (w3 as { ready: Promise<void> }).ready;
    expect(enc.encode(0, 't2', { a: 1 }).kind).toBe('encoded');
    enc.close();
  });

  it('auto_register false: by version (the registry\'s schema, type checked) or by the file\'s schema (must be there)', async () => {
    const client = new FakeRegistry();
    client.versions.set('v-value', { id: 7, schema: '"string"', schemaType: 'AVRO', version: 3 });
    client.versions.set('p-value', { id: 8, schema: 'syntax="proto3";', schemaType: 'PROTOBUF', version: 1 });
    const { enc } = encoder(
      [
        use({ autoRegister: false, version: 'latest', file: undefined, text: undefined, staticTopic: 'v' }),
        use({ route: 'wrong-type', autoRegister: false, version: 1, staticTopic: 'p' }),
        use({ route: 'not-there', autoRegister: false, staticTopic: 'n' }),
      ],
      client,
    );
    const err = (await enc.prepare().catch((e: unknown) => e)) as ConfigError;
    expect(client.calls).toEqual(['version latest v-value', 'version 1 p-value', 'lookup n-value']);
    expect(err.problems).toEqual([
      expect.stringMatching(/^route wrong-type: .*version 1 of p-value is a PROTOBUF schema, the route's format is avro/),
      expect.stringMatching(/^route not-there: .*does not match any schema under the subject -- with auto_register: false the subject/),
    ]);
  });
});

// --- holding records ------------------------------------------------------------------------

const msg = (seq: number): InboundMessage => ({ seq, id: `m${seq}`, topic: 'x', payload: Buffer.alloc(0), qos: 1, retain: false, dup: false, receivedAtMs: 0 });
const rec = (topic: string, key: string | null, n: number): TransformResult => ({ kind: 'record', route: 'r', topic, key, value: Buffer.from(String(n)), headers: {} });

function deferred(topic: string, key: string | null, n: number): { r: DeferredResult; release: () => void; waitAgain: () => void } {
  let wake!: () => void;
  let again = false;
  let ready = new Promise<void>((r) => (wake = r));
  const r: DeferredResult = {
    kind: 'deferred',
    route: 'r',
    topic,
    key,
    get ready() {
      return ready;
    },
    resolve: () => {
      if (again) {
        again = false;
        ready = new Promise<void>((res) => (wake = res));
        return r;
      }
      return rec(topic, key, n);
    },
  };
  return { r, release: () => wake(), waitAgain: () => (again = true) };
}

describe('HeldRecords: a deferred record holds its topic and key, nothing else', () => {
  it('releases in receive order per topic and key; other keys and other topics pass; a deferred that must wait again stays at the head', async () => {
    const out: string[] = [];
    const h = new HeldRecords((m, r) => out.push(`${m.seq}:${r.kind === 'record' ? r.value.toString() : r.kind}`));
    const d1 = deferred('t', 'k', 1);
    const items: [InboundMessage, TransformResult][] = [
      [msg(1), d1.r],
      [msg(2), rec('t', 'k', 2)],
      [msg(3), rec('t', 'other', 3)],
      [msg(4), rec('u', 'k', 4)],
      [msg(5), rec('t', 'k', 5)],
    ];
    for (const [m, r] of items) {
      if (h.mustWait(r)) h.hold(m, r);
      else out.push(`${m.seq}:passed`);
    }
    expect(out).toEqual(['3:passed', '4:passed']);
    expect(h.count).toBe(3);
    d1.waitAgain();
    d1.release();
    await tick();
    expect(out).toEqual(['3:passed', '4:passed']);
    expect(h.count).toBe(3);
    d1.release();
    await tick();
    expect(out).toEqual(['3:passed', '4:passed', '1:1', '2:2', '5:5']);
    expect(h.count).toBe(0);
    expect(h.mustWait(rec('t', 'k', 6))).toBe(false);
  });

  it('releases nothing once closed (the writers may be gone; the broker redelivers)', async () => {
    const out: number[] = [];
    const h = new HeldRecords((m) => out.push(m.seq));
    const d = deferred('t', null, 1);
    h.hold(msg(1), d.r);
    h.close();
    d.release();
    await tick();
    expect(out).toEqual([]);
  });
});

// --- Protobuf -------------------------------------------------------------------------------

const PROTO = `syntax = "proto3";
package demo;
enum Kind { KIND_UNSPECIFIED = 0; HOT = 1; }
message Reading {
  string site_code = 1;
  double value = 2;
  int64 ts = 3;
  Kind kind = 4;
  repeated string tags = 5;
  map<string, int32> counts = 6;
  Inner inner = 7;
  bytes raw = 8;
  oneof unit { string text = 9; int32 code = 10; }
  message Inner { uint32 x = 1; }
}
message Other { string a = 1; message Deep { message Deeper { bool b = 1; } } }`;

describe('Protobuf: Confluent message indexes, proto3 JSON checks with declared names', () => {
  it('message indexes: [0] is one 0 byte, others zigzag varints with the count first', () => {
    expect(messageIndexBytes([0])).toEqual(Buffer.from([0]));
    expect(messageIndexBytes([1])).toEqual(Buffer.from([2, 2]));
    expect(messageIndexBytes([1, 0, 0])).toEqual(Buffer.from([6, 2, 0, 0]));
    expect(messageIndexBytes([70])).toEqual(Buffer.from([2, 0x8c, 0x01]));
    expect(compileProtobuf(PROTO).indexes).toEqual([0]);
    expect(compileProtobuf(PROTO, 'demo.Other').indexes).toEqual([1]);
    expect(compileProtobuf(PROTO, 'demo.Other.Deep.Deeper').indexes).toEqual([1, 0, 0]);
    expect(compileProtobuf(PROTO, 'Reading.Inner').indexes).toEqual([0, 0]);
    expect(() => compileProtobuf(PROTO, 'demo.Nope')).toThrow(/message demo.Nope is not defined \(messages: demo.Reading, demo.Reading.Inner, demo.Other/);
    expect(() => compileProtobuf('message {')).toThrow(/not a valid .proto file/);
  });

  it('accepts the proto3 JSON mapping and encodes what protobufjs decodes back', () => {
    const c = compileProtobuf(PROTO);
    const v = { site_code: 's1', value: 1.5, ts: '9007199254740993', kind: 'HOT', tags: ['a'], counts: { x: 2 }, inner: { x: 4 }, raw: Buffer.from('hi').toString('base64'), code: 3, text: null };
    expect(c.check(v)).toEqual([]);
    const T = protobuf.parse(PROTO, { keepCase: true }).root.lookupType('demo.Reading');
    const back = T.toObject(T.decode(c.encode(v)), { longs: String, enums: String, bytes: String });
    expect(back).toEqual({ site_code: 's1', value: 1.5, ts: '9007199254740993', kind: 'HOT', tags: ['a'], counts: { x: 2 }, inner: { x: 4 }, raw: 'aGk=', code: 3 });
    expect(c.check({ kind: 1, ts: 12 })).toEqual([]);
  });

  it('refuses what does not fit, in words naming the field and the kind of value (never its content)', () => {
    const c = compileProtobuf(PROTO);
    expect(c.check({ value: 'hot' })).toEqual(['value: a string is not a number (double)']);
    expect(c.check({ siteCode: 's' })).toEqual(['siteCode: not a field of demo.Reading']);
    expect(c.check({ kind: 'COLD' })).toEqual(['kind: a string is not a value of enum Kind (KIND_UNSPECIFIED, HOT)']);
    expect(c.check({ inner: { x: -1 } })).toEqual(['inner.x: an integer is not a uint32']);
    expect(c.check({ tags: 'a' })).toEqual(['tags: a string is not a list']);
    expect(c.check({ text: 'a', code: 1 })).toEqual(['(value): fields text, code are all set, but they are one of "unit"']);
    expect(c.check([])).toEqual(['(value): an array is not a Reading message (an object)']);
    expect(c.check({ ts: 1.5 })).toEqual(['ts: a fractional number is not a int64']);
  });
});

// --- codecs through @platformatic/kafka, against a fake registry over HTTP ------------------

describe('CodecFactory: the Confluent wire format, against a fake registry over HTTP', () => {
  const schemas = new Map<number, { schema: string; schemaType?: string }>([
    [1, { schema: JSON.stringify({ type: 'record', name: 'R', fields: [{ name: 'a', type: 'int' }, { name: 'b', type: ['null', 'string'], default: null }] }) }],
    [2, { schema: JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { at: { type: 'string', format: 'date-time' } }, additionalProperties: false }), schemaType: 'JSON' }],
    [3, { schema: PROTO, schemaType: 'PROTOBUF' }],
  ]);
  let server: Server;
  let factory: CodecFactory;
  let auth: string | undefined;
  beforeAll(async () => {
    server = createServer((req, res) => {
      auth = req.headers.authorization;
      const id = Number(/^\/schemas\/ids\/(\d+)$/.exec(req.url ?? '')?.[1]);
      const s = schemas.get(id);
      res.writeHead(s ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(s ?? { error_code: 40403, message: 'Schema not found' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const t = registryTransport({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, username: 'u', password: 'p', timeoutMs: 1000, retryMs: 100 });
    factory = new CodecFactory(createRegistryClient(t), t);
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('avro: magic byte, schema id, Avro binary; mismatch names the field, undeclared fields too', async () => {
    const c = await factory.create(1, 'avro', undefined);
    expect(auth).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(c.encode({ a: 1 })).toEqual(Buffer.from([0, 0, 0, 0, 1, 2, 0]));
    expect(c.encode({ a: 'x' })).toEqual({ mismatch: 'a: a string is not an int' });
    expect(c.encode({ a: 1, c: true })).toEqual({ mismatch: '(value): "c" not in the schema of R' });
  });

  it('json_schema: magic byte, schema id, JSON text; formats are checked; ajv\'s words', async () => {
    const c = await factory.create(2, 'json_schema', undefined);
    const v = c.encode({ at: '2026-12-01T00:00:00Z' }) as Buffer;
    expect(v.subarray(0, 5)).toEqual(Buffer.from([0, 0, 0, 0, 2]));
    expect(v.subarray(5).toString()).toBe('{"at":"2026-12-01T00:00:00Z"}');
    expect(c.encode({ at: 'yesterday' })).toEqual({ mismatch: '/at must match format "date-time"' });
    expect(c.encode({ x: 1 })).toEqual({ mismatch: '(value) must NOT have additional properties ("x")' });
  });

  it('protobuf: magic byte, schema id, message indexes, Protobuf binary', async () => {
    const c = await factory.create(3, 'protobuf', 'demo.Other');
    expect(c.encode({ a: 'z' })).toEqual(Buffer.from([0, 0, 0, 0, 3, 2, 2, 0x0a, 1, 0x7a]));
    expect(c.encode({ b: 1 })).toEqual({ mismatch: 'b: not a field of demo.Other' });
  });

  it('a schema of another type than the route\'s format, or an unknown id, is refused', async () => {
    await expect(factory.create(1, 'json_schema', undefined)).rejects.toMatchObject({ kind: 'refused', message: expect.stringMatching(/schema id 1 is AVRO, not JSON/) });
    await expect(factory.create(1, 'protobuf', undefined)).rejects.toMatchObject({ kind: 'refused' });
    await expect(factory.create(99, 'avro', undefined)).rejects.toMatchObject({ kind: 'refused', message: expect.stringMatching(/HTTP 404/) });
  });

  it('a registry that does not answer is unreachable, not refused', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const t = registryTransport({ url: `http://127.0.0.1:${port}`, timeoutMs: 500, retryMs: 100 });
    const f = new CodecFactory(createRegistryClient(t), t);
    await expect(f.create(1, 'avro', undefined)).rejects.toMatchObject({ kind: 'unreachable' });
    await expect(f.create(3, 'protobuf', undefined)).rejects.toMatchObject({ kind: 'unreachable' });
    await expect(createRegistryClient(t).register('s', 'AVRO', '"string"')).rejects.toMatchObject({ kind: 'unreachable', message: expect.stringMatching(/ECONNREFUSED/) });
  });
});

describe('the registry over TLS', () => {
  it('trusts the CA of SCHEMA_REGISTRY_TLS_CA; a wrong CA is refused (a configuration problem, not an outage) with what to check', async () => {
    const { makeTestPki } = await import('../harness/certs.js');
    const { createServer: createHttps } = await import('node:https');
    const { readFileSync } = await import('node:fs');
    const pki = makeTestPki();
    const server = createHttps({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 5 }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const good = registryTransport({ url, tls: { caFile: pki.caCert, insecure: false }, timeoutMs: 2000, retryMs: 100 });
      expect(await createRegistryClient(good).register('s', 'AVRO', '"string"')).toBe(5);
      const wrong = registryTransport({ url, tls: { caFile: pki.otherCaCert, insecure: false }, timeoutMs: 2000, retryMs: 100 });
      await expect(createRegistryClient(wrong).register('s', 'AVRO', '"string"')).rejects.toMatchObject({ kind: 'refused', message: expect.stringMatching(/TLS handshake with the schema registry failed: .*check SCHEMA_REGISTRY_TLS_CA/) });
      await expect(new CodecFactory(createRegistryClient(wrong), wrong).create(5, 'avro', undefined)).rejects.toMatchObject({ kind: 'refused', message: expect.stringMatching(/check SCHEMA_REGISTRY_TLS_CA/) });
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
