import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { BatchHistogram } from './batch-histogram.js';
import type { Logger } from 'pino';
import type { DeadLetterReason, SkipReason } from '../bridge/types.js';
import { refusedForGood } from '../kafka/errors.js';
import type { WriteErrorKind } from '../kafka/types.js';
import type { MqttTelemetry } from '../mqtt/source.js';
import type { MqttState } from '../mqtt/types.js';
import type { ReplayTelemetry } from '../kafka/replayer.js';
import type { WriterTelemetry } from '../kafka/writer-pool.js';
import type { SeqAnomaly, SparkplugTelemetry } from '../sparkplug/index.js';
import type { MessageType } from '../sparkplug/topic.js';
import type { DropReason, SpoolStats } from '../spool/types.js';
import type { RegistryTelemetry } from '../registry/types.js';
import type { SessionLossReason, SessionTelemetry } from '../sessions/source.js';

/** Values read at scrape time instead of being pushed per message. */
export interface StateProbe {
  inFlight(): number;
  inFlightBytes(): number;
  unacked(): number;
  intakePaused(): boolean;
  queueDepth(): { transform: number; writer: number };
  /** Records held until the schema registry gives their schema id. */
  schemaHeld?(): number;
  spool(): SpoolStats;
  ready(): boolean;
}

const PREFIX = 'mqtt_kafka_';
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * The metrics catalogue and the typed telemetry events. Each event method counts and, where
 * an operator should know, logs with the same labels. Labels only take bounded values: route
 * names, reasons, kinds, paths — never an MQTT topic or a device id. README.md lists every
 * metric; test/unit/metrics-docs.test.ts keeps the two in step.
 */
export class Telemetry implements MqttTelemetry, WriterTelemetry, ReplayTelemetry, SparkplugTelemetry, RegistryTelemetry, SessionTelemetry {
  readonly registry = new Registry();
  private probe: StateProbe | undefined;
  private readonly log: Logger;

  private readonly received = this.counter('messages_received_total', 'MQTT messages received, by route.', ['route']);
  private readonly redelivered = this.counter('mqtt_redelivered_total', 'MQTT messages the broker flagged as redelivered (DUP): possibly already in Kafka.');
  private readonly mqttReconnects = this.counter('mqtt_reconnects_total', 'MQTT reconnect attempts.');
  private readonly mqttConnected = this.gauge('mqtt_connected', '1 while connected and subscribed to the MQTT broker.');
  private readonly recordsWritten = this.counter('records_written_total', 'Records acknowledged by Kafka, by path (direct or replay).', ['path']);
  private readonly bytesWritten = this.counter('bytes_written_total', 'Record bytes (value + key + headers) acknowledged by Kafka, by path.', ['path']);
  private readonly writeErrors = this.counter('write_errors_total', 'Failed produce requests, by kind and path.', ['kind', 'path']);
  private readonly kafkaUp = this.gauge('kafka_up', '1 while the last produce request (direct or replay) succeeded.');
  private readonly produceLatency = this.histogram('produce_latency_seconds', 'Duration of successful produce requests, by path.', ['path']);
  private readonly e2eLatency = new BatchHistogram({
    name: PREFIX + 'end_to_end_latency_seconds',
    help: 'MQTT receive to durable (Kafka ack or spool commit), by where it became durable.',
    labelNames: ['durable'],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly deadLetters = this.counter('dead_letter_total', 'Messages sent to the dead-letter topic, by reason.', ['reason']);
  private readonly dropped = this.counter('dropped_total', 'Records dropped by an explicit policy, by reason.', ['reason']);
  private readonly removedFilter = this.counter('mqtt_removed_filter_messages_total', 'Messages the broker had queued for a filter removed from the configuration, by the MQTT_REMOVED_FILTER_POLICY applied (forward, dead_letter).', ['policy']);
  private readonly skipped = this.counter('skipped_total', 'Messages skipped on purpose (route filter, unmatched with skip), by route and reason.', ['route', 'reason']);
  private readonly spooled = this.counter('spool_records_spooled_total', 'Records committed to the spool.');
  private readonly replayed = this.counter('spool_records_replayed_total', 'Spooled records acknowledged by Kafka during replay.');
  private readonly replayRuns = this.counter('spool_replay_runs_total', 'Replay runs, by result (drained, partial, failed, idle).', ['result']);
  private readonly spoolWriteErrors = this.counter('spool_write_errors_total', 'Spool transactions that failed and were retried (disk full, I/O).');
  private readonly spoolDeleteErrors = this.counter('spool_delete_errors_total', 'Deletes of replayed rows that failed (disk full, I/O); replay pauses until they succeed and does not resend those rows.');
  private readonly writePath = this.gauge('write_path_workers', 'Writer workers on each path (direct or spooling).', ['path']);
  private readonly spMessages = this.counter('sparkplug_messages_total', 'Sparkplug B messages decoded, by group and message type.', ['group', 'type']);
  private readonly spUnresolved = this.counter('sparkplug_unresolved_total', 'Sparkplug messages delivered with metric aliases no BIRTH names (header sparkplug.unresolved), by group.', ['group']);
  private readonly spSeq = this.counter('sparkplug_seq_errors_total', 'Sparkplug seq gaps, out-of-order and invalid seqs (header sparkplug.seq_error), by group and kind.', ['group', 'kind']);
  private readonly spBdSeq = this.counter('sparkplug_bdseq_mismatches_total', "NDEATHs whose bdSeq is not their NBIRTH's (a stale Will; the node's BIRTH is kept), by group.", ['group']);
  private readonly spState = this.counter('sparkplug_state_errors_total', 'Failed reads and writes of Sparkplug BIRTH state in the spool database, by operation.', ['op']);
  private readonly registryRequests = this.counter('schema_registry_requests_total', 'Schema id resolutions asked of the schema registry (register or look up, then fetch the schema), by result (ok, refused, unreachable).', ['result']);
  private readonly registryUpGauge = this.gauge('schema_registry_up', '1 unless the last attempt to reach the schema registry failed (set only when routes use a registry format).');
  // --- Session group (BRIDGE_GROUP) ---
  private readonly sessionHeld = this.gauge('session_held', 'With BRIDGE_GROUP: 1 for each MQTT session (label session, 0..MQTT_SESSIONS-1) the group assigns to this replica; every replica exports every session, 0 where it does not hold it.', ['session']);
  private readonly sessionConnected = this.gauge('session_connected', 'With BRIDGE_GROUP: 1 while this replica holds the session and it is connected and subscribed. The max over the replicas is 0 for a session nobody serves (the chart alerts after a minute).', ['session']);
  private readonly sessionsOwned = this.gauge('sessions_owned', 'With BRIDGE_GROUP: MQTT sessions this replica holds.');
  private readonly sessionRole = this.gauge('session_role', 'With BRIDGE_GROUP: 1 for the role of this replica: owner (holds at least one session) or standby.', ['role']);
  private readonly sessionMember = this.gauge('session_group_member', 'With BRIDGE_GROUP: 1 while this replica is a member of the group (joined through the Kafka group coordinator).');
  private readonly sessionTakeovers = this.counter('session_takeovers_total', 'With BRIDGE_GROUP: MQTT sessions taken over by this replica (connected and subscribed after the group assigned them here).');
  private readonly sessionTakeoverSeconds = this.histogram('session_takeover_seconds', 'With BRIDGE_GROUP: from the assignment of a session to this replica to its connection being subscribed.');
  private readonly sessionLosses = this.counter('session_losses_total', 'With BRIDGE_GROUP: sessions this replica stopped holding, by reason: revoked (the group moved it; released with its PUBACKs), taken_over (another connection took it, MQTT 5 DISCONNECT 0x8E), stopped (shutdown).', ['reason']);
  private readonly idleReleases = this.counter('idle_memory_releases_total', 'Memory-reducing garbage collections run while the bridge was quiet (IDLE_MEMORY_RELEASE_MS).');
  private readonly idleReleaseSeconds = this.counter('idle_memory_release_seconds_total', 'Time spent in those collections (the event loop is paused meanwhile).');
  /** Sparkplug group ids come from MQTT topics: only the first 100 become label values. */
  private readonly groups = new BoundedLabel(100);

  constructor(logger: Logger, opts: { defaultMetrics?: boolean } = {}) {
    this.log = logger.child({ component: 'telemetry' });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const telemetry = this;
    const g = (name: string, help: string, read: (p: StateProbe) => number) =>
      new Gauge({
        name: PREFIX + name,
        help,
        registers: [this.registry],
        collect() {
          const probe = telemetry.probe;
          if (probe) this.set(read(probe));
        },
      });
    g('in_flight_messages', 'Messages received and not yet durable (bounded by MAX_IN_FLIGHT_MESSAGES).', (p) => p.inFlight());
    g('in_flight_bytes', 'Payload bytes of the in-flight messages (bounded by MAX_IN_FLIGHT_BYTES).', (p) => p.inFlightBytes());
    g('unacked_messages', 'QoS 1 messages whose PUBACK is held until they are durable.', (p) => p.unacked());
    g('intake_paused', '1 while reading from MQTT is paused (in-flight bound reached, spool blocked, or shutdown).', (p) => (p.intakePaused() ? 1 : 0));
    g('spool_rows', 'Records held in the spool.', (p) => p.spool().rows);
    g('spool_bytes', 'Record bytes held in the spool (what SPOOL_MAX_BYTES bounds).', (p) => p.spool().bytes);
    g('spool_file_bytes', 'Size of the spool database file and its WAL.', (p) => p.spool().fileBytes);
    g('spool_pending_records', 'Records waiting for a spool commit.', (p) => p.spool().pending);
    g('spool_blocked', '1 while the spool holds commits back (full under the block policy, below the free-space watermark, or disk errors).', (p) => (p.spool().blocked ? 1 : 0));
    g('spool_fs_free_bytes', "Bytes free on the spool's file system (for an unprivileged user).", (p) => p.spool().disk?.freeBytes ?? 0);
    g('spool_fs_size_bytes', "Size of the spool's file system.", (p) => p.spool().disk?.sizeBytes ?? 0);
    g('spool_fs_min_free_bytes', 'The free-space watermark (SPOOL_MIN_FREE_BYTES, or SPOOL_MIN_FREE_PERCENT of the file system if larger): below it the spool takes no new records.', (p) => p.spool().disk?.minFreeBytes ?? 0);
    g('spool_reserve_bytes', 'Size of the reserve file beside the spool (0 while it is released to let a full file system drain).', (p) => p.spool().disk?.reserveBytes ?? 0);
    g('spool_oldest_age_seconds', 'Age of the oldest spooled record (0 when empty).', (p) => {
      const o = p.spool().oldestReceivedAtMs;
      return o === undefined ? 0 : Math.max(0, (Date.now() - o) / 1000);
    });
    g('ready', '1 while /readyz answers ready.', (p) => (p.ready() ? 1 : 0));
    g('schema_held_records', 'Records held (not acknowledged) until the schema registry can give their schema id, with the later records of their keys.', (p) => p.schemaHeld?.() ?? 0);
    new Gauge({
      name: PREFIX + 'spool_held',
      help: 'Why the spool holds new records back (1 for the reason that applies): max_bytes (SPOOL_MAX_BYTES, policy block), disk_low (free-space watermark), write_error (commits failing).',
      labelNames: ['reason'],
      registers: [this.registry],
      collect() {
        const probe = telemetry.probe;
        if (!probe) return;
        const held = probe.spool().heldBy;
        for (const reason of ['max_bytes', 'disk_low', 'write_error'] as const) this.set({ reason }, held === reason ? 1 : 0);
      },
    });
    new Gauge({
      name: PREFIX + 'queue_depth',
      help: 'Records waiting in the bridge queues, by queue (transform, writer).',
      labelNames: ['queue'],
      registers: [this.registry],
      collect() {
        const probe = telemetry.probe;
        if (!probe) return;
        const d = probe.queueDepth();
        this.set({ queue: 'transform' }, d.transform);
        this.set({ queue: 'writer' }, d.writer);
      },
    });
  }

  /** Connects the scrape-time gauges to the running bridge. */
  attach(probe: StateProbe): void {
    this.probe = probe;
  }

  // --- MQTT ---
  mqttState(state: MqttState): void {
    this.mqttConnected.set(state === 'subscribed' ? 1 : 0);
  }
  mqttReconnect(): void {
    this.mqttReconnects.inc();
  }
  mqttRedelivered(): void {
    this.redelivered.inc();
  }

  // --- bridge ---
  messageReceived(route: string, count = 1): void {
    this.received.inc({ route }, count);
  }
  messageSkipped(route: string, reason: SkipReason): void {
    this.skipped.inc({ route, reason });
  }
  /**
   * One log line and one count per dead-lettered message. Except `unsubscribed`: a removed
   * filter's backlog can be large, and the MQTT source logs it once (first arrival, and a count
   * at stop) instead.
   */
  deadLettered(reason: DeadLetterReason, ctx: { route: string; mqttTopic: string; detail: string; id: string }): void {
    this.deadLetters.inc({ reason });
    if (reason === 'unsubscribed') return;
    this.log.warn({ reason, route: ctx.route, mqttTopic: truncate(ctx.mqttTopic), detail: ctx.detail, messageId: ctx.id }, 'message dead-lettered');
  }
  /** A message queued for a removed filter arrived; counted here, logged once by the MQTT source. */
  removedFilterMessage(policy: 'forward' | 'dead_letter'): void {
    this.removedFilter.inc({ policy });
  }
  durable(receivedAtMs: number[], where: 'kafka' | 'spool'): void {
    const now = Date.now();
    this.e2eLatency.observeEach({ durable: where }, receivedAtMs, (t) => (now - t) / 1000);
  }

  // --- writers ---
  written(records: number, bytes: number, latencyMs: number, path: 'direct' | 'replay'): void {
    this.recordsWritten.inc({ path }, records);
    this.bytesWritten.inc({ path }, bytes);
    this.produceLatency.observe({ path }, latencyMs / 1000);
    if (path === 'replay') this.replayed.inc(records);
    this.kafkaUp.set(1);
  }
  writeError(kind: WriteErrorKind, path: 'direct' | 'replay'): void {
    this.writeErrors.inc({ kind, path });
    // Kafka refusing a record for good (too large, invalid) is an answer: Kafka is up.
    if (!refusedForGood(kind)) this.kafkaUp.set(0);
  }
  workersSpooling(count: number, total: number): void {
    this.writePath.set({ path: 'spooling' }, count);
    this.writePath.set({ path: 'direct' }, total - count);
  }
  replayRun(result: 'drained' | 'failed' | 'partial' | 'idle'): void {
    this.replayRuns.inc({ result });
    if (result === 'failed') this.kafkaUp.set(0);
  }

  // --- spool ---
  spoolCommitted(records: number): void {
    this.spooled.inc(records);
  }
  /** Counts a failed spool commit; the spool logs the fault (start, summary, end), not each failure. */
  spoolWriteError(): void {
    this.spoolWriteErrors.inc();
  }
  spoolDeleteError(): void {
    this.spoolDeleteErrors.inc();
  }
  /** Counts and logs dropped records with their topic and key (up to 20 per line; the rest at debug). */
  droppedRecords(reason: DropReason, items: readonly { topic: string; key: string | null }[]): void {
    if (items.length === 0) return;
    this.dropped.inc({ reason }, items.length);
    this.log.error(
      { reason, count: items.length, records: items.slice(0, 20).map((i) => ({ topic: i.topic, key: i.key === null ? null : truncate(i.key) })) },
      'records dropped',
    );
    if (items.length > 20) this.log.debug({ reason, records: items.slice(20) }, 'records dropped (rest)');
  }

  // --- schema registry ---
  registryRequest(result: 'ok' | 'refused' | 'unreachable'): void {
    this.registryRequests.inc({ result });
  }
  registryUp(up: boolean): void {
    this.registryUpGauge.set(up ? 1 : 0);
  }

  // --- Sparkplug ---
  sparkplugMessage(group: string, type: MessageType): void {
    this.spMessages.inc({ group: this.groups.of(group), type });
  }
  sparkplugUnresolved(group: string, ctx: Parameters<SparkplugTelemetry['sparkplugUnresolved']>[1]): void {
    this.spUnresolved.inc({ group: this.groups.of(group) });
    if (ctx.first) {
      this.log.warn(
        { group, edgeNode: ctx.edgeNode, device: ctx.device, type: ctx.type, metrics: ctx.metrics, aliases: ctx.aliases },
        'Sparkplug metric aliases without a BIRTH: delivered with the alias only (header sparkplug.unresolved); not logged again for this node/device until its next BIRTH',
      );
    }
  }
  sparkplugSeq(group: string, kind: SeqAnomaly, ctx: Parameters<SparkplugTelemetry['sparkplugSeq']>[2]): void {
    this.spSeq.inc({ group: this.groups.of(group), kind });
    if (ctx.first) {
      this.log.warn(
        { group, edgeNode: ctx.edgeNode, type: ctx.type, kind, expected: ctx.expected, got: ctx.got },
        'Sparkplug seq error (header sparkplug.seq_error); further ones of this edge node are counted, not logged, until its next NBIRTH',
      );
    }
  }
  sparkplugBdSeqMismatch(group: string, ctx: Parameters<SparkplugTelemetry['sparkplugBdSeqMismatch']>[1]): void {
    this.spBdSeq.inc({ group: this.groups.of(group) });
    this.log.warn({ group, edgeNode: ctx.edgeNode, birthBdSeq: ctx.birth, deathBdSeq: ctx.death }, "NDEATH bdSeq does not match the NBIRTH's: a stale Will; the node's BIRTH is kept");
  }
  sparkplugStateError(op: string, err: string): void {
    this.spState.inc({ op });
    this.log.error({ op, err }, 'Sparkplug BIRTH state could not be read or written in the spool database; names still resolve in this process, after a restart they may not (check free disk space)');
  }

  // --- Session group ---
  sessionState(index: number, held: boolean, connected: boolean): void {
    const session = String(index);
    this.sessionHeld.set({ session }, held ? 1 : 0);
    this.sessionConnected.set({ session }, connected ? 1 : 0);
    if (held) this.ownedCount.add(index);
    else this.ownedCount.delete(index);
    this.sessionsOwned.set(this.ownedCount.size);
    this.sessionRole.set({ role: 'owner' }, this.ownedCount.size > 0 ? 1 : 0);
    this.sessionRole.set({ role: 'standby' }, this.ownedCount.size > 0 ? 0 : 1);
  }
  private readonly ownedCount = new Set<number>();
  sessionAcquired(ms: number): void {
    this.sessionTakeovers.inc();
    this.sessionTakeoverSeconds.observe(ms / 1000);
  }
  sessionLost(reason: SessionLossReason): void {
    this.sessionLosses.inc({ reason });
  }
  sessionGroupMember(member: boolean): void {
    this.sessionMember.set(member ? 1 : 0);
  }

  // --- Memory ---
  idleMemoryReleased(ms: number): void {
    this.idleReleases.inc();
    this.idleReleaseSeconds.inc(ms / 1000);
  }

  async metrics(): Promise<string> {
    return this.registry.metrics();
  }

  private counter(name: string, help: string, labelNames: string[] = []): Counter {
    return new Counter({ name: PREFIX + name, help, labelNames, registers: [this.registry] });
  }
  private gauge(name: string, help: string, labelNames: string[] = []): Gauge {
    return new Gauge({ name: PREFIX + name, help, labelNames, registers: [this.registry] });
  }
  private histogram(name: string, help: string, labelNames: string[] = []): Histogram {
    return new Histogram({ name: PREFIX + name, help, labelNames, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  }
}

/** Label values from the network, bounded: the first `max` distinct short values pass, the rest are "_other". */
class BoundedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}
  of(v: string): string {
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max || v.length > 64 || v === '_other') return '_other';
    this.seen.add(v);
    return v;
  }
}

function truncate(s: string, max = 256): string {
  return s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s;
}
