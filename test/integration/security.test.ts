import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type TestPki } from '../harness/certs.js';
import {
  checkBadges,
  freePorts,
  makeTempDir,
  publishBadges,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  type BridgeLogLine,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
} from '../harness/index.js';

/**
 * Security against real brokers on loopback. A throwaway CA signs the brokers' certificate
 * (SAN 127.0.0.1, localhost) and the bridge's client certificate (its key encrypted).
 *
 * Mosquitto: the harness's plain listener (tests publish there), a TLS listener that requires a
 * client certificate, a WebSocket and a TLS WebSocket listener; a password file and
 * allow_anonymous false for all of them.
 * Kafka: the harness's PLAINTEXT listener (admin and the kcat reader) plus a SASL_SSL listener
 * with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN users; client certificates requested.
 *
 * Then each misconfiguration runs as its own bridge process: it must stay up, say clearly
 * what is wrong (once, not per retry), report not ready and leak no secret.
 */
const MQTT_USER = 'bridge';
const MQTT_PASSWORD = 'mqtt-Pa55-w0rd';
const SCRAM512 = { user: 'alice', password: 'alice-Kafka-s3cret' };
const SCRAM256 = { user: 'bob', password: 'bob-Kafka-s3cret' };
const PLAIN = { user: 'carol', password: 'carol-Kafka-s3cret' };
const KEY_PASSPHRASE = 'client-Key-pa55';
const SECRETS = [MQTT_PASSWORD, SCRAM512.password, SCRAM256.password, PLAIN.password, KEY_PASSPHRASE, 'wrong-Pa55'];

let pki: TestPki;
let secretsDir: string;
let mosq: Mosquitto;
let kafka: Kafka;
let mqttTlsPort: number;
let mqttWsPort: number;
let mqttWssPort: number;
let kafkaSaslPort: number;
const bridges: BridgeProcess[] = [];

/** Writes a secret to a file as Kubernetes mounts it, for the `<VAR>_FILE` variants. */
function secretFile(name: string, value: string): string {
  const f = path.join(secretsDir, name);
  fs.writeFileSync(f, `${value}\n`, { mode: 0o600 });
  return f;
}

beforeAll(async () => {
  pki = makeTestPki(makeTempDir('sec-pki-'), KEY_PASSPHRASE);
  secretsDir = makeTempDir('sec-secrets-');
  const passwd = path.join(secretsDir, 'mosquitto.passwd');
  execFileSync('mosquitto_passwd', ['-b', '-c', passwd, MQTT_USER, MQTT_PASSWORD]);
  let kafkaPort: number;
  let controllerPort: number;
  [mqttTlsPort, mqttWsPort, mqttWssPort, kafkaPort, controllerPort, kafkaSaslPort] = (await freePorts(6)) as [number, number, number, number, number, number];
  const serverTls = [`cafile ${pki.caCert}`, `certfile ${pki.serverCert}`, `keyfile ${pki.serverKey}`];
  const scram = 'org.apache.kafka.common.security.scram.ScramLoginModule required;';
  [mosq, kafka] = await Promise.all([
    startMosquitto({
      extraConfig: [
        'allow_anonymous false',
        `password_file ${passwd}`,
        `listener ${mqttTlsPort} 127.0.0.1`,
        ...serverTls,
        'require_certificate true',
        `listener ${mqttWsPort} 127.0.0.1`,
        'protocol websockets',
        `listener ${mqttWssPort} 127.0.0.1`,
        'protocol websockets',
        ...serverTls,
      ],
    }),
    startKafka({
      port: kafkaPort,
      controllerPort,
      // SCRAM users are created in the metadata log when the storage is formatted (KRaft).
      formatArgs: [
        '--add-scram', `SCRAM-SHA-512=[name=${SCRAM512.user},password=${SCRAM512.password}]`,
        '--add-scram', `SCRAM-SHA-256=[name=${SCRAM256.user},password=${SCRAM256.password}]`,
      ],
      extraProps: {
        listeners: `PLAINTEXT://127.0.0.1:${kafkaPort},CONTROLLER://127.0.0.1:${controllerPort},SASL_SSL://127.0.0.1:${kafkaSaslPort}`,
        'advertised.listeners': `PLAINTEXT://127.0.0.1:${kafkaPort},SASL_SSL://127.0.0.1:${kafkaSaslPort}`,
        'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL',
        'listener.name.sasl_ssl.sasl.enabled.mechanisms': 'SCRAM-SHA-512,SCRAM-SHA-256,PLAIN',
        'listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config': scram,
        'listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config': scram,
        'listener.name.sasl_ssl.plain.sasl.jaas.config': `org.apache.kafka.common.security.plain.PlainLoginModule required user_${PLAIN.user}="${PLAIN.password}";`,
        'listener.name.sasl_ssl.ssl.keystore.type': 'PEM',
        'listener.name.sasl_ssl.ssl.keystore.location': pki.serverKeystore,
        'listener.name.sasl_ssl.ssl.truststore.type': 'PEM',
        'listener.name.sasl_ssl.ssl.truststore.location': pki.caCert,
        // A client certificate is checked when given (the TLS test gives one), not required.
        'listener.name.sasl_ssl.ssl.client.auth': 'requested',
      },
    }),
  ]);
  await Promise.all(['sec-tls', 'sec-ws', 'sec-wss', 'sec-neg'].map((t) => kafka.createTopic(t, 2)));
});

afterAll(async () => {
  for (const b of bridges) await b.proc.stop('SIGKILL').catch(() => undefined);
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

/** The plain listener, for the tests' own publisher (credentials in the URL, as MQTT.js takes them). */
const publishUrl = (): string => `mqtt://${MQTT_USER}:${MQTT_PASSWORD}@127.0.0.1:${mosq.port}`;

/** A bridge reaching Kafka over SASL_SSL with SCRAM-SHA-512; `over` adds or replaces variables. */
function env(over: Record<string, string>): Record<string, string> {
  return {
    MQTT_USERNAME: MQTT_USER,
    MQTT_PASSWORD_FILE: secretFile('mqtt-password', MQTT_PASSWORD),
    MQTT_RECONNECT_MS: '500',
    KAFKA_BROKER: '127.0.0.1',
    KAFKA_PORT: String(kafkaSaslPort),
    KAFKA_TLS_CA: pki.caCert,
    KAFKA_SASL_MECHANISM: 'scram-sha-512',
    KAFKA_SASL_USERNAME: SCRAM512.user,
    KAFKA_SASL_PASSWORD_FILE: secretFile('kafka-password', SCRAM512.password),
    KAFKA_WORKERS: '2',
    SPOOL_REPLAY_INTERVAL_MS: '1000',
    ...over,
  };
}

async function bridge(over: Record<string, string>, waitReady = true): Promise<BridgeProcess> {
  const b = await startBridgeProcess({ env: env(over), waitReady });
  bridges.push(b);
  return b;
}

const logLines = (b: BridgeProcess): BridgeLogLine[] => b.logLines();

function expectNoSecrets(b: BridgeProcess): void {
  const text = fs.readFileSync(b.logFile, 'utf8');
  for (const s of SECRETS) expect(text, `secret in ${b.logFile}`).not.toContain(s);
  expect(text).not.toContain('PRIVATE KEY');
}

async function delivered(b: BridgeProcess, topic: string, mqttTopic: (id: string) => string, badges: number, perBadge: number): Promise<void> {
  const published = await publishBadges({ url: publishUrl(), badges, perBadge, topic: mqttTopic });
  expect(published).toBe(badges * perBadge);
  await b.waitFor('all written', async () => (await b.metric('mqtt_kafka_records_written_total')) >= published, 30_000);
  const check = checkBadges(await kafka.readTopic(topic, { expected: published }), badges, perBadge);
  expect(check.missing).toEqual([]);
  expect(check.outOfOrder).toEqual([]);
  expect(check.distinct).toBe(published);
}

describe('secure connections', () => {
  it('MQTT over TLS with a client certificate and password, Kafka over SASL_SSL (SCRAM-SHA-512, client certificate): 300 messages end to end', async () => {
    const b = await bridge({
      MQTT_BROKER: '127.0.0.1', // ROOT_CA makes it mqtts://
      MQTT_PORT: String(mqttTlsPort),
      MQTT_TOPIC: 'sec/tls/#',
      MQTT_CLIENT_ID: 'sec-tls',
      ROOT_CA: pki.caCert,
      MQTT_CLIENT_CERT: pki.clientCert,
      MQTT_CLIENT_KEY: pki.clientKey,
      MQTT_KEY_PASSPHRASE_FILE: secretFile('mqtt-key-pass', KEY_PASSPHRASE),
      KAFKA_TLS_CERT: pki.clientCert,
      KAFKA_TLS_KEY: pki.clientKey,
      KAFKA_TLS_KEY_PASSPHRASE: KEY_PASSPHRASE,
      KAFKA_TOPIC: 'sec-tls',
    });
    await delivered(b, 'sec-tls', (id) => `sec/tls/${id}`, 30, 10);
    const started = logLines(b).find((l) => l.msg === 'bridge starting');
    expect(started?.mqtt).toBe(`mqtts://127.0.0.1:${mqttTlsPort}`);
    expect(logLines(b).filter((l) => l.level === 'error')).toEqual([]);
    expectNoSecrets(b);
  });

  it('MQTT over WebSockets (ws://, Kafka SCRAM-SHA-256) and TLS WebSockets (wss://, Kafka SASL PLAIN)', async () => {
    const [ws, wss] = await Promise.all([
      bridge({
        MQTT_BROKER: `ws://127.0.0.1:${mqttWsPort}/mqtt`,
        MQTT_TOPIC: 'sec/ws/#',
        MQTT_CLIENT_ID: 'sec-ws',
        KAFKA_TOPIC: 'sec-ws',
        KAFKA_SASL_MECHANISM: 'scram-sha-256',
        KAFKA_SASL_USERNAME: SCRAM256.user,
        KAFKA_SASL_PASSWORD_FILE: secretFile('kafka-password-256', SCRAM256.password),
      }),
      bridge({
        MQTT_BROKER: `wss://localhost:${mqttWssPort}/mqtt`, // host name checked against the SAN
        ROOT_CA: pki.caCert,
        MQTT_TOPIC: 'sec/wss/#',
        MQTT_CLIENT_ID: 'sec-wss',
        KAFKA_TOPIC: 'sec-wss',
        KAFKA_SASL_MECHANISM: 'plain',
        KAFKA_SASL_USERNAME: PLAIN.user,
        KAFKA_SASL_PASSWORD_FILE: '', // the password straight from the environment this time
        KAFKA_SASL_PASSWORD: PLAIN.password,
      }),
    ]);
    await Promise.all([delivered(ws, 'sec-ws', (id) => `sec/ws/${id}`, 10, 10), delivered(wss, 'sec-wss', (id) => `sec/wss/${id}`, 10, 10)]);
    for (const b of [ws, wss]) {
      expect(logLines(b).filter((l) => l.level === 'error')).toEqual([]);
      expectNoSecrets(b);
    }
  });
});

interface BadCase {
  readonly name: string;
  /** Selects the variables in envFor(). */
  readonly id: string;
  /** The one clear line the log must have (once, however often the bridge retried). */
  readonly message: RegExp;
  /** Kafka cases need traffic before anything talks to Kafka. */
  readonly publishTo?: string;
  /** /readyz stays 503 (all but a plain-text Kafka client on the TLS listener, which spools like an outage). */
  readonly notReady: boolean;
}

const tlsMqtt = (): Record<string, string> => ({
  MQTT_BROKER: '127.0.0.1',
  MQTT_PORT: String(mqttTlsPort),
  ROOT_CA: pki.caCert,
  MQTT_CLIENT_CERT: pki.clientCert,
  MQTT_CLIENT_KEY: pki.clientKeyPlain,
});
const plainMqtt = (): Record<string, string> => ({ MQTT_BROKER: `mqtt://127.0.0.1:${mosq.port}` });

describe('misconfigurations: clear error, no crash loop, not ready, no secret in the log', () => {
  const cases: BadCase[] = [
    {
      name: 'MQTT: wrong CA',
      id: 'wrong-ca',
      message: /^MQTT TLS handshake failed: self-signed certificate in certificate chain \(check ROOT_CA: it must be the CA that signed the broker certificate\)$/,
      notReady: true,
    },
    {
      name: 'MQTT: wrong password',
      id: 'wrong-mqtt-password',
      message: /^MQTT broker refused the connection: Not authorized \(check MQTT_USERNAME and MQTT_PASSWORD, and the broker ACL\)$/,
      notReady: true,
    },
    {
      name: 'MQTT: plain text to the TLS port',
      id: 'mqtt-plain-to-tls',
      message: /^MQTT connection reset by the broker before it accepted CONNECT \(a TLS port\? use mqtts:\/\/ \(and ROOT_CA\)/,
      notReady: true,
    },
    {
      name: 'MQTT: no client certificate where the broker requires one',
      id: 'mqtt-no-client-cert',
      message: /^MQTT TLS handshake failed: tlsv13 alert certificate required \(the broker wants a client certificate it trusts/,
      notReady: true,
    },
    {
      name: 'Kafka: wrong SASL password',
      id: 'wrong-kafka-password',
      message: /^Kafka authentication failed \(SASL scram-sha-512\): check KAFKA_SASL_USERNAME\/PASSWORD/,
      publishTo: 'sec/neg/kafka-password',
      notReady: true,
    },
    {
      name: 'Kafka: wrong CA',
      id: 'wrong-kafka-ca',
      message: /^Kafka TLS handshake failed: unable to verify the first certificate \(check KAFKA_TLS_CA/,
      publishTo: 'sec/neg/kafka-ca',
      notReady: true,
    },
    {
      name: 'Kafka: plain text to the TLS listener',
      id: 'kafka-plain-to-tls',
      message: /^Kafka closed the connection while connecting \(if the listener uses TLS, set KAFKA_TLS=true/,
      publishTo: 'sec/neg/kafka-plain',
      notReady: false,
    },
  ];

  /** The variables of each case (functions: ports and files exist only after beforeAll). */
  const envFor = (c: BadCase): Record<string, string> => {
    const common = { MQTT_CLIENT_ID: `neg-${c.id}`, MQTT_TOPIC: c.publishTo ?? 'sec/neg/none', KAFKA_TOPIC: 'sec-neg', LOG_LEVEL: 'debug' };
    switch (c.id) {
      case 'wrong-ca':
        return { ...common, ...tlsMqtt(), ROOT_CA: pki.otherCaCert };
      case 'wrong-mqtt-password':
        return { ...common, ...tlsMqtt(), MQTT_PASSWORD_FILE: secretFile('wrong-mqtt-password', 'wrong-Pa55') };
      case 'mqtt-plain-to-tls':
        return { ...common, MQTT_BROKER: `mqtt://127.0.0.1:${mqttTlsPort}` };
      case 'mqtt-no-client-cert':
        return { ...common, MQTT_BROKER: '127.0.0.1', MQTT_PORT: String(mqttTlsPort), ROOT_CA: pki.caCert };
      case 'wrong-kafka-password':
        return { ...common, ...plainMqtt(), KAFKA_SASL_PASSWORD_FILE: secretFile('wrong-kafka-password', 'wrong-Pa55') };
      case 'wrong-kafka-ca':
        return { ...common, ...plainMqtt(), KAFKA_TLS_CA: pki.otherCaCert };
      case 'kafka-plain-to-tls':
        return { ...common, ...plainMqtt(), KAFKA_TLS_CA: '', KAFKA_TLS: 'false' };
      default:
        throw new Error(`unknown case ${c.id}`);
    }
  };

  const running = new Map<string, BridgeProcess>();

  // All bad bridges run side by side: each must survive several retry periods.
  beforeAll(async () => {
    const started = await Promise.all(cases.map((c) => bridge(envFor(c), false)));
    cases.forEach((c, i) => running.set(c.name, started[i]!));
    // Kafka is only contacted when there is something to write: publish once each is subscribed.
    await Promise.all(
      cases
        .filter((c) => c.publishTo)
        .map(async (c) => {
          const b = running.get(c.name)!;
          await b.waitFor('subscribed', async () => (await b.readyz()).body.mqtt === 'subscribed', 30_000);
          await publishBadges({ url: publishUrl(), badges: 5, perBadge: 2, topic: () => c.publishTo! });
        }),
    );
    // Several reconnect (500 ms) and replay (1 s) periods.
    await new Promise((r) => setTimeout(r, 6000));
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const b = running.get(c.name)!;
    expect(b.proc.running).toBe(true);
    await b.waitFor('the clear message', async () => logLines(b).some((l) => c.message.test(l.msg)), 15_000);
    const clear = logLines(b).filter((l) => (l.level === 'error' || l.level === 'warn') && c.message.test(l.msg));
    expect(clear, 'logged once, not per retry').toHaveLength(1);
    const health = await fetch(`http://127.0.0.1:${b.httpPort}/healthz`);
    expect(health.status).toBe(200);
    const ready = await b.readyz();
    if (c.notReady) {
      expect(ready.status).toBe(503);
    }
    if (c.publishTo) {
      // Nothing is lost meanwhile: what arrived is in the spool.
      expect(ready.body.spoolRows).toBeGreaterThanOrEqual(10);
      if (c.notReady) expect(ready.body.kafkaProblem).toMatch(c.message);
    } else {
      expect(ready.body.mqtt).not.toBe('subscribed');
      // Still retrying at MQTT_RECONNECT_MS, not given up.
      expect(await b.metric('mqtt_kafka_mqtt_reconnects_total')).toBeGreaterThanOrEqual(3);
    }
    expect(b.proc.running).toBe(true);
    expectNoSecrets(b);
  });
});
