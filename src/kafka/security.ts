import type { KafkaConfig, SASLOptions } from 'kafkajs';
import type { ConnectionOptions } from 'node:tls';
import type { Config } from '../config/types.js';
import { readTlsMaterial, tlsFailure, tlsHint } from '../tls.js';

/** The variables behind `config.kafka.tls`, for messages. */
export const KAFKA_TLS_VARS = { ca: 'KAFKA_TLS_CA', cert: 'KAFKA_TLS_CERT', key: 'KAFKA_TLS_KEY' } as const;

/**
 * kafkajs `ssl` and `sasl` options from `config.kafka.tls` / `config.kafka.sasl`, with the TLS
 * files read now. Empty when neither is configured. Throws ConfigError when a file can no
 * longer be read.
 */
export function buildKafkaSecurity(config: Config['kafka'], deps: { readFile?: (path: string) => Buffer } = {}): Partial<KafkaConfig> {
  const out: { ssl?: KafkaConfig['ssl']; sasl?: SASLOptions } = {};
  const tls = config.tls;
  if (tls) {
    const m = readTlsMaterial(tls, KAFKA_TLS_VARS, deps.readFile);
    const opts: ConnectionOptions = {
      // Certificate chain and host name checks (kafkajs sets the SNI name for host names);
      // KAFKA_TLS_INSECURE turns both off.
      rejectUnauthorized: !tls.insecure,
      ...(m.ca ? { ca: m.ca } : {}),
      ...(m.cert && m.key ? { cert: m.cert, key: m.key } : {}),
      ...(tls.keyPassphrase !== undefined ? { passphrase: tls.keyPassphrase } : {}),
    };
    out.ssl = opts;
  }
  const sasl = config.sasl;
  if (sasl) out.sasl = { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password } as SASLOptions;
  return out;
}

/**
 * A Kafka failure that is a setting rather than an outage (SASL authentication, TLS handshake),
 * as one line naming what to check; undefined for anything else. Never includes the password.
 */
export function explainKafkaSecurityError(err: unknown, config: Pick<Config['kafka'], 'tls' | 'sasl'>): string | undefined {
  if (isSaslFailure(err)) {
    return config.sasl
      ? `Kafka authentication failed (SASL ${config.sasl.mechanism}): check KAFKA_SASL_USERNAME/PASSWORD and KAFKA_SASL_MECHANISM`
      : 'Kafka authentication failed: check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD';
  }
  const tls = tlsFailure(err);
  if (!tls) return undefined;
  const hint = tlsHint(tls.kind, {
    verify: 'check KAFKA_TLS_CA: it must be the CA that signed the broker certificates',
    name: 'the broker certificate does not name the host in KAFKA_BROKER(S) or the advertised listener',
    clientCert: 'the broker wants a client certificate it trusts: check KAFKA_TLS_CERT/KAFKA_TLS_KEY',
    notTls: 'the listener does not speak TLS: unset KAFKA_TLS or use the TLS listener port',
    other: 'check the KAFKA_TLS_* settings',
  });
  return `Kafka TLS handshake failed: ${tls.reason} (${hint})`;
}

/** Hint for a connection the broker closed during the handshake, the usual sign of a plain-text client on a TLS or SASL listener. */
export function kafkaClosedHint(config: Pick<Config['kafka'], 'tls' | 'sasl'>): string | undefined {
  if (!config.tls) return 'if the listener uses TLS, set KAFKA_TLS=true (and KAFKA_TLS_CA)';
  if (!config.sasl) return 'if the listener requires SASL, set KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD';
  return undefined;
}

export function isSaslFailure(err: unknown): boolean {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    const o = e as { name?: string; type?: string; cause?: unknown; originalError?: unknown };
    if (o.name === 'KafkaJSSASLAuthenticationError' || o.type === 'SASL_AUTHENTICATION_FAILED' || o.type === 'UNSUPPORTED_SASL_MECHANISM' || o.type === 'ILLEGAL_SASL_STATE') return true;
    e = o.originalError ?? o.cause;
  }
  return false;
}
