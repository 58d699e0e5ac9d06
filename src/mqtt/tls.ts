import type { IClientOptions } from 'mqtt';
import type { Config } from '../config/types.js';
import { describeError } from '../errors.js';
import { readTlsMaterial, tlsFailure, tlsHint } from '../tls.js';

/** The variables behind `config.mqtt.tls`, for messages. */
export const MQTT_TLS_VARS = { ca: 'ROOT_CA', cert: 'MQTT_CLIENT_CERT', key: 'MQTT_CLIENT_KEY' } as const;

/** MQTT.js passes these on to tls.connect() (and, for wss://, to the WebSocket); its types lack `passphrase`. */
export type MqttTlsOptions = IClientOptions & { passphrase?: string };

/**
 * MQTT.js options for TLS (mqtts:// and wss://; MQTT.js hands them to the WebSocket for wss),
 * read from the files in `config.tls`. Empty when the connection does not use TLS. Username and
 * password are set by the source from config.mqtt itself. Throws ConfigError when a file can no
 * longer be read.
 */
export function buildMqttClientOptions(config: Config['mqtt'], deps: { readFile?: (path: string) => Buffer } = {}): MqttTlsOptions {
  const tls = config.tls;
  if (!tls) return {};
  const m = readTlsMaterial(tls, MQTT_TLS_VARS, deps.readFile);
  return {
    // Certificate chain and host name (SAN) checks; MQTT_TLS_INSECURE turns both off.
    rejectUnauthorized: !tls.insecure,
    ...(m.ca ? { ca: m.ca } : {}),
    ...(m.cert && m.key ? { cert: m.cert, key: m.key } : {}),
    ...(tls.keyPassphrase !== undefined ? { passphrase: tls.keyPassphrase } : {}),
  };
}

/** An MQTT connection problem as one log line: what happened and which setting to check. */
export interface MqttProblem {
  readonly message: string;
  /** True when it is most likely a setting (TLS, credentials, scheme), not an outage. */
  readonly config: boolean;
}

/**
 * Turns an MQTT.js 'error' into a message an operator can act on. `beforeConnack`: the
 * connection had not been accepted yet (a reset then usually means a TLS/plain-text mix-up).
 * Never includes a password: neither MQTT.js nor Node put one in these errors.
 */
export function explainMqttError(err: unknown, opts: { beforeConnack: boolean; tls: boolean; websocket: boolean }): MqttProblem {
  const tls = tlsFailure(err);
  if (tls) {
    const hint = tlsHint(tls.kind, {
      verify: 'check ROOT_CA: it must be the CA that signed the broker certificate',
      name: 'the broker certificate does not name the host in MQTT_BROKER',
      clientCert: 'the broker wants a client certificate it trusts: check MQTT_CLIENT_CERT/MQTT_CLIENT_KEY',
      notTls: `the port does not speak TLS: use ${opts.websocket ? 'ws://' : 'mqtt://'} or the broker's TLS port`,
      other: 'check the TLS settings (ROOT_CA, MQTT_CLIENT_CERT, MQTT_CLIENT_KEY)',
    });
    return { message: `MQTT TLS handshake failed: ${tls.reason} (${hint})`, config: true };
  }
  const e = err as { name?: unknown; code?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (typeof e?.code === 'number' && message.startsWith('Connection refused')) {
    // CONNACK with a failure reason code (MQTT 3.1.1 return code or MQTT 5 reason code).
    let reason = message.replace(/^Connection refused:?\s*/, '') || `reason code ${e.code}`;
    if (/^bad user ?name or password$/i.test(reason)) reason = 'Bad username or password';
    const hint = [4, 5, 134, 135, 140].includes(e.code)
      ? ' (check MQTT_USERNAME and MQTT_PASSWORD, and the broker ACL)'
      : [2, 133].includes(e.code)
        ? ' (check MQTT_CLIENT_ID)'
        : [1, 132].includes(e.code)
          ? ' (check MQTT_VERSION)'
          : '';
    return { message: `MQTT broker refused the connection: ${reason}${hint}`, config: hint !== '' };
  }
  if (opts.websocket && /^Unexpected server response/.test(message)) {
    return { message: `MQTT WebSocket handshake failed: ${message} (check the path in MQTT_BROKER, e.g. ws://host:port/mqtt, and that the port serves WebSockets)`, config: true };
  }
  if (opts.beforeConnack && (e?.code === 'ECONNRESET' || e?.code === 'EPIPE')) {
    const expected = opts.tls
      ? `a plain-text port? use ${opts.websocket ? 'ws://' : 'mqtt://'}`
      : `a TLS port? use ${opts.websocket ? 'wss://' : 'mqtts://'} (and ROOT_CA)`;
    return {
      message: `MQTT connection reset by the broker before it accepted CONNECT (${expected}${opts.websocket ? '' : '; a WebSocket port needs ws:// or wss://'})`,
      config: true,
    };
  }
  return { message: `MQTT connection error: ${describeError(err)}`, config: false };
}
