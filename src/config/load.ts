import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { isSharedFilter, sharedGroupProblem } from '../mqtt/shared-group.js';
import { redactUrl } from '../observability/logger.js';
import { VARS } from './spec.js';
import type { Config, KafkaCompression, MessageSchemaConfig, RegistryConfig, SaslMechanism, SessionsConfig, TlsConfig } from './types.js';

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
    .filter((k) => /^(MQTT|KAFKA|SPOOL|SCHEMA_REGISTRY|MESSAGE_SCHEMA)_/.test(k) && !k.includes('_SERVICE_') && !/_PORT_\d+_/.test(k))
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
  const registry = resolveRegistry(v, problems, warnings, readFile);
  const messageSchema = resolveMessageSchema(v, registry !== undefined, problems, warnings);
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

  const host = (deps.hostname ?? osHostname)();
  const sessions = resolveSessions(v, env, host, problems);

  if (problems.length > 0) throw new ConfigError(problems);

  const config: Config = {
    mqtt: {
      url: mqttUrl,
      topics: (v.MQTT_TOPIC as string[] | undefined) ?? [],
      clientId: env.MQTT_CLIENT_ID === undefined && sessions ? sessions.group : (v.MQTT_CLIENT_ID as string).replaceAll('%h', host),
      // Several sessions of a group split the stream in a shared subscription.
      sharedGroup: (v.MQTT_SHARED_GROUP as string | undefined) ?? (sessions && sessions.count > 1 ? sessions.group : undefined),
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
      readAheadMessages: v.READ_AHEAD_MESSAGES as number,
      readAheadMaxAgeMs: v.READ_AHEAD_MAX_AGE_MS as number,
      removedFilterPolicy: v.MQTT_REMOVED_FILTER_POLICY as 'forward' | 'dead_letter',
    },
    kafka: {
      brokers: kafkaBrokers,
      clientId: v.KAFKA_CLIENT_ID as string,
      workers: v.KAFKA_WORKERS as number,
      lingerMs: v.KAFKA_LINGER_MS as number,
      autoCreateTopics: v.KAFKA_AUTO_CREATE_TOPICS as boolean,
      batchMaxMessages: v.KAFKA_BATCH_MAX_MESSAGES as number,
      replayBatchMaxMessages: v.KAFKA_REPLAY_BATCH_MAX_MESSAGES as number,
      batchMaxBytes: v.KAFKA_BATCH_MAX_BYTES as number,
      writeTimeoutMs: v.KAFKA_WRITE_TIMEOUT_MS as number,
      deliveryTimeoutMs: v.KAFKA_DELIVERY_TIMEOUT_MS as number,
      connectTimeoutMs: v.KAFKA_CONNECT_TIMEOUT_MS as number,
      compression: v.KAFKA_COMPRESSION as KafkaCompression,
      tls: kafkaTls,
      sasl: kafkaSasl,
    },
    mapping: {
      topic: v.KAFKA_TOPIC as string | undefined,
      routesFile: v.ROUTES_FILE === undefined ? undefined : resolve(v.ROUTES_FILE as string),
      separator: v.KAFKA_TOPIC_SEPARATOR as '_' | '.' | '-',
      format: v.MESSAGE_FORMAT as Config['mapping']['format'],
      schema: messageSchema,
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
    registry,
    http: { port: v.HEALTH_PORT as number, host: v.HEALTH_HOST as string },
    logLevel: v.LOG_LEVEL as Config['logLevel'],
    shutdownTimeoutMs: v.SHUTDOWN_TIMEOUT_MS as number,
    idleMemoryReleaseMs: v.IDLE_MEMORY_RELEASE_MS as number,
    sessions,
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

/** SCHEMA_REGISTRY_*: the registry of the avro, protobuf and json_schema formats. Whether a route needs it is checked at start (src/main.ts). */
function resolveRegistry(v: Raw, problems: string[], warnings: string[], readFile: (p: string) => string): RegistryConfig | undefined {
  const url = v.SCHEMA_REGISTRY_URL as string | undefined;
  const others = Object.keys(v).filter((k) => k.startsWith('SCHEMA_REGISTRY_') && k !== 'SCHEMA_REGISTRY_URL' && !['SCHEMA_REGISTRY_TIMEOUT_MS', 'SCHEMA_REGISTRY_RETRY_MS', 'SCHEMA_REGISTRY_TLS_INSECURE'].includes(k));
  if (url === undefined) {
    if (others.length > 0) problems.push(`${others.join(', ')} set, but SCHEMA_REGISTRY_URL is not`);
    return undefined;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    problems.push(`SCHEMA_REGISTRY_URL: '${redactUrl(url)}' is not a valid URL`);
    return undefined;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    problems.push(`SCHEMA_REGISTRY_URL: unsupported scheme '${parsed.protocol}' (use http or https)`);
    return undefined;
  }
  if (parsed.username !== '' || parsed.password !== '') {
    // Keeps the password out of the URL, which is logged.
    problems.push('SCHEMA_REGISTRY_URL: no credentials in the URL; set SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD (or SCHEMA_REGISTRY_TOKEN)');
    return undefined;
  }
  const username = v.SCHEMA_REGISTRY_USERNAME as string | undefined;
  const password = v.SCHEMA_REGISTRY_PASSWORD as string | undefined;
  const token = v.SCHEMA_REGISTRY_TOKEN as string | undefined;
  if (token !== undefined && (username !== undefined || password !== undefined)) problems.push('SCHEMA_REGISTRY_TOKEN and SCHEMA_REGISTRY_USERNAME/PASSWORD are both set; use one way to authenticate');
  else if (username !== undefined && password === undefined) problems.push('SCHEMA_REGISTRY_PASSWORD: required with SCHEMA_REGISTRY_USERNAME (or SCHEMA_REGISTRY_PASSWORD_FILE)');
  else if (password !== undefined && username === undefined) problems.push('SCHEMA_REGISTRY_USERNAME: required with SCHEMA_REGISTRY_PASSWORD');
  let tls: TlsConfig | undefined;
  const tlsVars = ['SCHEMA_REGISTRY_TLS_CA', 'SCHEMA_REGISTRY_TLS_CERT', 'SCHEMA_REGISTRY_TLS_KEY', 'SCHEMA_REGISTRY_TLS_KEY_PASSPHRASE'].filter((k) => v[k] !== undefined);
  if (parsed.protocol === 'https:') {
    const files = checkTlsFiles(
      { ca: 'SCHEMA_REGISTRY_TLS_CA', cert: 'SCHEMA_REGISTRY_TLS_CERT', key: 'SCHEMA_REGISTRY_TLS_KEY', passphrase: 'SCHEMA_REGISTRY_TLS_KEY_PASSPHRASE' },
      v,
      problems,
      warnings,
      readFile,
    );
    const insecure = v.SCHEMA_REGISTRY_TLS_INSECURE === true;
    if (insecure) warnings.push("SCHEMA_REGISTRY_TLS_INSECURE=true: the schema registry's certificate and host name are NOT verified");
    tls = { ...files, insecure };
  } else {
    if (tlsVars.length > 0) problems.push(`${tlsVars.join(', ')} set, but SCHEMA_REGISTRY_URL uses http:// (no TLS): use https://`);
    if (v.SCHEMA_REGISTRY_TLS_INSECURE === true) warnings.push('SCHEMA_REGISTRY_TLS_INSECURE has no effect: SCHEMA_REGISTRY_URL uses http://');
    if (username !== undefined || token !== undefined) warnings.push('schema registry credentials over http:// cross the network in clear text (use https://)');
  }
  return {
    url: parsed.toString().replace(/\/+$/, ''),
    username,
    password,
    token,
    tls,
    timeoutMs: v.SCHEMA_REGISTRY_TIMEOUT_MS as number,
    retryMs: v.SCHEMA_REGISTRY_RETRY_MS as number,
  };
}

/** MESSAGE_SCHEMA_*: the schema of a registry MESSAGE_FORMAT without a routes file. */
function resolveMessageSchema(v: Raw, haveRegistry: boolean, problems: string[], warnings: string[]): MessageSchemaConfig | undefined {
  const format = v.MESSAGE_FORMAT as string | undefined;
  const registryFormat = format === 'avro' || format === 'protobuf' || format === 'json_schema';
  const set = ['MESSAGE_SCHEMA_FILE', 'MESSAGE_SCHEMA_VERSION', 'MESSAGE_SCHEMA_PROTOBUF_MESSAGE'].filter((k) => v[k] !== undefined);
  if (v.ROUTES_FILE !== undefined) {
    if (set.length > 0) warnings.push(`${set.join(', ')} not used: ROUTES_FILE is set (each rule names its own schema)`);
    return undefined;
  }
  if (!registryFormat) {
    if (set.length > 0) problems.push(`${set.join(', ')} set, but MESSAGE_FORMAT is ${format ?? 'raw'} (avro, protobuf or json_schema take a schema)`);
    return undefined;
  }
  if (!haveRegistry) problems.push(`SCHEMA_REGISTRY_URL: required with MESSAGE_FORMAT=${format}`);
  const file = v.MESSAGE_SCHEMA_FILE as string | undefined;
  const autoRegister = v.MESSAGE_SCHEMA_AUTO_REGISTER as boolean;
  const version = v.MESSAGE_SCHEMA_VERSION as number | 'latest' | undefined;
  const message = v.MESSAGE_SCHEMA_PROTOBUF_MESSAGE as string | undefined;
  if (message !== undefined && format !== 'protobuf') problems.push(`MESSAGE_SCHEMA_PROTOBUF_MESSAGE: set, but MESSAGE_FORMAT is ${format}`);
  if (version !== undefined && autoRegister) problems.push('MESSAGE_SCHEMA_VERSION: a version is looked up, not registered; set MESSAGE_SCHEMA_AUTO_REGISTER=false with it');
  else if (version !== undefined && file !== undefined) problems.push('MESSAGE_SCHEMA_FILE and MESSAGE_SCHEMA_VERSION are both set; give the file (registered or looked up) or the version (the registry\'s schema)');
  else if (version === undefined && file === undefined) problems.push(`MESSAGE_SCHEMA_FILE: required with MESSAGE_FORMAT=${format} (or MESSAGE_SCHEMA_AUTO_REGISTER=false and MESSAGE_SCHEMA_VERSION)`);
  if (file !== undefined && !existsSync(file)) problems.push(`MESSAGE_SCHEMA_FILE: '${file}' does not exist`);
  return { file: file === undefined ? undefined : resolve(file), autoRegister, version, message };
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

/**
 * BRIDGE_GROUP and the settings that only mean something with it. Every replica of a group must
 * name the same sessions, so a client id that expands per host (%h) is refused; with no
 * MQTT_CLIENT_ID the group's name is the client id.
 */
function resolveSessions(v: Raw, env: NodeJS.ProcessEnv, host: string, problems: string[]): SessionsConfig | undefined {
  const group = v.BRIDGE_GROUP as string | undefined;
  const only = ['MQTT_SESSIONS', 'BRIDGE_GROUP_TOPIC'].filter((k) => env[k] !== undefined && env[k] !== '');
  if (group === undefined) {
    if (only.length > 0) problems.push(`${only.join(', ')}: only used with BRIDGE_GROUP (set it, or remove ${only.length > 1 ? 'them' : 'it'})`);
    return undefined;
  }
  if (env.MQTT_CLIENT_ID !== undefined && String(v.MQTT_CLIENT_ID).includes('%h')) {
    problems.push("MQTT_CLIENT_ID: with BRIDGE_GROUP every replica must use the same client id (the session belongs to the group); '%h' names a different session per host. Set it to a fixed value (an existing install: its current client id, so its session is kept), or leave it unset (the group's name is used)");
  }
  const sessionTimeoutMs = v.BRIDGE_GROUP_SESSION_TIMEOUT_MS as number;
  const heartbeatMs = v.BRIDGE_GROUP_HEARTBEAT_MS as number;
  if (typeof sessionTimeoutMs === 'number' && typeof heartbeatMs === 'number' && heartbeatMs * 3 > sessionTimeoutMs) {
    problems.push(`BRIDGE_GROUP_HEARTBEAT_MS: ${heartbeatMs} is more than a third of BRIDGE_GROUP_SESSION_TIMEOUT_MS (${sessionTimeoutMs}); a late heartbeat would cost the sessions`);
  }
  return {
    group,
    instanceId: (v.BRIDGE_INSTANCE_ID as string).replaceAll('%h', host),
    count: v.MQTT_SESSIONS as number,
    topic: (v.BRIDGE_GROUP_TOPIC as string | undefined) ?? `mqtt-kafka-spool.sessions.${group}`,
    sessionTimeoutMs,
    heartbeatMs,
    releaseMs: v.BRIDGE_SESSION_RELEASE_MS as number,
  };
}
