import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { isSharedFilter, sharedGroupProblem } from '../mqtt/shared-group.js';
import { redactUrl } from '../observability/logger.js';
import { VARS } from './spec.js';
import type { Config, KafkaCompression, SaslMechanism, TlsConfig } from './types.js';

export interface LoadDeps {
  hostname?: () => string;
  readFile?: (path: string) => string;
}

type Raw = Record<string, unknown>;

/**
 * Validates the environment once and returns a frozen config. Every problem is collected;
 * one ConfigError lists them all. Nothing is connected here.
 */
export function loadConfig(env: NodeJS.ProcessEnv, deps: LoadDeps = {}): Config {
  const problems: string[] = [];
  const readFile = deps.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const v: Raw = {};

  for (const spec of VARS) {
    let raw = env[spec.env];
    // A Kubernetes service named 'kafka' or 'mqtt' injects KAFKA_PORT=tcp://10.0.0.1:9092.
    if (raw !== undefined && spec.env.endsWith('_PORT') && /^tcp:\/\//.test(raw)) raw = undefined;
    if (spec.secret) {
      const file = env[`${spec.env}_FILE`];
      if (file !== undefined && file !== '') {
        if (raw !== undefined && raw !== '') {
          problems.push(`${spec.env} and ${spec.env}_FILE are both set; use one`);
          continue;
        }
        try {
          raw = readFile(file).replace(/\r?\n$/, '');
        } catch (err) {
          problems.push(`${spec.env}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
          continue;
        }
      }
    }
    if (raw === undefined || raw === '') raw = spec.default;
    if (raw === undefined) continue;
    const parsed = spec.schema.safeParse(raw);
    if (parsed.success) {
      v[spec.env] = parsed.data;
    } else {
      const msg = parsed.error.issues.map((i) => i.message).join('; ');
      // Secrets are never echoed back, not even in an error.
      problems.push(spec.secret ? `${spec.env}: ${msg}` : `${spec.env}: ${msg} (got '${raw}')`);
    }
  }

  // Unknown names are warnings, not errors: Kubernetes service links inject variables such as
  // MQTT_SERVICE_HOST or KAFKA_PORT_9092_TCP into every pod of a namespace with such a service.
  const warnings = Object.keys(env)
    .filter((k) => /^(MQTT|KAFKA|SPOOL)_/.test(k) && !k.includes('_SERVICE_') && !/_PORT_\d+_/.test(k))
    .filter((k) => !VARS.some((s) => s.env === k || `${s.env}_FILE` === k))
    .map((k) => `${k} is not a setting of this bridge (misspelled?); ignored`);

  if (env.MQTT_BROKER === undefined || env.MQTT_BROKER === '') problems.push('MQTT_BROKER: required (host name or URL)');
  if (v.MQTT_TOPIC === undefined && v.ROUTES_FILE === undefined && !problems.some((p) => p.startsWith('MQTT_TOPIC'))) {
    problems.push('MQTT_TOPIC: required (one or more topic filters, comma-separated), unless ROUTES_FILE is set');
  }
  if (typeof v.ROUTES_FILE === 'string' && !existsSync(v.ROUTES_FILE)) problems.push(`ROUTES_FILE: '${v.ROUTES_FILE}' does not exist`);
  const kafkaBrokers = resolveKafkaBrokers(v, env, problems);
  const mqttUrl = resolveMqttUrl(v, problems);
  const mqttTls = resolveMqttTls(v, mqttUrl, problems, warnings, readFile);
  const kafkaTls = resolveKafkaTls(v, problems, warnings, readFile);
  const kafkaSasl = resolveKafkaSasl(v, kafkaTls !== undefined, problems, warnings);
  if (Array.isArray(v.MQTT_TOPIC)) {
    for (const t of v.MQTT_TOPIC as string[]) {
      const err = topicFilterProblem(t);
      if (err) problems.push(`MQTT_TOPIC: '${t}' ${err}`);
      else if (typeof v.MQTT_SHARED_GROUP === 'string' && isSharedFilter(t)) {
        problems.push(`MQTT_TOPIC: '${t}' is already a shared subscription; with MQTT_SHARED_GROUP set, give the plain filter (the bridge adds $share/<group>/)`);
      }
    }
  }
  if (typeof v.MQTT_SHARED_GROUP === 'string') {
    const err = sharedGroupProblem(v.MQTT_SHARED_GROUP);
    if (err) problems.push(`MQTT_SHARED_GROUP: ${err} (got '${v.MQTT_SHARED_GROUP}')`);
  }
  const spoolPath = typeof v.SPOOL_PATH === 'string' ? resolve(v.SPOOL_PATH) : '';
  if (spoolPath) {
    const problem = spoolPathProblem(spoolPath);
    if (problem) problems.push(`SPOOL_PATH: ${problem}`);
  }

  if (problems.length > 0) throw new ConfigError(problems);

  const host = (deps.hostname ?? osHostname)();
  const config: Config = {
    mqtt: {
      url: mqttUrl,
      topics: (v.MQTT_TOPIC as string[] | undefined) ?? [],
      clientId: (v.MQTT_CLIENT_ID as string).replaceAll('%h', host),
      sharedGroup: v.MQTT_SHARED_GROUP as string | undefined,
      qos: v.MQTT_QOS as 0 | 1,
      protocolVersion: v.MQTT_VERSION as 4 | 5,
      sessionExpiryS: v.MQTT_SESSION_EXPIRY_S as number,
      keepaliveS: v.MQTT_KEEPALIVE_S as number,
      reconnectMs: v.MQTT_RECONNECT_MS as number,
      username: v.MQTT_USERNAME as string | undefined,
      password: v.MQTT_PASSWORD as string | undefined,
      tls: mqttTls,
      maxInFlight: v.MAX_IN_FLIGHT_MESSAGES as number,
      maxInFlightBytes: v.MAX_IN_FLIGHT_BYTES as number,
      removedFilterPolicy: v.MQTT_REMOVED_FILTER_POLICY as 'forward' | 'dead_letter',
    },
    kafka: {
      brokers: kafkaBrokers,
      clientId: v.KAFKA_CLIENT_ID as string,
      workers: v.KAFKA_WORKERS as number,
      autoCreateTopics: v.KAFKA_AUTO_CREATE_TOPICS as boolean,
      batchMaxMessages: v.KAFKA_BATCH_MAX_MESSAGES as number,
      batchMaxBytes: v.KAFKA_BATCH_MAX_BYTES as number,
      writeTimeoutMs: v.KAFKA_WRITE_TIMEOUT_MS as number,
      connectTimeoutMs: v.KAFKA_CONNECT_TIMEOUT_MS as number,
      compression: v.KAFKA_COMPRESSION as KafkaCompression,
      tls: kafkaTls,
      sasl: kafkaSasl,
    },
    mapping: {
      topic: v.KAFKA_TOPIC as string | undefined,
      routesFile: v.ROUTES_FILE === undefined ? undefined : resolve(v.ROUTES_FILE as string),
      separator: v.KAFKA_TOPIC_SEPARATOR as '_' | '.' | '-',
      format: v.MESSAGE_FORMAT as 'raw' | 'envelope',
      dlqTopic: v.DLQ_TOPIC as string,
      maxMessageBytes: v.KAFKA_MAX_MESSAGE_BYTES as number,
    },
    spool: {
      path: spoolPath,
      replayIntervalMs: v.SPOOL_REPLAY_INTERVAL_MS as number,
      maxBytes: v.SPOOL_MAX_BYTES as number,
      maxAgeMs: v.SPOOL_MAX_AGE_MS as number,
      fullPolicy: v.SPOOL_FULL_POLICY as 'block' | 'drop_oldest' | 'drop_newest',
      commitLingerMs: v.SPOOL_COMMIT_LINGER_MS as number,
      minFreeBytes: v.SPOOL_MIN_FREE_BYTES as number,
      minFreePercent: v.SPOOL_MIN_FREE_PERCENT as number,
      reserveBytes: v.SPOOL_RESERVE_BYTES as number,
    },
    http: { port: v.HEALTH_PORT as number, host: v.HEALTH_HOST as string },
    logLevel: v.LOG_LEVEL as Config['logLevel'],
    shutdownTimeoutMs: v.SHUTDOWN_TIMEOUT_MS as number,
    warnings,
  };
  return deepFreeze(config);
}

function resolveKafkaBrokers(v: Raw, env: NodeJS.ProcessEnv, problems: string[]): string[] {
  const list = v.KAFKA_BROKERS as string[] | undefined;
  if (list && list.length > 0) {
    if (env.KAFKA_BROKER) problems.push('KAFKA_BROKER and KAFKA_BROKERS are both set; use one');
    for (const b of list) {
      if (!/^[^:\s]+:\d{1,5}$/.test(b)) problems.push(`KAFKA_BROKERS: '${b}' is not host:port`);
    }
    return list;
  }
  if (typeof v.KAFKA_BROKER === 'string') {
    const b = v.KAFKA_BROKER;
    return [b.includes(':') ? b : `${b}:${String(v.KAFKA_PORT)}`];
  }
  if (!problems.some((p) => p.startsWith('KAFKA_BROKER'))) {
    problems.push('KAFKA_BROKER or KAFKA_BROKERS: required (where to write)');
  }
  return [];
}

function resolveMqttUrl(v: Raw, problems: string[]): string {
  const broker = v.MQTT_BROKER;
  if (typeof broker !== 'string') return '';
  const tlsVars = MQTT_TLS_FILES.filter((name) => v[name] !== undefined);
  if (broker.includes('://')) {
    try {
      const u = new URL(broker);
      if (!['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:'].includes(u.protocol)) {
        problems.push(`MQTT_BROKER: unsupported scheme '${u.protocol}' (use mqtt, mqtts, ws or wss)`);
      } else if (tlsVars.length > 0 && !TLS_SCHEMES.includes(u.protocol)) {
        problems.push(`${tlsVars.join(', ')} set, but MQTT_BROKER uses ${u.protocol}// (no TLS): use ${u.protocol.startsWith('ws') ? 'wss' : 'mqtts'}://`);
      }
      // new URL() drops a default port (ws:80, wss:443): an explicit one must not become MQTT_PORT.
      if (!u.port && !/^[a-z]+:\/\/(?:[^@/?#]*@)?(?:\[[^\]]*\]|[^:/?#]*):\d/i.test(broker)) u.port = String(v.MQTT_PORT);
      return u.toString().replace(/\/$/, u.pathname === '/' ? '' : '/');
    } catch {
      // The URL may carry user:password; never echo that part.
      problems.push(`MQTT_BROKER: '${redactUrl(broker)}' is not a valid URL`);
      return '';
    }
  }
  // A bare host name: TLS (mqtts) as soon as ROOT_CA or a client certificate is given.
  return `${tlsVars.length > 0 ? 'mqtts' : 'mqtt'}://${broker}:${String(v.MQTT_PORT)}`;
}

const MQTT_TLS_FILES = ['ROOT_CA', 'MQTT_CLIENT_CERT', 'MQTT_CLIENT_KEY'] as const;
const TLS_SCHEMES = ['mqtts:', 'wss:', 'ssl:'];

/** TLS settings of the MQTT connection, when its URL is mqtts:// or wss://. Files are checked here, read again at start. */
function resolveMqttTls(v: Raw, url: string, problems: string[], warnings: string[], readFile: (p: string) => string): TlsConfig | undefined {
  const scheme = /^([a-z]+:)/.exec(url)?.[1] ?? '';
  if (!TLS_SCHEMES.includes(scheme)) {
    if (v.MQTT_TLS_INSECURE === true) warnings.push('MQTT_TLS_INSECURE has no effect: the MQTT connection does not use TLS');
    if (v.MQTT_KEY_PASSPHRASE !== undefined && v.MQTT_CLIENT_KEY === undefined) problems.push('MQTT_KEY_PASSPHRASE: set, but MQTT_CLIENT_KEY is not');
    return undefined;
  }
  const tls = checkTlsFiles(
    { ca: 'ROOT_CA', cert: 'MQTT_CLIENT_CERT', key: 'MQTT_CLIENT_KEY', passphrase: 'MQTT_KEY_PASSPHRASE' },
    v,
    problems,
    warnings,
    readFile,
  );
  const insecure = v.MQTT_TLS_INSECURE === true;
  if (insecure) warnings.push("MQTT_TLS_INSECURE=true: the MQTT broker's certificate and host name are NOT verified; anyone on the path can read and change the traffic");
  return { ...tls, insecure };
}

/** TLS settings of the Kafka connections: on with KAFKA_TLS=true, or when KAFKA_TLS is unset and a TLS file is given. */
function resolveKafkaTls(v: Raw, problems: string[], warnings: string[], readFile: (p: string) => string): TlsConfig | undefined {
  const files = (['KAFKA_TLS_CA', 'KAFKA_TLS_CERT', 'KAFKA_TLS_KEY'] as const).filter((name) => v[name] !== undefined);
  const explicit = v.KAFKA_TLS as boolean | undefined;
  if (explicit === false && files.length > 0) {
    problems.push(`KAFKA_TLS: false, but ${files.join(', ')} set; set KAFKA_TLS=true or remove ${files.length > 1 ? 'them' : 'it'}`);
    return undefined;
  }
  if (!(explicit ?? files.length > 0)) {
    if (v.KAFKA_TLS_INSECURE === true) warnings.push('KAFKA_TLS_INSECURE has no effect: Kafka is not reached over TLS (KAFKA_TLS)');
    if (v.KAFKA_TLS_KEY_PASSPHRASE !== undefined) problems.push('KAFKA_TLS_KEY_PASSPHRASE: set, but KAFKA_TLS_KEY is not');
    return undefined;
  }
  const tls = checkTlsFiles(
    { ca: 'KAFKA_TLS_CA', cert: 'KAFKA_TLS_CERT', key: 'KAFKA_TLS_KEY', passphrase: 'KAFKA_TLS_KEY_PASSPHRASE' },
    v,
    problems,
    warnings,
    readFile,
  );
  const insecure = v.KAFKA_TLS_INSECURE === true;
  if (insecure) warnings.push("KAFKA_TLS_INSECURE=true: Kafka's certificates and host names are NOT verified; anyone on the path can read and change the traffic");
  return { ...tls, insecure };
}

function resolveKafkaSasl(v: Raw, tls: boolean, problems: string[], warnings: string[]): Config['kafka']['sasl'] {
  const mechanism = v.KAFKA_SASL_MECHANISM as SaslMechanism | undefined;
  const username = v.KAFKA_SASL_USERNAME as string | undefined;
  const password = v.KAFKA_SASL_PASSWORD as string | undefined;
  if (problems.some((p) => p.startsWith('KAFKA_SASL_'))) return undefined;
  if (mechanism === undefined) {
    const set = [username !== undefined && 'KAFKA_SASL_USERNAME', password !== undefined && 'KAFKA_SASL_PASSWORD'].filter((x): x is string => typeof x === 'string');
    if (set.length > 0) problems.push(`${set.join(' and ')} set, but KAFKA_SASL_MECHANISM is not (plain, scram-sha-256 or scram-sha-512)`);
    return undefined;
  }
  if (username === undefined) problems.push(`KAFKA_SASL_USERNAME: required with KAFKA_SASL_MECHANISM=${mechanism}`);
  if (password === undefined || password === '') problems.push(`KAFKA_SASL_PASSWORD: required with KAFKA_SASL_MECHANISM=${mechanism} (or KAFKA_SASL_PASSWORD_FILE)`);
  if (username === undefined || password === undefined) return undefined;
  if (mechanism === 'plain' && !tls) warnings.push('KAFKA_SASL_MECHANISM=plain without TLS: the Kafka password crosses the network in clear text (set KAFKA_TLS=true)');
  return { mechanism, username, password };
}

/**
 * Checks the TLS files named by the variables in `names`: readable, PEM, the key decrypts with
 * the passphrase, certificate and key belong together. Problems name the variable and the path,
 * never a passphrase or any file content.
 */
function checkTlsFiles(
  names: { ca: string; cert: string; key: string; passphrase: string },
  v: Raw,
  problems: string[],
  warnings: string[],
  readFile: (p: string) => string,
): Omit<TlsConfig, 'insecure'> {
  const caFile = v[names.ca] as string | undefined;
  const certFile = v[names.cert] as string | undefined;
  const keyFile = v[names.key] as string | undefined;
  const keyPassphrase = v[names.passphrase] as string | undefined;
  if (caFile !== undefined) checkCertFile(names.ca, caFile, problems, warnings, readFile);
  if (certFile !== undefined && keyFile === undefined) problems.push(`${names.cert}: set, but ${names.key} is not (a client certificate needs its private key)`);
  if (keyFile !== undefined && certFile === undefined) problems.push(`${names.key}: set, but ${names.cert} is not (a private key needs its client certificate)`);
  if (keyPassphrase !== undefined && keyFile === undefined) problems.push(`${names.passphrase}: set, but ${names.key} is not`);
  const cert = certFile === undefined ? undefined : checkCertFile(names.cert, certFile, problems, warnings, readFile);
  const key = keyFile === undefined ? undefined : checkKeyFile(names.key, keyFile, names.passphrase, keyPassphrase, problems, readFile);
  if (cert && key && !cert.checkPrivateKey(key)) problems.push(`${names.cert} and ${names.key}: the key '${keyFile}' does not belong to the certificate '${certFile}'`);
  return { caFile, certFile, keyFile, keyPassphrase };
}

function readTlsFile(name: string, path: string, problems: string[], readFile: (p: string) => string): string | undefined {
  try {
    return readFile(path);
  } catch (err) {
    problems.push(`${name}: cannot read '${path}' (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return undefined;
  }
}

/** Every certificate in a PEM file must parse; returns the first (the leaf of a client chain). */
function checkCertFile(name: string, path: string, problems: string[], warnings: string[], readFile: (p: string) => string): X509Certificate | undefined {
  const text = readTlsFile(name, path, problems, readFile);
  if (text === undefined) return undefined;
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    problems.push(`${name}: '${path}' holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    return undefined;
  }
  const certs: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certs.push(new X509Certificate(block));
    } catch {
      problems.push(`${name}: certificate ${i + 1} in '${path}' is not a valid X.509 certificate`);
      return undefined;
    }
  }
  const now = Date.now();
  for (const c of certs) {
    if (Date.parse(c.validTo) < now) warnings.push(`${name}: the certificate '${c.subject.replaceAll('\n', ', ')}' in '${path}' expired on ${c.validTo}`);
  }
  return certs[0];
}

function checkKeyFile(name: string, path: string, passName: string, passphrase: string | undefined, problems: string[], readFile: (p: string) => string): KeyObject | undefined {
  const text = readTlsFile(name, path, problems, readFile);
  if (text === undefined) return undefined;
  if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    problems.push(`${name}: '${path}' holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)`);
    return undefined;
  }
  try {
    return createPrivateKey({ key: text, format: 'pem', ...(passphrase === undefined ? {} : { passphrase }) });
  } catch (err) {
    // The crypto error text is not passed on: only what the operator needs, never the passphrase.
    const code = (err as NodeJS.ErrnoException).code;
    if (passphrase === undefined && (code === 'ERR_MISSING_PASSPHRASE' || /ENCRYPTED/.test(text))) {
      problems.push(`${name}: the key in '${path}' is encrypted; set ${passName} (or ${passName}_FILE)`);
    } else if (passphrase !== undefined && /ENCRYPTED/.test(text)) {
      problems.push(`${name}: cannot decrypt the key in '${path}' (wrong ${passName}?)`);
    } else {
      problems.push(`${name}: '${path}' is not a valid PEM private key`);
    }
    return undefined;
  }
}

/** MQTT topic filter rules (MQTT 5 §4.7): '#' last and alone in its level, '+' alone in its level. */
export function topicFilterProblem(filter: string): string | undefined {
  if (filter.length === 0) return 'is empty';
  if (Buffer.byteLength(filter) > 65535) return 'is longer than 65535 bytes';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i] ?? '';
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return "has '#' that is not alone in the last level";
    if (l.includes('+') && l !== '+') return "has '+' that is not alone in its level";
  }
  return undefined;
}

function spoolPathProblem(path: string): string | undefined {
  const dir = dirname(path);
  try {
    if (existsSync(path)) {
      accessSync(path, constants.R_OK | constants.W_OK);
      return undefined;
    }
    // The directory is created at start when missing; its nearest existing parent must be writable.
    let d = dir;
    while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
    if (!statSync(d).isDirectory()) throw new Error('not a directory');
    accessSync(d, constants.W_OK);
    return undefined;
  } catch {
    return `'${path}' is not writable (check the volume mount and the user the bridge runs as)`;
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const value of Object.values(o)) deepFreeze(value);
    Object.freeze(o);
  }
  return o;
}
