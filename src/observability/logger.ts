import pino, { type Logger } from 'pino';

/** Paths pino blanks out wherever they appear in a log object. */
const REDACT = [
  'password',
  '*.password',
  '*.*.password',
  'passphrase',
  '*.passphrase',
  'sasl',
  '*.sasl',
  'key',
  'config.mqtt.password',
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

/** Removes user:password from a URL before it is logged or shown. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/\s]+)@/, '//[redacted]@');
}
