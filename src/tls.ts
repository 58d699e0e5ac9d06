import { readFileSync } from 'node:fs';
import type { TlsConfig } from './config/types.js';
import { ConfigError, errorChain } from './errors.js';

/** TLS helpers shared by the MQTT (src/mqtt/tls.ts) and Kafka (src/kafka/security.ts) connections. */

/** The file contents behind a TlsConfig, read at start. */
export interface TlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/**
 * Reads the CA, certificate and key files. They were checked at config load; a file that went
 * away since is a ConfigError naming the variable and path (never any content).
 */
export function readTlsMaterial(
  tls: TlsConfig,
  names: { readonly ca: string; readonly cert: string; readonly key: string },
  readFile: (path: string) => Buffer = (p) => readFileSync(p),
): TlsMaterial {
  const problems: string[] = [];
  const read = (name: string, path: string | undefined): Buffer | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFile(path);
    } catch (err) {
      problems.push(`${name}: cannot read '${path}' (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return undefined;
    }
  };
  const ca = read(names.ca, tls.caFile);
  const cert = read(names.cert, tls.certFile);
  const key = read(names.key, tls.keyFile);
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}

/** OpenSSL certificate verification results as Node reports them in `err.code`. */
const VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'OUT_OF_MEM',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** What went wrong in a TLS handshake, in words an operator can act on. */
export interface TlsFailure {
  /**
   * verify: we do not trust the server's certificate (CA, name, dates);
   * name: the certificate does not name the host;
   * dates: expired or not yet valid;
   * client_cert: the server wants a client certificate it trusts;
   * not_tls: the other side does not speak TLS;
   * other: any other handshake failure.
   */
  readonly kind: 'verify' | 'name' | 'dates' | 'client_cert' | 'not_tls' | 'other';
  /** Short reason, e.g. "unable to verify the first certificate". */
  readonly reason: string;
}

/** Finds a TLS handshake failure in `err` or its causes (Kafka client errors wrap and aggregate them); undefined if it is none. */
export function tlsFailure(err: unknown): TlsFailure | undefined {
  for (const o of errorChain(err)) {
    const code = typeof o.code === 'string' ? o.code : '';
    const message = typeof o.message === 'string' ? o.message : '';
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') return { kind: 'name', reason: firstSentence(message) };
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return { kind: 'dates', reason: firstSentence(message) };
    if (VERIFY_CODES.has(code)) return { kind: 'verify', reason: stripPrefix(message) };
    if (message === 'TLS not authorized') return { kind: 'verify', reason: 'the server certificate is not trusted' };
    if (code.startsWith('ERR_SSL_') || /SSL routines/.test(message)) {
      const reason = /SSL routines:[^:]*:([^:]+)/.exec(message)?.[1]?.trim() ?? firstSentence(message);
      if (/wrong version number|packet length too long|unknown protocol|record layer failure|http request/i.test(reason)) {
        return { kind: 'not_tls', reason };
      }
      if (/certificate required|bad certificate|unknown ca|certificate unknown|certificate expired|certificate revoked|unsupported certificate/i.test(reason)) {
        return { kind: 'client_cert', reason };
      }
      return { kind: 'other', reason };
    }
    if (/before secure TLS connection was established/.test(message)) return { kind: 'not_tls', reason: 'the server closed the connection during the TLS handshake' };
  }
  return undefined;
}

function stripPrefix(message: string): string {
  return firstSentence(message.replace(/^Connection error: /, ''));
}

function firstSentence(message: string): string {
  return (message.split('\n')[0] ?? '')
    .replace(/^Connection error: /, '')
    // Node 24 appends advice about the system CA store to verification errors; our hint names the setting to check.
    .replace(/; if the root CA is installed locally, try running Node\.js with --use-system-ca$/, '')
    .trim();
}

/** Per-side wording for the TLS hints: which settings to check, and how to say it in each case. */
export interface TlsHints {
  /** e.g. "check ROOT_CA: it must be the CA that signed the broker certificate" */
  readonly verify: string;
  readonly name: string;
  readonly clientCert: string;
  readonly notTls: string;
  readonly other: string;
}

/** What to check for a classified TLS failure, in the caller's own variable names. */
export function tlsHint(kind: TlsFailure['kind'], hints: TlsHints): string {
  switch (kind) {
    case 'verify':
      return hints.verify;
    case 'name':
      return hints.name;
    case 'dates':
      return "check the broker certificate's validity dates and this host's clock";
    case 'client_cert':
      return hints.clientCert;
    case 'not_tls':
      return hints.notTls;
    default:
      return hints.other;
  }
}
