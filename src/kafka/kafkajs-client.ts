import {
  CompressionTypes,
  Kafka,
  logLevel as KafkaLogLevel,
  Partitioners,
  type KafkaConfig,
  type Producer,
  type LogEntry,
  type TopicMessages,
} from 'kafkajs';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { BridgeError, describeError } from '../errors.js';
import { tlsFailure } from '../tls.js';
import { explainKafkaSecurityError, kafkaClosedHint } from './security.js';
import type { KafkaProducerClient, OutRecord, WriteErrorKind } from './types.js';

/**
 * kafkajs 2.2.4 behind the writer's own interface (src/kafka/types.ts), so the library can be
 * swapped. Pitfalls handled here (DESIGN §4):
 *  - idempotent producer with acks=-1 and maxInFlightRequests 1;
 *  - a failed send() keeps nothing: the caller (writer / spool) owns the records;
 *  - after any failed send the producer is recreated before its next use: fatal idempotence
 *    errors leave it unusable, and after some outages it never reconnects by itself;
 *  - send() is raced against KAFKA_WRITE_TIMEOUT_MS; a late success of a timed-out request
 *    can only add a duplicate that carries the same message id.
 */
export interface KafkaClientFactory {
  /** A producer client for one worker (or the replayer). */
  create(name: string): KafkaProducerClient;
  /** Metadata round trip; throws when Kafka does not answer. */
  probe(): Promise<void>;
  close(): Promise<void>;
  /** A setting Kafka rejects (SASL credentials, TLS trust), until a connection succeeds again; /readyz reports it. */
  securityProblem?(): string | undefined;
}

export interface KafkaClientOptions {
  readonly logger: Logger;
  /** Extra kafkajs options (TLS, SASL), merged into the client config. */
  readonly clientConfig?: Partial<KafkaConfig>;
}

export function createKafkajsFactory(config: Config['kafka'], opts: KafkaClientOptions): KafkaClientFactory {
  const log = opts.logger.child({ component: 'kafka' });
  const kafka = new Kafka({
    clientId: config.clientId,
    brokers: [...config.brokers],
    connectionTimeout: config.connectTimeoutMs,
    requestTimeout: config.writeTimeoutMs,
    // kafkajs logs every retry at ERROR during an outage; our writer reports the outage once.
    logLevel: KafkaLogLevel.WARN,
    logCreator: () => (entry: LogEntry) => log.debug({ kafkajs: entry.namespace, ...entry.log }, entry.log.message),
    retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
    ...opts.clientConfig,
  });
  const compression = config.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
  const admin = kafka.admin();
  let adminConnected = false;
  const clients = new Set<KafkajsProducerClient>();
  const reporter = new ProblemReporter(log, config);

  return {
    securityProblem: () => reporter.problem,
    create(name: string) {
      const c = new KafkajsProducerClient(kafka, config, compression, log.child({ producer: name }), reporter, () => clients.delete(c));
      clients.add(c);
      return c;
    },
    async probe() {
      try {
        if (!adminConnected) {
          await withTimeout(admin.connect(), config.connectTimeoutMs, 'connect');
          adminConnected = true;
        }
        await withTimeout(admin.describeCluster(), config.connectTimeoutMs, 'describeCluster');
      } catch (err) {
        adminConnected = false;
        reporter.failed(err, 'connect');
        await admin.disconnect().catch(() => undefined);
        throw new BridgeError('BRIDGE_ERR_KAFKA_CONNECT', `Kafka did not answer: ${describeError(err)}`, { cause: err });
      }
    },
    async close() {
      await Promise.all([...clients].map((c) => c.close()));
      await admin.disconnect().catch(() => undefined);
    },
  };
}

class KafkajsProducerClient implements KafkaProducerClient {
  private producer: Producer | undefined;
  private connecting: Promise<Producer> | undefined;
  private closed = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: Config['kafka'],
    private readonly compression: CompressionTypes,
    private readonly log: Logger,
    private readonly reporter: ProblemReporter,
    private readonly onClose: () => void,
  ) {}

  private async ready(): Promise<Producer> {
    if (this.producer) return this.producer;
    this.connecting ??= (async () => {
      const p = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: this.config.autoCreateTopics,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
      });
      try {
        await p.connect();
      } catch (err) {
        this.reporter.failed(err, 'connect');
        await p.disconnect().catch(() => undefined);
        throw err;
      }
      this.producer = p;
      return p;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  async send(records: readonly OutRecord[]): Promise<void> {
    if (this.closed) throw new BridgeError('BRIDGE_ERR_CLOSED', 'producer client closed');
    const byTopic = new Map<string, TopicMessages>();
    for (const r of records) {
      let tm = byTopic.get(r.topic);
      if (!tm) {
        tm = { topic: r.topic, messages: [] };
        byTopic.set(r.topic, tm);
      }
      tm.messages.push({ key: r.key, value: r.value, headers: r.headers, timestamp: String(r.timestampMs) });
    }
    try {
      const p = await withTimeout(this.ready(), this.config.writeTimeoutMs, 'connect');
      await withTimeout(
        p.sendBatch({ topicMessages: [...byTopic.values()], acks: -1, timeout: this.config.writeTimeoutMs, compression: this.compression }),
        this.config.writeTimeoutMs,
        'produce',
      );
      this.reporter.ok();
    } catch (err) {
      this.reporter.failed(err, 'send');
      // Whatever happened, this producer's sequence state is suspect: start afresh next time.
      await this.recreate();
      throw err;
    }
  }

  async probe(): Promise<void> {
    await withTimeout(this.ready(), this.config.connectTimeoutMs, 'connect');
    this.reporter.ok();
  }

  async recreate(): Promise<void> {
    const p = this.producer;
    this.producer = undefined;
    if (p) await withTimeout(p.disconnect(), 2000, 'disconnect').catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.recreate();
    this.onClose();
  }
}

/**
 * Logs a Kafka failure that is a setting (SASL, TLS) once per distinct message, not once per
 * retry, and keeps it for /readyz until a connection succeeds. A connection the broker closes
 * while connecting gets a hint (plain text to a TLS listener, no SASL on a SASL listener).
 */
class ProblemReporter {
  problem: string | undefined;
  private logged: string | undefined;

  constructor(
    private readonly log: Logger,
    private readonly config: Config['kafka'],
  ) {}

  failed(err: unknown, phase: 'connect' | 'send'): void {
    const problem = explainKafkaSecurityError(err, this.config);
    if (problem) {
      this.problem = problem;
      this.once(problem, 'error', err);
      return;
    }
    const hint = kafkaClosedHint(this.config);
    if (phase === 'connect' && hint && hasErrorName(err, 'KafkaJSConnectionClosedError')) {
      this.once(`Kafka closed the connection while connecting (${hint})`, 'warn', err);
    }
  }

  ok(): void {
    if (this.problem) this.log.info({ resolved: this.problem }, 'Kafka accepts the connection again');
    this.problem = undefined;
    this.logged = undefined;
  }

  private once(message: string, level: 'error' | 'warn', err: unknown): void {
    if (this.logged === message) return;
    this.logged = message;
    this.log[level]({ err: describeError(err), brokers: this.config.brokers }, message);
  }
}

function hasErrorName(err: unknown, name: string): boolean {
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    const o = e as { name?: string; cause?: unknown; originalError?: unknown };
    if (o.name === name) return true;
    e = o.originalError ?? o.cause;
  }
  return false;
}

class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Maps a kafkajs (or timeout) error to a bounded kind for metrics. */
export function classifyKafkaError(err: unknown): WriteErrorKind {
  if (tlsFailure(err)) return 'tls';
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e && typeof e === 'object' && !seen.has(e)) {
    seen.add(e);
    const o = e as { name?: string; type?: string; cause?: unknown; originalError?: unknown };
    if (o.name === 'TimeoutError' || o.name === 'KafkaJSRequestTimeoutError') return 'timeout';
    if (o.name === 'KafkaJSSASLAuthenticationError') return 'auth';
    switch (o.type) {
      case 'SASL_AUTHENTICATION_FAILED':
      case 'TOPIC_AUTHORIZATION_FAILED':
      case 'CLUSTER_AUTHORIZATION_FAILED':
      case 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED':
        return 'auth';
      case 'MESSAGE_TOO_LARGE':
      case 'RECORD_LIST_TOO_LARGE':
        return 'too_large';
      case 'UNKNOWN_TOPIC_OR_PARTITION':
        return 'topic_missing';
      case 'LEADER_NOT_AVAILABLE':
      case 'NOT_LEADER_FOR_PARTITION':
      case 'NOT_LEADER_OR_FOLLOWER':
        return 'leader_unavailable';
      case 'OUT_OF_ORDER_SEQUENCE_NUMBER':
      case 'UNKNOWN_PRODUCER_ID':
      case 'INVALID_PRODUCER_EPOCH':
        return 'fatal_producer';
    }
    if (o.name === 'KafkaJSConnectionError' || o.name === 'KafkaJSBrokerNotFound' || o.name === 'KafkaJSConnectionClosedError') return 'connection';
    e = o.originalError ?? o.cause;
  }
  return 'unknown';
}
