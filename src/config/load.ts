import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { VARS } from './spec.js';
import type { Config } from './types.js';

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
  if (Array.isArray(v.MQTT_TOPIC)) {
    for (const t of v.MQTT_TOPIC as string[]) {
      const err = topicFilterProblem(t);
      if (err) problems.push(`MQTT_TOPIC: '${t}' ${err}`);
    }
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
      qos: v.MQTT_QOS as 0 | 1,
      protocolVersion: v.MQTT_VERSION as 4 | 5,
      sessionExpiryS: v.MQTT_SESSION_EXPIRY_S as number,
      keepaliveS: v.MQTT_KEEPALIVE_S as number,
      reconnectMs: v.MQTT_RECONNECT_MS as number,
      username: v.MQTT_USERNAME as string | undefined,
      password: v.MQTT_PASSWORD as string | undefined,
      maxInFlight: v.MAX_IN_FLIGHT_MESSAGES as number,
      maxInFlightBytes: v.MAX_IN_FLIGHT_BYTES as number,
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
      compression: v.KAFKA_COMPRESSION as 'none' | 'gzip',
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
  if (broker.includes('://')) {
    try {
      const u = new URL(broker);
      if (!['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:'].includes(u.protocol)) {
        problems.push(`MQTT_BROKER: unsupported scheme '${u.protocol}' (use mqtt, mqtts, ws or wss)`);
      }
      if (!u.port) u.port = String(v.MQTT_PORT);
      return u.toString().replace(/\/$/, u.pathname === '/' ? '' : '/');
    } catch {
      problems.push(`MQTT_BROKER: '${broker}' is not a valid URL`);
      return '';
    }
  }
  return `mqtt://${broker}:${String(v.MQTT_PORT)}`;
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
