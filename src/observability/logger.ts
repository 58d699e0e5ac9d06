import pino, { type Logger } from 'pino';

/** Paths pino blanks out wherever they appear in a log object. */
const REDACT = [
  'password',
  'mqtt.password',
  '*.password',
  'passphrase',
  '*.passphrase',
  'sasl',
  '*.sasl',
  'key',
  // TLS key passphrases (config.mqtt.tls, config.kafka.tls) and TLS option objects (ssl, clientOptions).
  // Explicit paths rather than more '*.*.' wildcards: @pinojs/redact 0.4 throws on a Buffer
  // where an intermediate wildcard has to look inside it.
  'keyPassphrase',
  '*.keyPassphrase',
  'mqtt.tls.keyPassphrase',
  'kafka.tls.keyPassphrase',
  'ssl.key',
  '*.ssl.key',
  'ssl.passphrase',
  '*.ssl.passphrase',
  'clientOptions.key',
  'clientOptions.passphrase',
  'config.mqtt.password',
  'config.mqtt.tls.keyPassphrase',
  'config.kafka.tls.keyPassphrase',
  'config.kafka.sasl',
  'headers.authorization',
];

/** JSON logs on stdout at `level`; secrets redacted. Components log through child loggers ({component}). */
export function createLogger(level: string, dest?: pino.DestinationStream): Logger {
  const opts: pino.LoggerOptions = {
    level,
    base: { service: 'mqtt-kafka-spool' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT, censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
  };
  return dest ? pino(opts, dest) : pino(opts);
}

/** Removes user:password from every URL in `text` (a URL, or a message quoting URLs) before it is logged or shown. */
export function redactUrl(text: string): string {
  return text.replace(/\/\/([^@/\s'"]+)@/g, '//[redacted]@');
}
