import { compatibilityPartitioner, ProduceAcks, Producer, type MessageToProduce } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { BridgeError, describeError, errorChain } from '../errors.js';
import { withTimeout } from '../timeout.js';
import { missingTopic } from './errors.js';
import { createTailCheck } from './log-check.js';
import { explainKafkaSecurityError, kafkaClosedHint, type KafkaSecurityOptions } from './security.js';
import type { KafkaClientFactory, KafkaProducerClient, OutRecord } from './types.js';

/**
 * The Kafka side, on @platformatic/kafka, behind the writer's own interface (src/kafka/types.ts).
 *
 * Why this client: against a 3-broker cluster with its leader SIGKILLed, kafkajs 2.2.4 resolved
 * send() for records Kafka never had (its issue #1303: a retry skips partitions that moved to a
 * broker which had already answered) and its producers then hung; @platformatic/kafka lost none
 * in the same test, and costs about a third less CPU per record. test/integration/kafka-cluster
 * keeps proving it.
 *
 * What the writer relies on, and where it is kept:
 *  - idempotent producer, acks=all, one request in flight per connection (the client forces
 *    maxInflights=1 and acks=-1 when idempotent); one client per worker, so one produce request
 *    per worker and broker at a time, and a key's records go out in order;
 *  - the Java client's partitioner (murmur2 & 0x7fffffff), so a key lands on the same partition
 *    as with kafkajs, Kafka Connect or any Java producer: upgrading the bridge keeps per-key order;
 *  - a send whose outcome is unknown (request timeout, connection lost, leader moved, too few
 *    in-sync replicas) is retried by the library inside the same send(), with the same producer
 *    id, epoch and per-partition sequences (the library takes a snapshot of the sequences per
 *    send and re-uses it on every retry), so Kafka writes the batch once even when an earlier
 *    attempt had been written and only its answer was lost (KIP-98; the new leader has the
 *    producer state too). It retries every RETRY_DELAY_MS, without a count limit, until the
 *    send succeeds, fails for good (an error the library does not retry: too large, topic
 *    missing, authorization, OUT_OF_ORDER_SEQUENCE_NUMBER …) or KAFKA_DELIVERY_TIMEOUT_MS passes;
 *  - once a send() fails the library has already dropped its producer id and sequences (the next
 *    send starts a new producer); on our delivery timeout the producer is also closed, which
 *    cancels the retry still running inside it, so a late retry cannot write old records behind
 *    newer ones. Then the caller (writer, replayer) owns the records: the writer spools them,
 *    the replayer keeps them. A batch re-sent after that may be a duplicate: that is the only
 *    way a Kafka fault still duplicates, and only past KAFKA_DELIVERY_TIMEOUT_MS;
 *  - the writer does not wait that long to make records durable: after KAFKA_WRITE_TIMEOUT_MS it
 *    spools the batch marked in doubt while this send goes on (writer-pool.ts);
 *  - each request is bounded by half of KAFKA_WRITE_TIMEOUT_MS (at least 500 ms), so a broker
 *    that hangs instead of refusing is retried on fresh metadata;
 *  - topic auto-creation off unless KAFKA_AUTO_CREATE_TOPICS.
 */
export interface KafkaClientOptions {
  readonly logger: Logger;
  /** TLS and SASL options (src/kafka/security.ts). */
  readonly security?: KafkaSecurityOptions;
}

/**
 * Retries inside one send (on fresh metadata: a partition whose leader moved is re-sent to the
 * new leader), with the same sequences: no count limit, KAFKA_DELIVERY_TIMEOUT_MS bounds them.
 */
const RETRIES = Number.MAX_SAFE_INTEGER;
const RETRY_DELAY_MS = 250;
/** Retries of the metadata lookup before a batch is sent (a missing topic fails after them). */
const METADATA_RETRIES = 3;

export function createKafkaFactory(config: Config['kafka'], opts: KafkaClientOptions): KafkaClientFactory {
  const log = opts.logger.child({ component: 'kafka' });
  const reporter = new ProblemReporter(log, config);
  const clients = new Set<PlatformaticProducerClient>();
  return {
    securityProblem: () => reporter.problem,
    sentCheck: () => createTailCheck(config, opts.security ?? {}),
    create(name: string) {
      const c = new PlatformaticProducerClient(config, opts.security ?? {}, log.child({ producer: name }), reporter, () => clients.delete(c));
      clients.add(c);
      return c;
    },
    async close() {
      await Promise.all([...clients].map((c) => c.close()));
    },
  };
}

type Message = MessageToProduce<Buffer, Buffer, Buffer, Buffer>;

class PlatformaticProducerClient implements KafkaProducerClient {
  private producer: Producer<Buffer, Buffer, Buffer, Buffer> | undefined;
  private closed = false;

  constructor(
    private readonly config: Config['kafka'],
    private readonly security: KafkaSecurityOptions,
    private readonly log: Logger,
    private readonly reporter: ProblemReporter,
    private readonly onClose: () => void,
  ) {}

  private ready(): Producer<Buffer, Buffer, Buffer, Buffer> {
    if (this.producer) return this.producer;
    const requestTimeoutMs = Math.max(500, Math.floor(this.config.writeTimeoutMs / 2));
    const p = new Producer<Buffer, Buffer, Buffer, Buffer>({
      clientId: this.config.clientId,
      bootstrapBrokers: [...this.config.brokers],
      connectTimeout: this.config.connectTimeoutMs,
      requestTimeout: requestTimeoutMs,
      // The produce request's own timeout: how long the leader waits for the in-sync replicas.
      timeout: requestTimeoutMs,
      retries: RETRIES,
      // A retry after "not the leader" asks for fresh metadata (the library would use its cache for up to 5 s).
      retryDelay: (client: object, operationId: string, _attempt: number, _retries: number, error: unknown) => {
        if (operationId === 'produce' && hasStaleMetadata(error)) (client as { clearMetadata(): void }).clearMetadata();
        return RETRY_DELAY_MS;
      },
      idempotent: true,
      acks: ProduceAcks.ALL,
      maxInflights: 1,
      compression: this.config.compression,
      autocreateTopics: this.config.autoCreateTopics,
      partitioner: compatibilityPartitioner,
      ...this.security,
    });
    // The client reports connection problems as events too; send() and probe() report them once.
    p.on('error', (err: unknown) => this.log.debug({ err: describeError(err) }, 'Kafka client error event'));
    this.producer = p;
    return p;
  }

  async send(records: readonly OutRecord[]): Promise<void> {
    if (this.closed) throw new BridgeError('BRIDGE_ERR_CLOSED', 'producer client closed');
    const p = this.ready();
    try {
      await withTimeout(this.sendByPartition(p, records), this.config.deliveryTimeoutMs, 'produce');
      this.reporter.ok(records);
    } catch (err) {
      this.reporter.failed(err, 'send');
      // The library dropped its producer id and sequences with the failure; on our timeout it is
      // still retrying the batch we are handing back: close it (that cancels the retry) and start afresh.
      await this.recreate();
      throw err;
    }
  }

  /**
   * One library send() per partition, all at once. The library groups a send's messages by the
   * leader they had when it started and, on every retry, sends the whole group to the current
   * leader of the group's first partition: after a leader change that splits the group, the
   * other partitions would get NOT_LEADER_OR_FOLLOWER on every retry until the delivery
   * timeout. With one partition per send(), a retry always goes to that partition's leader.
   * Each partition has one send at a time (the caller's one batch), so its sequences stay in order.
   */
  private async sendByPartition(p: Producer<Buffer, Buffer, Buffer, Buffer>, records: readonly OutRecord[]): Promise<void> {
    // Indexed loops here and below: in a function that runs once per batch, for-of allocates an
    // iterator result per record until the optimizing compiler takes it over.
    const topics = new Set<string>();
    for (let i = 0; i < records.length; i++) topics.add(records[i]!.topic);
    // From the client's cache (refreshed every metadataMaxAge). A few retries only: a topic that
    // does not exist is answered as retriable, and without a bound this would wait out the
    // delivery timeout instead of reporting "Unknown topic" (nothing has been sent yet).
    const metadata = await p.metadata({ topics: [...topics], autocreateTopics: this.config.autoCreateTopics, retries: METADATA_RETRIES });
    // By topic, then by partition (an array index): no key string per record.
    const byTopic = new Map<string, Message[][]>();
    const groups: Message[][] = [];
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const m = toMessage(r);
      const count = metadata.topics.get(r.topic)?.partitionsCount ?? 1;
      const partition = compatibilityPartitioner(m, m.key) % count;
      m.partition = partition;
      let parts = byTopic.get(r.topic);
      if (!parts) byTopic.set(r.topic, (parts = []));
      const g = parts[partition];
      if (g) g.push(m);
      else groups.push((parts[partition] = [m]));
    }
    if (groups.length === 1) {
      await p.send({ messages: groups[0]! });
      return;
    }
    const sends = groups.map((messages) => p.send({ messages }));
    // Every partition's outcome before answering: none is left running when the caller decides.
    const results = await Promise.allSettled(sends);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length === 1) throw failed[0]!.reason;
    if (failed.length > 1) throw new AggregateError(failed.map((f) => f.reason as unknown), `produce failed for ${failed.length} of ${results.length} partitions`);
  }

  async probe(): Promise<void> {
    if (this.closed) throw new BridgeError('BRIDGE_ERR_CLOSED', 'producer client closed');
    const p = this.ready();
    try {
      // A metadata round trip on a fresh connection: Kafka answers, and TLS/SASL are accepted.
      await withTimeout(p.metadata({ topics: [], forceUpdate: true }), this.config.connectTimeoutMs, 'metadata');
      this.reporter.ok();
    } catch (err) {
      this.reporter.failed(err, 'connect');
      await this.recreate();
      throw new BridgeError('BRIDGE_ERR_KAFKA_CONNECT', `Kafka did not answer: ${describeError(err)}`, { cause: err });
    }
  }

  async connect(): Promise<void> {
    if (this.closed) return;
    try {
      // A send() meanwhile joins this request instead of making its own (the client deduplicates it).
      // Bounded: the library retries without limit (RETRIES), and against a Kafka that is down
      // this would never settle; the first write then finishes the set-up or reports the fault.
      await withTimeout(this.ready().initIdempotentProducer({}), this.config.connectTimeoutMs, 'connect');
    } catch (err) {
      this.log.debug({ err: describeError(err) }, 'Kafka producer not set up before its first write; that write tries again');
    }
  }

  async recreate(): Promise<void> {
    const p = this.producer;
    this.producer = undefined;
    if (p) await withTimeout(p.close(true), 2000, 'close').catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.recreate();
    this.onClose();
  }
}

function hasStaleMetadata(err: unknown): boolean {
  for (const e of errorChain(err)) if (e.hasStaleMetadata === true) return true;
  return false;
}

function toMessage(r: OutRecord): Message {
  const headers = new Map<Buffer, Buffer>();
  for (const k in r.headers) {
    const v = r.headers[k]!;
    headers.set(buffers.get(k), UNIQUE_HEADERS.has(k) ? Buffer.from(v) : buffers.get(v));
  }
  return {
    topic: r.topic,
    key: r.key === null ? undefined : buffers.get(r.key),
    value: r.value,
    headers,
    timestamp: BigInt(r.timestampMs),
  };
}

/** Headers whose values differ for every record: not worth caching. */
const UNIQUE_HEADERS = new Set(['mqtt.message_id', 'mqtt.received_at']);

/**
 * UTF-8 buffers of strings that repeat from record to record (header names, MQTT topics, keys,
 * flags), so encoding a batch does not allocate them again for every record: the client copies
 * them into the request and never writes to them. Two generations of `max` entries each: a
 * string used in the current or the last generation stays cached, the rest ages out, so memory
 * is bounded whatever the cardinality of topics.
 */
class BufferCache {
  private current = new Map<string, Buffer>();
  private previous = new Map<string, Buffer>();

  constructor(private readonly max: number) {}

  get(s: string): Buffer {
    let b = this.current.get(s);
    if (b !== undefined) return b;
    b = this.previous.get(s) ?? Buffer.from(s);
    if (this.current.size >= this.max) {
      this.previous = this.current;
      this.current = new Map();
    }
    this.current.set(s, b);
    return b;
  }
}

const buffers = new BufferCache(10_000);

/**
 * Logs a Kafka failure that is a setting (SASL, TLS) once per distinct message, not once per
 * retry, and keeps it for /readyz until a connection succeeds. A connection the broker closes
 * while connecting gets a hint (plain text to a TLS listener, no SASL on a SASL listener).
 */
class ProblemReporter {
  /** A setting Kafka rejects (SASL, TLS). */
  private security: string | undefined;
  /** Topics the client reported missing (auto-creation off), with what to do; until a write to them succeeds. */
  private readonly missing = new Map<string, string>();
  private logged: string | undefined;

  /** What /readyz reports: a setting Kafka rejects, or topics that do not exist. */
  get problem(): string | undefined {
    if (this.security) return this.security;
    if (this.missing.size === 0) return undefined;
    return [...this.missing.values()].join('; ');
  }

  /** Kafka has answered a request at least once. */
  private answered = false;

  constructor(
    private readonly log: Logger,
    private readonly config: Config['kafka'],
  ) {}

  failed(err: unknown, phase: 'connect' | 'send'): void {
    const topic = missingTopic(err);
    if (topic !== undefined) {
      if (!this.missing.has(topic)) {
        const what = topicMissingProblem(topic, this.config.autoCreateTopics);
        this.missing.set(topic, what);
        this.log.error({ topic, kind: 'topic_missing', autoCreateTopics: this.config.autoCreateTopics }, what);
      }
      return;
    }
    const problem = explainKafkaSecurityError(err, this.config);
    if (problem) {
      this.security = problem;
      this.once(problem, 'error', err);
      return;
    }
    const hint = kafkaClosedHint(this.config);
    // A write before any request ever succeeded is a first connection too (the writer's first
    // batch can come before the replayer's probe); once Kafka has answered, a closed connection
    // is a broker going away, not a setting.
    if ((phase === 'connect' || !this.answered) && hint && closedWhileConnecting(err)) {
      this.once(`Kafka closed the connection while connecting (${hint})`, 'warn', err);
    }
  }

  ok(records?: readonly OutRecord[]): void {
    this.answered = true;
    if (this.security) this.log.info({ resolved: this.security }, 'Kafka accepts the connection again');
    this.security = undefined;
    this.logged = undefined;
    if (records && this.missing.size > 0) {
      for (const r of records) {
        if (this.missing.delete(r.topic)) this.log.info({ topic: r.topic }, 'Kafka topic exists now; its spooled records are replayed');
      }
    }
  }

  private once(message: string, level: 'error' | 'warn', err: unknown): void {
    if (this.logged === message) return;
    this.logged = message;
    this.log[level]({ err: describeError(err), brokers: this.config.brokers }, message);
  }
}

/** What to do about a missing topic: said in the log line and in /readyz. */
export function topicMissingProblem(topic: string, autoCreate: boolean): string {
  return autoCreate
    ? `Kafka topic ${topic} does not exist and the broker did not create it (auto.create.topics.enable is off on the broker): create the topic; its records are spooled meanwhile and replayed once it exists`
    : `Kafka topic ${topic} does not exist and KAFKA_AUTO_CREATE_TOPICS is off: create the topic (or set KAFKA_AUTO_CREATE_TOPICS=true); its records are spooled meanwhile and replayed once it exists`;
}

/** The broker hung up during the handshake: the usual sign of plain text on a TLS or SASL listener. */
function closedWhileConnecting(err: unknown): boolean {
  for (const e of errorChain(err)) {
    const m = typeof e.message === 'string' ? e.message : '';
    if (e.code === 'ECONNRESET' || /connection closed|socket hang up|closed the connection/i.test(m)) return true;
  }
  return false;
}
