import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError, describeError } from '../../src/errors.js';
import { AuthenticationError, MultipleErrors, NetworkError, ResponseError } from '@platformatic/kafka';
import { classifyKafkaError } from '../../src/kafka/errors.js';
import { buildKafkaSecurity, explainKafkaSecurityError } from '../../src/kafka/security.js';
import { buildMqttClientOptions, explainMqttError } from '../../src/mqtt/tls.js';
import { createLogger, redactUrl } from '../../src/observability/logger.js';
import { makeTestPki, type TestPki } from '../harness/certs.js';
import { configProblems } from './fakes.js';

const dir = mkdtempSync(join(tmpdir(), 'sec-cfg-'));
const base = { MQTT_BROKER: 'broker.example', MQTT_TOPIC: 'a/#', KAFKA_BROKER: 'kafka', SPOOL_PATH: join(dir, 'spool.db') };
// Distinctive values: no error text, warning or log line may ever contain them.
const SECRETS = ['Sup3r-MQTT-pass', 'kafka-SASL-s3cret', 'key-pass-Xy9', 'client-key-pass'];

let pki: TestPki;
let notPem: string;
let secretFile: string;

beforeAll(() => {
  pki = makeTestPki(join(dir, 'pki'), 'client-key-pass');
  notPem = join(dir, 'not-pem.txt');
  writeFileSync(notPem, 'hello\n');
  secretFile = join(dir, 'sasl-password');
  writeFileSync(secretFile, 'kafka-SASL-s3cret\n');
});

function problems(env: Record<string, string>): string[] {
  return configProblems({ ...base, ...env }, (err) => {
    for (const s of SECRETS) expect(err.message).not.toContain(s);
  });
}

const mqttClient = () => ({ MQTT_CLIENT_CERT: pki.clientCert, MQTT_CLIENT_KEY: pki.clientKey, MQTT_KEY_PASSPHRASE: pki.clientKeyPassphrase });

describe('MQTT TLS configuration', () => {
  it('ROOT_CA turns TLS on for a bare host name (mqtts://) and keeps the paths', () => {
    const c = loadConfig({ ...base, ROOT_CA: pki.caCert, MQTT_PORT: '8883' });
    expect(c.mqtt.url).toBe('mqtts://broker.example:8883');
    expect(c.mqtt.tls).toEqual({ caFile: pki.caCert, certFile: undefined, keyFile: undefined, keyPassphrase: undefined, insecure: false });
    expect(c.warnings).toEqual([]);
  });

  it('a client certificate alone turns TLS on too; mqtts:// and wss:// URLs use TLS without any file', () => {
    expect(loadConfig({ ...base, ...mqttClient() }).mqtt.url).toBe('mqtts://broker.example:1883');
    expect(loadConfig({ ...base, MQTT_BROKER: 'mqtts://b:8883' }).mqtt.tls).toMatchObject({ insecure: false, caFile: undefined });
    const ws = loadConfig({ ...base, MQTT_BROKER: 'wss://b:443/mqtt', ROOT_CA: pki.caCert });
    expect(ws.mqtt.url).toBe('wss://b/mqtt'); // 443 is implied by wss
    expect(ws.mqtt.tls?.caFile).toBe(pki.caCert);
  });

  it('plain-text URLs have no TLS settings; ws:// works unchanged', () => {
    expect(loadConfig(base).mqtt.tls).toBeUndefined();
    const c = loadConfig({ ...base, MQTT_BROKER: 'ws://b:9001/mqtt' });
    expect(c.mqtt.url).toBe('ws://b:9001/mqtt');
    expect(c.mqtt.tls).toBeUndefined();
  });

  it('refuses TLS files with an explicit plain-text scheme', () => {
    expect(problems({ MQTT_BROKER: 'mqtt://b:1883', ROOT_CA: pki.caCert })).toEqual([expect.stringMatching(/^ROOT_CA set, but MQTT_BROKER uses mqtt:\/\/ \(no TLS\): use mqtts:\/\//)]);
    expect(problems({ MQTT_BROKER: 'ws://b:80', ...mqttClient() })).toEqual([expect.stringMatching(/MQTT_CLIENT_CERT, MQTT_CLIENT_KEY set, but MQTT_BROKER uses ws:\/\/ .*use wss:\/\//)]);
  });

  it('reads an encrypted client key with its passphrase (also from MQTT_KEY_PASSPHRASE_FILE)', () => {
    const c = loadConfig({ ...base, ROOT_CA: pki.caCert, ...mqttClient() });
    expect(c.mqtt.tls).toMatchObject({ certFile: pki.clientCert, keyFile: pki.clientKey, keyPassphrase: 'client-key-pass' });
    const passFile = join(dir, 'key-pass');
    writeFileSync(passFile, 'client-key-pass\n');
    const { MQTT_KEY_PASSPHRASE: _, ...noPass } = mqttClient();
    const f = loadConfig({ ...base, ...noPass, MQTT_KEY_PASSPHRASE_FILE: passFile });
    expect(f.mqtt.tls?.keyPassphrase).toBe('client-key-pass');
    // An unencrypted key needs no passphrase.
    expect(loadConfig({ ...base, MQTT_CLIENT_CERT: pki.clientCert, MQTT_CLIENT_KEY: pki.clientKeyPlain }).mqtt.tls?.keyFile).toBe(pki.clientKeyPlain);
  });

  it.each([
    ['missing file', { ROOT_CA: join(dir, 'nope.crt') }, /^ROOT_CA: cannot read '.*nope\.crt' \(ENOENT\)$/],
    ['a directory', { ROOT_CA: dir }, /^ROOT_CA: cannot read '.*' \(EISDIR\)$/],
    ['not PEM', { ROOT_CA: 'NOT_PEM' }, /^ROOT_CA: '.*not-pem\.txt' holds no PEM certificate/],
    ['broken PEM', { ROOT_CA: 'BROKEN' }, /^ROOT_CA: certificate 1 in '.*' is not a valid X\.509 certificate$/],
    ['cert without key', { MQTT_CLIENT_CERT: 'CLIENT_CERT' }, /^MQTT_CLIENT_CERT: set, but MQTT_CLIENT_KEY is not/],
    ['key without cert', { MQTT_CLIENT_KEY: 'CLIENT_KEY_PLAIN' }, /^MQTT_CLIENT_KEY: set, but MQTT_CLIENT_CERT is not/],
    ['passphrase without key', { MQTT_BROKER: 'mqtts://b', MQTT_KEY_PASSPHRASE: 'key-pass-Xy9' }, /^MQTT_KEY_PASSPHRASE: set, but MQTT_CLIENT_KEY is not$/],
    ['passphrase without TLS', { MQTT_KEY_PASSPHRASE: 'key-pass-Xy9' }, /^MQTT_KEY_PASSPHRASE: set, but MQTT_CLIENT_KEY is not$/],
    ['encrypted key, no passphrase', { MQTT_CLIENT_CERT: 'CLIENT_CERT', MQTT_CLIENT_KEY: 'CLIENT_KEY' }, /^MQTT_CLIENT_KEY: the key in '.*' is encrypted; set MQTT_KEY_PASSPHRASE \(or MQTT_KEY_PASSPHRASE_FILE\)$/],
    ['wrong passphrase', { MQTT_CLIENT_CERT: 'CLIENT_CERT', MQTT_CLIENT_KEY: 'CLIENT_KEY', MQTT_KEY_PASSPHRASE: 'key-pass-Xy9' }, /^MQTT_CLIENT_KEY: cannot decrypt the key in '.*' \(wrong MQTT_KEY_PASSPHRASE\?\)$/],
    ['key is a certificate', { MQTT_CLIENT_CERT: 'CLIENT_CERT', MQTT_CLIENT_KEY: 'CA_CERT' }, /^MQTT_CLIENT_KEY: '.*' holds no PEM private key/],
    ['key of another certificate', { MQTT_CLIENT_CERT: 'CLIENT_CERT', MQTT_CLIENT_KEY: 'SERVER_KEY' }, /^MQTT_CLIENT_CERT and MQTT_CLIENT_KEY: the key '.*server\.key' does not belong to the certificate/],
    ['insecure is a boolean', { MQTT_BROKER: 'mqtts://b', MQTT_TLS_INSECURE: 'sometimes' }, /^MQTT_TLS_INSECURE: must be true or false/],
  ])('%s is a config error naming the variable', (_name, env, expected) => {
    const broken = join(dir, 'broken.crt');
    writeFileSync(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const files: Record<string, string> = { CLIENT_CERT: pki.clientCert, CLIENT_KEY: pki.clientKey, CLIENT_KEY_PLAIN: pki.clientKeyPlain, CA_CERT: pki.caCert, SERVER_KEY: pki.serverKey, BROKEN: broken, NOT_PEM: notPem };
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, files[v] ?? v]));
    expect(problems(resolved)).toEqual([expect.stringMatching(expected)]);
  });

  it('MQTT_TLS_INSECURE warns at start; without TLS it warns that it does nothing', () => {
    const c = loadConfig({ ...base, MQTT_BROKER: 'mqtts://b:8883', MQTT_TLS_INSECURE: 'true' });
    expect(c.mqtt.tls?.insecure).toBe(true);
    expect(c.warnings).toEqual([expect.stringMatching(/^MQTT_TLS_INSECURE=true: the MQTT broker's certificate and host name are NOT verified/)]);
    expect(loadConfig({ ...base, MQTT_TLS_INSECURE: 'yes' }).warnings).toEqual([expect.stringMatching(/MQTT_TLS_INSECURE has no effect/)]);
  });

  it('never echoes credentials from an invalid MQTT_BROKER URL', () => {
    const p = problems({ MQTT_BROKER: 'mqtt://bridge:Sup3r-MQTT-pass@[bad' });
    expect(p).toEqual([expect.stringContaining("MQTT_BROKER: 'mqtt://[redacted]@[bad' is not a valid URL")]);
  });
});

describe('Kafka TLS and SASL configuration', () => {
  it('KAFKA_TLS=true alone uses TLS with the system CAs; a CA file turns TLS on by itself', () => {
    expect(loadConfig({ ...base, KAFKA_TLS: 'true' }).kafka.tls).toEqual({ caFile: undefined, certFile: undefined, keyFile: undefined, keyPassphrase: undefined, insecure: false });
    expect(loadConfig({ ...base, KAFKA_TLS_CA: pki.caCert }).kafka.tls?.caFile).toBe(pki.caCert);
    expect(loadConfig(base).kafka.tls).toBeUndefined();
    expect(loadConfig(base).kafka.sasl).toBeUndefined();
  });

  it('client certificate with an encrypted key', () => {
    const c = loadConfig({ ...base, KAFKA_TLS_CA: pki.caCert, KAFKA_TLS_CERT: pki.clientCert, KAFKA_TLS_KEY: pki.clientKey, KAFKA_TLS_KEY_PASSPHRASE: pki.clientKeyPassphrase });
    expect(c.kafka.tls).toEqual({ caFile: pki.caCert, certFile: pki.clientCert, keyFile: pki.clientKey, keyPassphrase: 'client-key-pass', insecure: false });
  });

  it.each(['plain', 'scram-sha-256', 'SCRAM-SHA-512'])('SASL %s with user name and password (password from KAFKA_SASL_PASSWORD_FILE)', (mechanism) => {
    const c = loadConfig({ ...base, KAFKA_TLS: 'true', KAFKA_SASL_MECHANISM: mechanism, KAFKA_SASL_USERNAME: 'alice', KAFKA_SASL_PASSWORD_FILE: secretFile });
    expect(c.kafka.sasl).toEqual({ mechanism: mechanism.toLowerCase(), username: 'alice', password: 'kafka-SASL-s3cret' });
    expect(c.warnings).toEqual([]);
  });

  it.each([
    ['bad mechanism', { KAFKA_SASL_MECHANISM: 'gssapi', KAFKA_SASL_USERNAME: 'a', KAFKA_SASL_PASSWORD: 'kafka-SASL-s3cret' }, [/^KAFKA_SASL_MECHANISM: must be one of plain, scram-sha-256, scram-sha-512 \(got 'gssapi'\)$/]],
    ['mechanism without credentials', { KAFKA_SASL_MECHANISM: 'scram-sha-512' }, [/^KAFKA_SASL_USERNAME: required with KAFKA_SASL_MECHANISM=scram-sha-512$/, /^KAFKA_SASL_PASSWORD: required with KAFKA_SASL_MECHANISM=scram-sha-512 \(or KAFKA_SASL_PASSWORD_FILE\)$/]],
    ['mechanism without password', { KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'a' }, [/^KAFKA_SASL_PASSWORD: required/]],
    ['credentials without mechanism', { KAFKA_SASL_USERNAME: 'a', KAFKA_SASL_PASSWORD: 'kafka-SASL-s3cret' }, [/^KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD set, but KAFKA_SASL_MECHANISM is not/]],
    ['password twice', { KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'a', KAFKA_SASL_PASSWORD: 'kafka-SASL-s3cret', KAFKA_SASL_PASSWORD_FILE: 'SECRET_FILE' }, [/^KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set; use one$/]],
    ['unreadable password file', { KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'a', KAFKA_SASL_PASSWORD_FILE: '/nonexistent/pw' }, [/^KAFKA_SASL_PASSWORD_FILE: cannot read \/nonexistent\/pw \(ENOENT\)$/]],
    ['TLS off but CA set', { KAFKA_TLS: 'false', KAFKA_TLS_CA: 'CA_CERT' }, [/^KAFKA_TLS: false, but KAFKA_TLS_CA set; set KAFKA_TLS=true or remove it$/]],
    ['missing CA', { KAFKA_TLS_CA: '/nonexistent/ca.pem' }, [/^KAFKA_TLS_CA: cannot read '\/nonexistent\/ca\.pem' \(ENOENT\)$/]],
    ['cert without key', { KAFKA_TLS_CERT: 'CLIENT_CERT' }, [/^KAFKA_TLS_CERT: set, but KAFKA_TLS_KEY is not/]],
    ['key without cert', { KAFKA_TLS: 'true', KAFKA_TLS_KEY: 'CLIENT_KEY_PLAIN' }, [/^KAFKA_TLS_KEY: set, but KAFKA_TLS_CERT is not/]],
    ['wrong key passphrase', { KAFKA_TLS_CERT: 'CLIENT_CERT', KAFKA_TLS_KEY: 'CLIENT_KEY', KAFKA_TLS_KEY_PASSPHRASE: 'key-pass-Xy9' }, [/^KAFKA_TLS_KEY: cannot decrypt the key in '.*' \(wrong KAFKA_TLS_KEY_PASSPHRASE\?\)$/]],
    ['passphrase without TLS', { KAFKA_TLS_KEY_PASSPHRASE: 'key-pass-Xy9' }, [/^KAFKA_TLS_KEY_PASSPHRASE: set, but KAFKA_TLS_KEY is not$/]],
    ['KAFKA_TLS not a boolean', { KAFKA_TLS: 'on' }, [/^KAFKA_TLS: must be true or false \(got 'on'\)$/]],
  ])('%s is a config error naming the variable', (_name, env, expected) => {
    const files: Record<string, string> = { CLIENT_CERT: pki.clientCert, CLIENT_KEY: pki.clientKey, CLIENT_KEY_PLAIN: pki.clientKeyPlain, CA_CERT: pki.caCert, SECRET_FILE: secretFile };
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, files[v] ?? v]));
    expect(problems(resolved)).toEqual(expected.map((e) => expect.stringMatching(e)));
  });

  it('warns about SASL PLAIN without TLS and about KAFKA_TLS_INSECURE', () => {
    const plain = loadConfig({ ...base, KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'a', KAFKA_SASL_PASSWORD: 'kafka-SASL-s3cret' });
    expect(plain.warnings).toEqual([expect.stringMatching(/KAFKA_SASL_MECHANISM=plain without TLS/)]);
    const insecure = loadConfig({ ...base, KAFKA_TLS: 'true', KAFKA_TLS_INSECURE: 'true' });
    expect(insecure.kafka.tls?.insecure).toBe(true);
    expect(insecure.warnings).toEqual([expect.stringMatching(/^KAFKA_TLS_INSECURE=true/)]);
    expect(loadConfig({ ...base, KAFKA_TLS_INSECURE: 'true' }).warnings).toEqual([expect.stringMatching(/KAFKA_TLS_INSECURE has no effect/)]);
    for (const w of [...plain.warnings, ...insecure.warnings]) for (const s of SECRETS) expect(w).not.toContain(s);
  });

  it('new variables are not reported as unknown, and their _FILE variants are accepted', () => {
    const c = loadConfig({ ...base, KAFKA_TLS: 'true', KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'a', KAFKA_SASL_PASSWORD_FILE: secretFile, MQTT_TLS_INSECURE: 'false' });
    expect(c.warnings).toEqual([]);
  });

  it('one error lists every problem, with no secret in it', () => {
    const p = problems({
      MQTT_BROKER: 'mqtt://u:Sup3r-MQTT-pass@b',
      MQTT_PASSWORD: 'Sup3r-MQTT-pass',
      ROOT_CA: '/nonexistent/ca',
      MQTT_KEY_PASSPHRASE: 'key-pass-Xy9',
      KAFKA_SASL_MECHANISM: 'scram-sha-999',
      KAFKA_SASL_PASSWORD: 'kafka-SASL-s3cret',
      KAFKA_TLS_KEY_PASSPHRASE: 'key-pass-Xy9',
    });
    expect(p.length).toBeGreaterThanOrEqual(4);
  });
});

describe('builders', () => {
  it('MQTT: no TLS, no options', () => {
    expect(buildMqttClientOptions(loadConfig(base).mqtt)).toEqual({});
  });

  it('MQTT: CA, client certificate, key and passphrase as MQTT.js options, server checks on', () => {
    const c = loadConfig({ ...base, ROOT_CA: pki.caCert, ...mqttClient() });
    const o = buildMqttClientOptions(c.mqtt);
    expect(o.rejectUnauthorized).toBe(true);
    expect(Buffer.isBuffer(o.ca)).toBe(true);
    expect(String(o.ca)).toContain('BEGIN CERTIFICATE');
    expect(String(o.cert)).toContain('BEGIN CERTIFICATE');
    expect(String(o.key)).toContain('BEGIN ENCRYPTED PRIVATE KEY');
    expect(o.passphrase).toBe('client-key-pass');
    expect(Object.keys(o).sort()).toEqual(['ca', 'cert', 'key', 'passphrase', 'rejectUnauthorized']);
  });

  it('MQTT: insecure turns verification off; mqtts:// without files uses the system CAs', () => {
    expect(buildMqttClientOptions(loadConfig({ ...base, MQTT_BROKER: 'mqtts://b', MQTT_TLS_INSECURE: 'true' }).mqtt)).toEqual({ rejectUnauthorized: false });
    expect(buildMqttClientOptions(loadConfig({ ...base, MQTT_BROKER: 'wss://b/mqtt' }).mqtt)).toEqual({ rejectUnauthorized: true });
  });

  it('a TLS file removed after config load is a ConfigError naming the variable at start', () => {
    const d = join(dir, 'vanishing');
    mkdirSync(d, { recursive: true });
    const ca = join(d, 'ca.crt');
    copyFileSync(pki.caCert, ca);
    const c = loadConfig({ ...base, ROOT_CA: ca, KAFKA_TLS_CA: ca });
    rmSync(ca);
    expect(() => buildMqttClientOptions(c.mqtt)).toThrow(/ROOT_CA: cannot read '.*ca\.crt' \(ENOENT\)/);
    expect(() => buildKafkaSecurity(c.kafka)).toThrow(ConfigError);
    expect(() => buildKafkaSecurity(c.kafka)).toThrow(/KAFKA_TLS_CA: cannot read/);
  });

  it('Kafka: nothing configured, nothing added', () => {
    expect(buildKafkaSecurity(loadConfig(base).kafka)).toEqual({});
  });

  it('Kafka: KAFKA_TLS=true alone (SNI for host names only)', () => {
    expect(buildKafkaSecurity(loadConfig({ ...base, KAFKA_TLS: 'true' }).kafka)).toEqual({ ssl: { rejectUnauthorized: true }, tlsServerName: true });
    expect(buildKafkaSecurity(loadConfig({ ...base, KAFKA_BROKER: undefined, KAFKA_BROKERS: 'kafka-0.kafka:9093,10.0.0.8:9093', KAFKA_TLS: 'true' }).kafka)).toEqual({ ssl: { rejectUnauthorized: true } });
    expect(buildKafkaSecurity(loadConfig({ ...base, KAFKA_BROKER: '10.0.0.7', KAFKA_TLS: 'true' }).kafka)).toEqual({ ssl: { rejectUnauthorized: true } });
  });

  it('Kafka: TLS with CA and client certificate, SASL SCRAM-SHA-512', () => {
    const c = loadConfig({
      ...base,
      KAFKA_TLS_CA: pki.caCert,
      KAFKA_TLS_CERT: pki.clientCert,
      KAFKA_TLS_KEY: pki.clientKey,
      KAFKA_TLS_KEY_PASSPHRASE: pki.clientKeyPassphrase,
      KAFKA_SASL_MECHANISM: 'scram-sha-512',
      KAFKA_SASL_USERNAME: 'alice',
      KAFKA_SASL_PASSWORD: 'kafka-SASL-s3cret',
    });
    const k = buildKafkaSecurity(c.kafka);
    expect(k.sasl).toEqual({ mechanism: 'SCRAM-SHA-512', username: 'alice', password: 'kafka-SASL-s3cret' });
    const ssl = k.ssl as Record<string, unknown>;
    expect(ssl.rejectUnauthorized).toBe(true);
    expect(String(ssl.ca)).toContain('BEGIN CERTIFICATE');
    expect(String(ssl.cert)).toContain('BEGIN CERTIFICATE');
    expect(String(ssl.key)).toContain('PRIVATE KEY');
    expect(ssl.passphrase).toBe('client-key-pass');
  });

  it('Kafka: SASL PLAIN without TLS, and insecure TLS', () => {
    const plain = loadConfig({ ...base, KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'kafka-SASL-s3cret' });
    expect(buildKafkaSecurity(plain.kafka)).toEqual({ sasl: { mechanism: 'PLAIN', username: 'u', password: 'kafka-SASL-s3cret' } });
    const sha256 = loadConfig({ ...base, KAFKA_SASL_MECHANISM: 'scram-sha-256', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' });
    expect(buildKafkaSecurity(sha256.kafka).sasl?.mechanism).toBe('SCRAM-SHA-256');
    expect(buildKafkaSecurity(loadConfig({ ...base, KAFKA_TLS: 'true', KAFKA_TLS_INSECURE: 'true' }).kafka)).toEqual({ ssl: { rejectUnauthorized: false }, tlsServerName: true });
  });
});

/** Errors shaped like the ones MQTT.js and Node's tls produce (seen against mosquitto 2.0). */
function error(name: string, message: string, props: Record<string, unknown> = {}): Error {
  const e = new Error(message);
  e.name = name;
  return Object.assign(e, props);
}

describe('connection errors are explained', () => {
  const tcp = { beforeConnack: true, tls: true, websocket: false };

  it('MQTT: untrusted broker certificate', () => {
    const p = explainMqttError(error('Error', 'self-signed certificate in certificate chain', { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), tcp);
    expect(p).toEqual({ message: 'MQTT TLS handshake failed: self-signed certificate in certificate chain (check ROOT_CA: it must be the CA that signed the broker certificate)', config: true });
    expect(explainMqttError(error('Error', 'unable to verify the first certificate', { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), tcp).message).toMatch(/^MQTT TLS handshake failed: unable to verify the first certificate \(check ROOT_CA/);
  });

  it('MQTT: host name, client certificate, not TLS', () => {
    expect(explainMqttError(error('Error', "Hostname/IP does not match certificate's altnames: Host: x. is not in the cert's altnames", { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), tcp).message).toMatch(/does not name the host in MQTT_BROKER/);
    const alert = '802CC25FC17F0000:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 116\n';
    expect(explainMqttError(error('Error', alert, { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' }), tcp).message).toBe(
      'MQTT TLS handshake failed: tlsv13 alert certificate required (the broker wants a client certificate it trusts: check MQTT_CLIENT_CERT/MQTT_CLIENT_KEY)',
    );
    const wrongVersion = 'C0:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:354:\n';
    expect(explainMqttError(error('Error', wrongVersion, { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }), tcp).message).toMatch(/wrong version number \(the port does not speak TLS: use mqtt:\/\//);
  });

  it('MQTT: refused CONNACK (3.1.1 and 5)', () => {
    expect(explainMqttError(error('ErrorWithReasonCode', 'Connection refused: Not authorized', { code: 135 }), tcp)).toEqual({
      message: 'MQTT broker refused the connection: Not authorized (check MQTT_USERNAME and MQTT_PASSWORD, and the broker ACL)',
      config: true,
    });
    expect(explainMqttError(error('ErrorWithReasonCode', 'Connection refused: Bad User Name or Password', { code: 134 }), tcp).message).toMatch(/^MQTT broker refused the connection: Bad username or password \(check MQTT_USERNAME/);
    expect(explainMqttError(error('ErrorWithReasonCode', 'Connection refused: Bad username or password', { code: 4 }), tcp).message).toMatch(/^MQTT broker refused the connection: Bad username or password/);
    expect(explainMqttError(error('ErrorWithReasonCode', 'Connection refused: Server unavailable', { code: 136 }), tcp)).toEqual({ message: 'MQTT broker refused the connection: Server unavailable', config: false });
  });

  it('MQTT: reset before CONNACK hints at the scheme; later resets and refusals are plain outages', () => {
    const reset = error('Error', 'read ECONNRESET', { code: 'ECONNRESET' });
    expect(explainMqttError(reset, { beforeConnack: true, tls: false, websocket: false }).message).toMatch(/before it accepted CONNECT \(a TLS port\? use mqtts:\/\//);
    expect(explainMqttError(reset, { beforeConnack: true, tls: true, websocket: false }).message).toMatch(/a plain-text port\? use mqtt:\/\//);
    expect(explainMqttError(reset, { beforeConnack: false, tls: false, websocket: false })).toEqual({ message: 'MQTT connection error: Error ECONNRESET: read ECONNRESET', config: false });
    expect(explainMqttError(error('Error', 'connect ECONNREFUSED 127.0.0.1:1883', { code: 'ECONNREFUSED' }), tcp).config).toBe(false);
    expect(explainMqttError(error('Error', 'Unexpected server response: 404'), { beforeConnack: true, tls: false, websocket: true }).message).toMatch(/^MQTT WebSocket handshake failed: Unexpected server response: 404 \(check the path/);
  });

  // The Kafka client's own error classes, nested the way a failed send() or connection reports them.
  it('Kafka: SASL failure and TLS failures, through the client\'s wrappers', () => {
    const cfg = { sasl: { mechanism: 'scram-sha-512' as const, username: 'alice', password: 'kafka-SASL-s3cret' }, tls: { insecure: false } };
    const sasl = new MultipleErrors('metadata failed 1 times.', [
      new NetworkError('Connection to 127.0.0.1:9094 failed.', { cause: new ResponseError(36, 2, { '': [58, 'Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512'] }, {}) }),
    ]);
    expect(explainKafkaSecurityError(sasl, cfg)).toBe('Kafka authentication failed (SASL scram-sha-512): check KAFKA_SASL_USERNAME/PASSWORD and KAFKA_SASL_MECHANISM');
    expect(classifyKafkaError(sasl)).toBe('auth');
    expect(classifyKafkaError(new MultipleErrors('Producing messages failed.', [new ResponseError(0, 11, { '/responses/0': [29, null] }, {})]))).toBe('auth');

    const verify = Object.assign(new Error('unable to verify the first certificate; if the root CA is installed locally, try running Node.js with --use-system-ca'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    const tls = new MultipleErrors('produce failed 4 times.', [new NetworkError('Connection to 127.0.0.1:9093 failed.', { cause: verify })]);
    expect(explainKafkaSecurityError(tls, cfg)).toBe('Kafka TLS handshake failed: unable to verify the first certificate (check KAFKA_TLS_CA: it must be the CA that signed the broker certificates)');
    expect(classifyKafkaError(tls)).toBe('tls');
    const toPlain = new NetworkError('Connection to 127.0.0.1:9092 failed.', {
      cause: Object.assign(new Error('Client network socket disconnected before secure TLS connection was established'), { code: 'ECONNRESET' }),
    });
    expect(explainKafkaSecurityError(toPlain, cfg)).toMatch(/^Kafka TLS handshake failed: the server closed the connection during the TLS handshake \(the listener does not speak TLS/);

    // Plain text to a SASL_SSL listener: the client reports the dropped connection as a failed SASL exchange.
    const droppedDuringSasl = new MultipleErrors('initProducerId failed 4 times.', [new AuthenticationError('SASL authentication failed.', { cause: new NetworkError('Connection closed') })]);
    expect(explainKafkaSecurityError(droppedDuringSasl, cfg)).toBeUndefined();
    expect(classifyKafkaError(droppedDuringSasl)).toBe('connection');
    expect(classifyKafkaError(new AuthenticationError('Invalid server signature.'))).toBe('auth');

    const closed = new NetworkError('Connection closed', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) });
    expect(explainKafkaSecurityError(closed, cfg)).toBeUndefined();
    expect(classifyKafkaError(closed)).toBe('connection');
  });

  it('Kafka: write failures map to bounded kinds; the most telling error of an aggregate wins', () => {
    const partitions = (...codes: number[]) =>
      new MultipleErrors('Producing messages failed.', [new ResponseError(0, 11, Object.fromEntries(codes.map((c, i) => [`/responses/0/partitionResponses/${i}`, [c, null]])), {})]);
    expect(classifyKafkaError(partitions(10))).toBe('too_large');
    expect(classifyKafkaError(partitions(18))).toBe('too_large');
    expect(classifyKafkaError(partitions(87))).toBe('invalid_record');
    expect(classifyKafkaError(partitions(32))).toBe('invalid_record');
    expect(classifyKafkaError(partitions(19))).toBe('not_enough_replicas');
    expect(classifyKafkaError(partitions(20))).toBe('not_enough_replicas');
    expect(classifyKafkaError(partitions(6))).toBe('leader_unavailable');
    expect(classifyKafkaError(partitions(3))).toBe('topic_missing');
    expect(classifyKafkaError(partitions(45, 59))).toBe('fatal_producer');
    expect(classifyKafkaError(partitions(6, 10))).toBe('too_large'); // one record refused for good decides
    expect(classifyKafkaError(new NetworkError('Request timed out', { canRetry: true }))).toBe('timeout');
    expect(classifyKafkaError(Object.assign(new Error('produce timed out after 10000 ms'), { name: 'TimeoutError' }))).toBe('timeout');
    expect(classifyKafkaError(new Error('something else'))).toBe('unknown');
  });
});

describe('secrets stay out of logs', () => {
  function capture(): { lines: string[]; dest: Writable } {
    const lines: string[] = [];
    const dest = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    return { lines, dest };
  }

  it('pino redacts the new config paths and TLS option objects', () => {
    const { lines, dest } = capture();
    const log = createLogger('info', dest);
    const config = loadConfig({
      ...base,
      MQTT_PASSWORD: 'Sup3r-MQTT-pass',
      ROOT_CA: pki.caCert,
      ...mqttClient(),
      KAFKA_TLS_CA: pki.caCert,
      KAFKA_TLS_CERT: pki.clientCert,
      KAFKA_TLS_KEY: pki.clientKey,
      KAFKA_TLS_KEY_PASSPHRASE: 'client-key-pass',
      KAFKA_SASL_MECHANISM: 'scram-sha-256',
      KAFKA_SASL_USERNAME: 'alice',
      KAFKA_SASL_PASSWORD: 'kafka-SASL-s3cret',
    });
    log.info({ config }, 'whole config');
    log.info({ mqtt: config.mqtt }, 'mqtt part');
    log.info({ tls: config.kafka.tls, sasl: config.kafka.sasl }, 'kafka parts');
    log.info({ clientOptions: buildMqttClientOptions(config.mqtt) }, 'mqtt options');
    log.info(buildKafkaSecurity(config.kafka), 'kafka client options');
    const out = lines.join('');
    expect(lines).toHaveLength(5);
    for (const s of SECRETS) expect(out).not.toContain(s);
    expect(out).not.toContain('PRIVATE KEY');
    expect(out).toContain('[redacted]');
    expect(out).toContain(pki.clientKey); // paths are fine to log
  });

  it('URLs lose their user:password wherever they are logged', () => {
    expect(redactUrl('mqtt://bridge:Sup3r-MQTT-pass@broker:1883')).toBe('mqtt://[redacted]@broker:1883');
    expect(redactUrl("from wss://a:b@x/mqtt and 'mqtts://c:d@y'")).toBe("from wss://[redacted]@x/mqtt and 'mqtts://[redacted]@y'");
    expect(describeError(new Error('cannot connect to mqtts://bridge:Sup3r-MQTT-pass@broker:8883/'))).toBe('Error: cannot connect to mqtts://[redacted]@broker:8883/');
    expect(describeError('ws://u:Sup3r-MQTT-pass@h')).not.toContain('Sup3r');
  });

  it('names a root cause once: not again when the wrapping message already quotes it', () => {
    const root = new Error('SQLITE_FULL: database or disk is full');
    const quoted = new Error(`cannot delete spool rows: ${describeError(root)}`, { cause: root });
    expect(describeError(quoted).match(/SQLITE_FULL: database or disk is full/g)).toHaveLength(1);
    const silent = new Error('write failed', { cause: root });
    expect(describeError(silent)).toBe('Error: write failed (caused by: SQLITE_FULL: database or disk is full)');
  });
});

describe('log redaction', () => {
  it('never throws on Buffer fields and blanks secrets', async () => {
    const { createLogger } = await import('../../src/observability/logger.js');
    const lines: string[] = [];
    const log = createLogger('info', { write: (s: string) => lines.push(s) });
    expect(() => log.info({ buf: Buffer.from('abc'), nested: { deeper: Buffer.from('x') } }, 'buffers')).not.toThrow();
    log.info({ password: 'hunter2', mqtt: { password: 'pw2' }, config: { mqtt: { password: 'pw3' } }, ssl: { key: 'KEY', passphrase: 'pp' } }, 'secrets');
    const text = lines.join('');
    for (const s of ['hunter2', 'pw2', 'pw3', 'KEY', '"pp"']) expect(text).not.toContain(s);
  });
});
