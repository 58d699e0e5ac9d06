import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { Config } from '../config/types.js';
import { readTlsMaterial, tlsFailure, tlsHint } from '../tls.js';
import { isSaslFailure } from './errors.js';

/** The variables behind `config.kafka.tls`, for messages. */
export const KAFKA_TLS_VARS = { ca: 'KAFKA_TLS_CA', cert: 'KAFKA_TLS_CERT', key: 'KAFKA_TLS_KEY' } as const;

/** The Kafka client's connection security options (`ssl` is the client's alias of `tls`). */
export interface KafkaSecurityOptions {
  ssl?: ConnectionOptions;
  /** Send the broker's host name as TLS SNI (only when every bootstrap address is a name, not an IP). */
  tlsServerName?: boolean;
  sasl?: { mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512'; username: string; password: string };
}

const SASL_MECHANISMS = { plain: 'PLAIN', 'scram-sha-256': 'SCRAM-SHA-256', 'scram-sha-512': 'SCRAM-SHA-512' } as const;

/**
 * The Kafka client's `ssl` and `sasl` options from `config.kafka.tls` / `config.kafka.sasl`,
 * with the TLS files read now. Empty when neither is configured. Throws ConfigError when a file
 * can no longer be read.
 */
export function buildKafkaSecurity(config: Config['kafka'], deps: { readFile?: (path: string) => Buffer } = {}): KafkaSecurityOptions {
  const out: KafkaSecurityOptions = {};
  const tls = config.tls;
  if (tls) {
    const m = readTlsMaterial(tls, KAFKA_TLS_VARS, deps.readFile);
    out.ssl = {
      // Certificate chain and host name checks; KAFKA_TLS_INSECURE turns both off.
      rejectUnauthorized: !tls.insecure,
      ...(m.ca ? { ca: m.ca } : {}),
      ...(m.cert && m.key ? { cert: m.cert, key: m.key } : {}),
      ...(tls.keyPassphrase !== undefined ? { passphrase: tls.keyPassphrase } : {}),
    };
    // SNI for brokers reached by name (SNI-routed proxies need it); Node refuses an IP as SNI.
    if (config.brokers.every((b) => isIP(hostOf(b)) === 0)) out.tlsServerName = true;
  }
  const sasl = config.sasl;
  if (sasl) out.sasl = { mechanism: SASL_MECHANISMS[sasl.mechanism], username: sasl.username, password: sasl.password };
  return out;
}

/** The host of a `host:port` / `[v6]:port` broker address. */
function hostOf(broker: string): string {
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(broker);
  if (m) return m[1]!;
  const i = broker.lastIndexOf(':');
  return i > 0 && broker.indexOf(':') === i ? broker.slice(0, i) : broker;
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

