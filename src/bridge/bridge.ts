import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { describeError } from '../errors.js';
import { withTimeout } from '../timeout.js';
import { classifyKafkaError, refusedForGood } from '../kafka/errors.js';
import { Replayer } from '../kafka/replayer.js';
import type { KafkaClientFactory, KafkaProducerClient, Pending, WriteErrorKind } from '../kafka/types.js';
import { WriterPool, kafkaWriteFault } from '../kafka/writer-pool.js';
import type { InboundMessage, IntakePauseReason, MqttSource } from '../mqtt/types.js';
import type { HealthState } from '../observability/http.js';
import type { Telemetry } from '../observability/telemetry.js';
import type { Spool, SpoolDeps, SpoolRow, StateStore } from '../spool/types.js';
import type { RegistryStatus } from '../registry/types.js';
import type { SessionsStatus } from '../sessions/source.js';
import { HeldRecords } from './held.js';
import { HEADER, deadLetterRecord, pending, recordBytes, standardHeaders } from './records.js';
import type { DeadLetterReason, Transform, TransformResult } from './types.js';

const TRANSFORM_SLICE = 2000;

/** The parts the bridge wires; each is created by its module's factory (see src/main.ts). */
export interface BridgeParts {
  readonly config: Config;
  readonly logger: Logger;
  readonly telemetry: Telemetry;
  readonly transform: Transform;
  readonly kafka: KafkaClientFactory;
  /** Opens the spool with the callbacks the bridge provides. */
  readonly openSpool: (deps: SpoolDeps) => Spool;
  /**
   * Creates the MQTT source delivering to `onMessage`; `state` is the spool database's durable
   * key-value store, where the source remembers the filters it subscribed.
   */
  readonly createSource: (onMessage: (msg: InboundMessage) => void, deps: { readonly state: StateStore }) => MqttSource;
  /** The schema registry's state, when routes use one (src/registry): for /readyz. */
  readonly registryStatus?: () => RegistryStatus;
  /** With BRIDGE_GROUP: which sessions this replica holds (src/sessions): for /readyz. */
  readonly sessionsStatus?: () => SessionsStatus | undefined;
}

/** Why intake is paused, as /readyz reports it (`intakePaused`); null while reading. */
export type IntakePausedDetail = IntakePauseReason | 'spool_blocked' | null;

/**
 * Ingest → transform → writers, over bounded queues. The only bound needed is the MQTT
 * source's in-flight limit: every message in the transform queue, a writer queue, a produce
 * request or a pending spool commit is unsettled, so all of them together never exceed
 * MAX_IN_FLIGHT_MESSAGES; at that bound the source stops reading and the broker holds the rest.
 */
export class Bridge implements HealthState {
  private readonly log: Logger;
  private readonly source: MqttSource;
  private readonly spool: Spool;
  private readonly pool: WriterPool;
  private readonly replayer: Replayer;
  private readonly replayClient: KafkaProducerClient;
  private queue: InboundMessage[] = [];
  private transformScheduled = false;
  private closing: Promise<void> | undefined;
  private started = false;
  private lastMessageAt = 0;
  /** Records waiting for a schema id (registry unreachable), and the later records of their keys. */
  private readonly held = new HeldRecords((msg, r) => this.deliver(msg, r));

  constructor(private readonly parts: BridgeParts) {
    const { config, logger, telemetry } = parts;
    this.log = logger.child({ component: 'bridge' });
    this.spool = parts.openSpool({
      onCommitted: (entries) => {
        telemetry.spoolCommitted(entries.length);
        this.settle(entries, 'spool');
      },
      onDroppedPending: (entries, reason) => {
        telemetry.droppedRecords(reason, entries.map((e) => ({ topic: e.record.topic, key: e.record.key })));
        this.settle(entries, undefined);
      },
      onDroppedRows: (rows, reason) => telemetry.droppedRecords(reason, rows),
      onWriteError: () => telemetry.spoolWriteError(),
    });
    // Before the source exists, so before the first message: stateful transforms (Sparkplug) keep their state in the spool database.
    parts.transform.attach?.({ state: this.spool.state, telemetry });
    // One fault for "Kafka writes fail", whether a worker or the replayer sees it first.
    const kafkaFault = kafkaWriteFault(logger);
    this.pool = new WriterPool(
      config.kafka,
      {
        logger,
        telemetry,
        kafkaFault,
        createClient: (name) => parts.kafka.create(name),
        spool: this.spool,
        onWritten: (entries) => this.settle(entries, 'kafka'),
        onRejected: (entries, kind) => this.rejected(entries, kind),
        // A batch that was in doubt is resolved: replay what it held back, without waiting for the timer.
        onInDoubtResolved: () => void this.replayer.runOnce(),
      },
      this.spool.stats().rows > 0,
    );
    this.replayClient = parts.kafka.create('replay');
    this.replayer = new Replayer(config, {
      logger,
      telemetry,
      client: this.replayClient,
      spool: this.spool,
      kafkaFault,
      onDrained: (held) => this.pool.switchAllToDirect(held),
      spooling: () => this.pool.spoolingWorkers > 0,
      onRejected: (row, kind) => this.rejectedRow(row, kind),
      sentCheck: parts.kafka.sentCheck?.(),
    });
    this.source = parts.createSource((msg) => this.enqueue(msg), { state: this.spool.state });
    telemetry.attach({
      inFlight: () => this.source.inFlight,
      inFlightBytes: () => this.source.inFlightBytes,
      unacked: () => this.source.unacked,
      intakePaused: () => this.source.paused,
      queueDepth: () => ({ transform: this.queue.length, writer: this.pool.queued }),
      schemaHeld: () => this.held.count,
      spool: () => this.spool.stats(),
      ready: () => this.ready().ok,
    });
  }

  /** Starts the replayer and the MQTT source; resolves once subscribed. */
  async start(): Promise<void> {
    this.started = true;
    // The producers' connection and producer-id round trips overlap with the MQTT connect instead
    // of standing in front of each worker's first batch.
    this.pool.connect();
    this.replayer.start();
    await this.source.start();
  }

  /**
   * Drain for a scale-down (src/drain/drain.ts runs it on SIGTERM when the replica is marked):
   * UNSUBSCRIBE every filter; keep taking in what the broker had queued for this session until
   * nothing has arrived for `quietMs` and everything received is durable and PUBACKed; replay
   * the spool until it is empty; then the ordinary close(). Each phase ends at `deadlineMs`
   * whatever its state, and the close by `closeByMs`; the result says which ones finished.
   */
  async drainForScaleDown(opts: { deadlineMs: number; closeByMs: number; quietMs: number }): Promise<BridgeDrainResult> {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const left = () => opts.deadlineMs - Date.now();
    let unsubscribed = false;
    try {
      await withTimeout(this.source.unsubscribeAll(), Math.max(left(), 0), 'UNSUBSCRIBE');
      unsubscribed = true;
    } catch (err) {
      this.log.error({ err: describeError(err) }, 'drain: unsubscribe failed');
    }
    // Nothing arrived for quietMs since the UNSUBACK: the broker has no more queued for us.
    this.lastMessageAt = Math.max(this.lastMessageAt, Date.now());
    let quiet = false;
    while (left() > 0) {
      if (this.queue.length === 0 && this.source.inFlight === 0 && this.source.unacked === 0 && Date.now() - this.lastMessageAt >= opts.quietMs) {
        quiet = true;
        break;
      }
      await sleep(50);
    }
    this.log.info({ quiet, unsubscribed, received: this.source.inFlight }, 'drain: intake quiet; emptying the spool');
    let spoolEmpty = false;
    while (left() > 0) {
      const st = this.spool.stats();
      if (st.rows === 0 && st.pending === 0 && this.pool.spoolingWorkers === 0 && this.pool.queued === 0) {
        spoolEmpty = true;
        break;
      }
      await this.replayer.runOnce();
      await sleep(100);
    }
    await this.close(opts.closeByMs);
    // Held PUBACKs and messages that arrived after intake stopped: either way still in the session.
    return { unsubscribed, quiet, spoolEmpty, unacked: this.source.unacked + this.source.leftForRedelivery };
  }

  private enqueue(msg: InboundMessage): void {
    this.lastMessageAt = msg.receivedAtMs;
    this.queue.push(msg);
    if (!this.transformScheduled) {
      this.transformScheduled = true;
      setImmediate(() => this.transformLoop());
    }
  }

  /**
   * Maps what is queued, in order, and hands the records to the writers. At most
   * TRANSFORM_SLICE messages per turn of the event loop, so /healthz, /readyz and PUBACK writes
   * are not held up behind a large backlog.
   */
  private transformLoop(): void {
    this.transformScheduled = false;
    let batch: InboundMessage[];
    if (this.queue.length <= TRANSFORM_SLICE) {
      batch = this.queue;
      this.queue = [];
    } else {
      batch = this.queue.splice(0, TRANSFORM_SLICE);
      this.transformScheduled = true;
      setImmediate(() => this.transformLoop());
    }
    const { transform, telemetry, config } = this.parts;
    // Counted once per route and turn, not per message (a labelled inc() costs about as much as the mapping).
    let route: string | undefined;
    let routeCount = 0;
    // Indexed, not for-of: this runs once per slice, and until the optimizing compiler takes it
    // over for-of allocates an iterator result per message.
    for (let i = 0; i < batch.length; i++) {
      const msg = batch[i]!;
      const r = transform.apply(msg);
      if (r.route !== route) {
        if (route !== undefined) telemetry.messageReceived(route, routeCount);
        route = r.route;
        routeCount = 0;
      }
      routeCount++;
      if (msg.removedFilter !== undefined) {
        telemetry.removedFilterMessage(config.mqtt.removedFilterPolicy);
        if (config.mqtt.removedFilterPolicy === 'dead_letter') {
          this.deadLetter(msg, 'unsubscribed', r.route, `queued for the filter '${msg.removedFilter}', which is no longer configured (MQTT_REMOVED_FILTER_POLICY=dead_letter)`);
          continue;
        }
      }
      if (this.held.mustWait(r)) this.held.hold(msg, r);
      else this.deliver(msg, r);
    }
    if (route !== undefined) telemetry.messageReceived(route, routeCount);
  }

  /** A transform result, now in its key's order: skipped, dead-lettered or handed to the writers. */
  private deliver(msg: InboundMessage, r: TransformResult): void {
    const { telemetry, config } = this.parts;
    if (r.kind === 'skip') {
      telemetry.messageSkipped(r.route, r.reason);
      this.source.settle(msg.seq);
      return;
    }
    if (r.kind === 'dead') {
      this.deadLetter(msg, r.reason, r.route, r.detail);
      return;
    }
    if (r.kind === 'deferred') throw new Error('a deferred result reached the writers');
    const headers = standardHeaders(msg);
    for (const k in r.headers) headers[k] = r.headers[k]!;
    const record = { topic: r.topic, key: r.key, value: r.value, headers, timestampMs: msg.receivedAtMs };
    const size = recordBytes(record);
    if (size > config.mapping.maxMessageBytes) {
      this.deadLetter(msg, 'too_large', r.route, `record is ${size} bytes; KAFKA_MAX_MESSAGE_BYTES is ${config.mapping.maxMessageBytes}`);
      return;
    }
    this.pool.submit(pending(msg, record, size));
  }

  private deadLetter(msg: InboundMessage, reason: DeadLetterReason, route: string, detail: string, maxBytes = this.parts.config.mapping.maxMessageBytes): void {
    const { config, telemetry } = this.parts;
    telemetry.deadLettered(reason, { route, mqttTopic: msg.topic, detail, id: msg.id });
    const record = deadLetterRecord(msg, config.mapping.dlqTopic, maxBytes, reason, route, detail);
    this.pool.submit(pending(msg, record));
  }

  /**
   * Kafka refused a record for good although it is within KAFKA_MAX_MESSAGE_BYTES (the broker's
   * limit is lower): dead-letter it, cut to half its size so the dead letter fits where the
   * record did not.
   */
  private rejected(entries: readonly Pending[], kind: WriteErrorKind): void {
    for (const e of entries) {
      if (e.record.topic === this.parts.config.mapping.dlqTopic) {
        // The dead letter itself was refused (the broker's limit is lower still): halve its value
        // until it fits. Only a dead letter refused with no payload left at all is dropped.
        if (e.record.value.length > 0) {
          const value = e.record.value.subarray(0, e.record.value.length >> 1);
          const headers = { ...e.record.headers, [HEADER.dlqTruncated]: e.record.headers[HEADER.dlqTruncated] ?? String(e.record.value.length) };
          const record = { ...e.record, value, headers };
          this.pool.submit({ ...e, record, bytes: recordBytes(record) });
          continue;
        }
        this.log.error({ topic: e.record.topic, messageId: e.id }, 'Kafka refused a dead letter even without its payload; dropped');
        this.parts.telemetry.droppedRecords('rejected_by_kafka', [{ topic: e.record.topic, key: e.record.key }]);
        this.settle([e], undefined);
        continue;
      }
      const msg = inboundFromPending(e);
      this.deadLetter(msg, 'rejected_by_kafka', 'kafka', `Kafka refused the record (${kind})`, rejectedCap(e.bytes, this.parts.config.mapping.maxMessageBytes));
    }
  }

  /**
   * The same for a spooled record refused during replay. The dead letter is written before the
   * replayer deletes the row, so a crash in between cannot lose it.
   */
  private async rejectedRow(row: SpoolRow, kind: WriteErrorKind): Promise<void> {
    const { config, telemetry } = this.parts;
    const e: Pending = { record: row.record, seq: -1, id: row.id, keyHash: row.keyHash, receivedAtMs: row.receivedAtMs, bytes: row.bytes };
    const msg = inboundFromPending(e);
    const detail = `Kafka refused the spooled record (${kind})`;
    if (row.record.topic !== config.mapping.dlqTopic) {
      telemetry.deadLettered('rejected_by_kafka', { route: 'kafka', mqttTopic: msg.topic, detail, id: msg.id });
      const dead = deadLetterRecord(msg, config.mapping.dlqTopic, rejectedCap(row.bytes, config.mapping.maxMessageBytes), 'rejected_by_kafka', 'kafka', detail);
      try {
        await this.replayClient.send([dead]);
        return;
      } catch (err) {
        // Kafka unreachable or slow: the row stays in the spool (the replay run fails) and the
        // dead letter is tried again with it. Only a dead letter Kafka refuses too is dropped.
        if (!refusedForGood(classifyKafkaError(err))) throw err;
        this.log.error({ err: describeError(err), messageId: row.id }, 'the dead letter for a refused spooled record was refused too');
      }
    }
    telemetry.droppedRecords('rejected_by_kafka', [{ topic: row.record.topic, key: row.record.key }]);
  }

  private settle(entries: readonly Pending[], where: 'kafka' | 'spool' | undefined): void {
    const times: number[] = new Array<number>(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.seq >= 0) this.source.settle(e.seq);
      times[i] = e.receivedAtMs;
    }
    if (where) this.parts.telemetry.durable(times, where);
  }

  // --- activity (src/memory/idle-release.ts) ---
  /** When the last MQTT message was received (epoch ms; 0 = none yet). */
  lastMessageAtMs(): number {
    return this.lastMessageAt;
  }

  /** True while anything received is not settled yet, or the spool is being written or replayed. */
  busy(): boolean {
    if (this.queue.length > 0 || this.held.count > 0 || this.source.inFlight > 0 || this.source.unacked > 0 || this.pool.queued > 0) return true;
    return this.spool.stats().pending > 0 || this.replayer.active;
  }

  // --- health ---
  /** Alive while the replay timer keeps firing (the event loop answering this request is the other half). */
  live(): { ok: boolean; detail: Record<string, unknown> } {
    const sinceTickMs = Date.now() - this.replayer.lastTickMs;
    const ok = sinceTickMs < 3 * this.parts.config.spool.replayIntervalMs + 30_000;
    return { ok, detail: { mqtt: this.source.state, spooling: this.pool.spoolingWorkers > 0, replayTimerAgeMs: sinceTickMs } };
  }

  ready(): { ok: boolean; detail: Record<string, unknown> } {
    // A standby (BRIDGE_GROUP, no session held) is ready: it takes a session over at any moment.
    const subscribed = this.source.state === 'subscribed' || this.source.state === 'standby';
    const spoolStats = this.spool.stats();
    const spooling = this.pool.spoolingWorkers > 0;
    const kafkaWritable = !spooling && this.pool.lastWriteOk;
    const spoolAccepting = !spoolStats.blocked;
    // Kafka refusing our credentials or TLS settings is a misconfiguration, not an outage to spool through.
    const kafkaProblem = this.parts.kafka.securityProblem?.();
    // Records waiting for the schema registry: the bridge cannot deliver them (nor PUBACK past them).
    const registry = this.parts.registryStatus?.();
    const registryDetail = registry ? { schemaRegistry: { up: registry.up, waitingSubjects: registry.waitingSubjects, refusedSubjects: registry.refusedSubjects, heldRecords: this.held.count } } : {};
    const ok = this.started && !this.closing && subscribed && (kafkaWritable || spoolAccepting) && kafkaProblem === undefined && this.held.count === 0;
    // Why the spool takes no records (max_bytes, disk_low, write_error), and its file system.
    const disk = spoolStats.disk;
    const spoolDetail = {
      ...(spoolStats.heldBy ? { spoolHeld: spoolStats.heldBy } : {}),
      ...(disk ? { spoolFreeBytes: disk.freeBytes, spoolMinFreeBytes: disk.minFreeBytes } : {}),
    };
    return {
      ok,
      detail: {
        mqtt: this.source.state,
        kafkaWritable,
        spooling,
        spoolAccepting,
        spoolRows: spoolStats.rows,
        ...spoolDetail,
        inFlight: this.source.inFlight,
        intakePaused: this.intakePaused(spoolStats.blocked),
        ...(kafkaProblem ? { kafkaProblem } : {}),
        ...registryDetail,
        ...(this.parts.sessionsStatus ? { sessions: this.parts.sessionsStatus() ?? null } : {}),
      },
    };
  }

  /**
   * Why reading from MQTT is paused. The spool holding commits back (full, disk watermark, disk
   * errors) keeps messages in flight, so an in-flight bound reached then is reported as the
   * spool's doing: that is what the operator has to look at.
   */
  intakePaused(spoolBlocked = this.spool.stats().blocked): IntakePausedDetail {
    const reason = this.source.pauseReason;
    if (reason === undefined) return null;
    if (spoolBlocked && (reason === 'in_flight_bound' || reason === 'in_flight_bytes_bound' || reason === 'read_ahead_bound')) return 'spool_blocked';
    return reason;
  }

  /**
   * Graceful stop, in a fixed order, each step surviving the failure of the one before:
   * stop intake (nothing more is handed over; later arrivals stay unacknowledged) → map what is
   * queued → writers drain (to Kafka, or to the spool at the deadline) → replayer stops →
   * write every PUBACK that became releasable, confirm the broker read them, then disconnect →
   * close the spool. `stopByMs`: when it must be over (by default SHUTDOWN_TIMEOUT_MS from now,
   * when the process-level stop timer fires; a drain for scale-down passes its own).
   */
  close(stopByMs = Date.now() + this.parts.config.shutdownTimeoutMs): Promise<void> {
    this.closing ??= (async () => {
      const deadline = Math.max(stopByMs - 2000, Date.now() + 500);
      // The MQTT step (confirm the last PUBACKs, DISCONNECT) may use time up to just before stopByMs.
      const mqttDeadline = Math.max(stopByMs - 500, deadline);
      const step = async (name: string, fn: () => unknown) => {
        try {
          await fn();
          this.log.info({ step: name }, 'shutdown step done');
        } catch (err) {
          this.log.error({ step: name, err: describeError(err) }, 'shutdown step failed; continuing');
        }
      };
      await step('stop intake', () => this.source.stopIntake());
      await step('map queued messages', () => {
        while (this.queue.length > 0) this.transformLoop();
        // Records still waiting for the schema registry stay unacknowledged: the broker redelivers them.
        this.held.close();
      });
      await step('drain writers', () => this.pool.close(deadline));
      await step('stop replay', () => this.replayer.stop());
      await step('commit spool', () => this.spool.flush());
      await step('disconnect MQTT', () => this.source.close(mqttDeadline));
      await step('close spool', () => this.spool.close());
      await step('close Kafka clients', () => this.parts.kafka.close());
    })();
    return this.closing;
  }
}

/** What drainForScaleDown finished. */
export interface BridgeDrainResult {
  /** The broker confirmed the UNSUBSCRIBE of every filter. */
  readonly unsubscribed: boolean;
  /** Nothing arrived for the quiet time and everything received was PUBACKed (the session holds nothing more). */
  readonly quiet: boolean;
  /** The spool was empty before the close (replayed to Kafka). */
  readonly spoolEmpty: boolean;
  /** Messages left unacknowledged at the close (PUBACKs held, or arrived after intake stopped): they stay in the session for redelivery. */
  readonly unacked: number;
}

/** Size for the dead letter of a record Kafka refused: half the refused record, within the configured maximum. */
function rejectedCap(recordBytes: number, maxMessageBytes: number): number {
  return Math.max(1024, Math.min(maxMessageBytes, Math.floor(recordBytes / 2)));
}

/** Rebuilds enough of the inbound message from a pending record to dead-letter it. */
function inboundFromPending(e: Pending): InboundMessage {
  const h = e.record.headers;
  return {
    seq: e.seq,
    id: e.id,
    topic: h['mqtt.topic'] ?? e.record.topic,
    payload: e.record.value,
    qos: Number(h['mqtt.qos'] ?? 0) as 0 | 1,
    retain: h['mqtt.retain'] === 'true',
    dup: h['mqtt.dup'] === 'true',
    receivedAtMs: e.receivedAtMs,
  };
}
