import { Admin, Consumer, type GroupAssignment, type GroupPartitionsAssignments } from '@platformatic/kafka';
import type { Logger } from 'pino';
import type { Config, SessionsConfig } from '../config/types.js';
import { describeError } from '../errors.js';
import { kafkaConnectionOptions } from '../kafka/connection.js';
import type { KafkaSecurityOptions } from '../kafka/security.js';
import { withTimeout } from '../timeout.js';
import { assignSessions, decodeMemberInfo, encodeMemberInfo, type MemberInfo } from './assignor.js';

/** The group's protocol name: members of another protocol cannot join by mistake. */
export const SESSIONS_PROTOCOL = 'mqtt-kafka-spool-sessions';

/** What the session group reports to its owner (src/sessions/source.ts). */
export interface SessionGroupEvents {
  /** A rebalance finished: these sessions are ours in this generation (all others are not). */
  onAssignment(generation: number, sessions: readonly number[]): void;
  /** A heartbeat was answered: the membership and the assignment of `generation` still hold. */
  onConfirmed(generation: number): void;
}

/**
 * Membership in the consumer group BRIDGE_GROUP over the internal sessions topic (one partition
 * per session), through @platformatic/kafka's classic group protocol: JoinGroup/SyncGroup with
 * our own assignor (the leader runs src/sessions/assignor.ts), heartbeats every
 * BRIDGE_GROUP_HEARTBEAT_MS, membership lost after BRIDGE_GROUP_SESSION_TIMEOUT_MS without one.
 * Nothing is ever fetched from the topic: only its partition count matters.
 *
 * Dynamic membership, not static (groupInstanceId): a static member's LeaveGroup does not
 * start a rebalance (KIP-345 — its sessions would wait out the session timeout on every planned
 * stop), and this client sends LeaveGroup by member id only. BRIDGE_INSTANCE_ID travels in the
 * member's metadata instead.
 */
export class SessionGroup {
  private readonly log: Logger;
  private consumer: Consumer | undefined;
  private closed = false;
  private joining: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Generation of the last assignment we received (0 = none yet). */
  generation = 0;
  /** Whether we are a member right now, as far as we know. */
  joined = false;

  constructor(
    private readonly config: SessionsConfig,
    private readonly kafka: Config['kafka'],
    private readonly security: KafkaSecurityOptions,
    logger: Logger,
    private readonly self: () => MemberInfo,
    private readonly events: SessionGroupEvents,
  ) {
    this.log = logger.child({ component: 'sessions', group: config.group, instance: config.instanceId });
  }

  /** Creates the sessions topic if missing, then joins; retries in the background until closed. */
  start(): void {
    void this.joinLoop();
  }

  private async joinLoop(): Promise<void> {
    let attempt = 0;
    while (!this.closed) {
      try {
        await this.ensureTopic();
        await this.join();
        return;
      } catch (err) {
        if (this.closed) return;
        if (attempt++ % 10 === 0) this.log.warn({ err: describeError(err), retryInMs: this.config.heartbeatMs * 2 }, 'cannot join the session group yet (Kafka unreachable?); owned sessions, if any, stay; retrying');
        await new Promise((r) => (this.retryTimer = setTimeout(r, this.config.heartbeatMs * 2)));
      }
    }
  }

  private async ensureTopic(): Promise<void> {
    const admin = new Admin({ ...kafkaConnectionOptions(this.kafka, this.security, '-sessions-admin'), retries: 1 });
    try {
      const md = await withTimeout(admin.metadata({ topics: [this.config.topic] }).catch(() => undefined), this.kafka.connectTimeoutMs * 2, 'metadata');
      const have = md?.topics.get(this.config.topic)?.partitionsCount ?? 0;
      if (have === 0) {
        try {
          await withTimeout(admin.createTopics({ topics: [this.config.topic], partitions: this.config.count, replicas: -1 }), this.kafka.connectTimeoutMs * 2, 'createTopics');
          this.log.info({ topic: this.config.topic, partitions: this.config.count }, 'created the session group topic (one partition per MQTT session)');
        } catch (err) {
          // Another replica may have created it at the same moment.
          if (!/exist/i.test(describeError(err))) throw err;
        }
      } else if (have < this.config.count) {
        await withTimeout(admin.createPartitions({ topics: [{ name: this.config.topic, count: this.config.count }] }), this.kafka.connectTimeoutMs * 2, 'createPartitions');
        this.log.info({ topic: this.config.topic, from: have, to: this.config.count }, 'added partitions to the session group topic (MQTT_SESSIONS grew)');
      }
    } finally {
      await admin.close().catch(() => undefined);
    }
  }

  private options() {
    const c = this.config;
    return {
      sessionTimeout: c.sessionTimeoutMs,
      // How long the coordinator waits for every member to rejoin in a rebalance: they hear of it
      // at their next heartbeat, so a few heartbeats are plenty; a member that does not come is
      // dropped then, and its sessions are handed out.
      rebalanceTimeout: c.sessionTimeoutMs,
      heartbeatInterval: c.heartbeatMs,
      protocols: [{ name: SESSIONS_PROTOCOL, version: 1 }],
      partitionAssigner: (_leader: string, members: Map<string, { metadata?: Buffer | string | undefined }>): GroupPartitionsAssignments[] => this.assign(members),
      protocolsMetadata: () => encodeMemberInfo(this.self()),
    };
  }

  private consumerFor(): Consumer {
    if (this.consumer) return this.consumer;
    const c = new Consumer({
      ...kafkaConnectionOptions(this.kafka, this.security, `-sessions-${this.config.instanceId}`),
      groupId: this.config.group,
      autocommit: false,
      retries: 2,
      retryDelay: 250,
      ...this.options(),
    });
    c.topics.trackAll(this.config.topic);
    c.on('consumer:group:join', (e: { generationId: number; assignments: GroupAssignment[] | null; isLeader?: boolean }) => {
      this.joined = true;
      this.generation = e.generationId;
      const mine = (e.assignments ?? []).filter((a) => a.topic === this.config.topic).flatMap((a) => a.partitions).filter((p) => p < this.config.count);
      this.events.onAssignment(e.generationId, [...new Set(mine)].sort((a, b) => a - b));
      this.events.onConfirmed(e.generationId);
    });
    c.on('consumer:heartbeat:end', () => this.events.onConfirmed(this.generation));
    c.on('consumer:group:rebalance', () => this.log.debug('the group is rebalancing'));
    // A rejoin that failed for good: the client schedules nothing more. Join again ourselves.
    c.on('error', (err: unknown) => {
      if (this.closed) return;
      this.joined = false;
      this.log.warn({ err: describeError(err) }, 'session group membership failed; joining again');
      void this.joinLoop();
    });
    this.consumer = c;
    return c;
  }

  private async join(): Promise<void> {
    this.joining ??= (async () => {
      try {
        await this.consumerFor().joinGroup(this.options());
      } finally {
        this.joining = undefined;
      }
    })();
    await this.joining;
  }

  /**
   * What we say about ourselves changed (health, a session taken from us): send JoinGroup again so
   * the leader assigns with the new facts. A no-op when not joined (the next join carries them).
   */
  rejoin(why: string): void {
    if (this.closed || !this.consumer || !this.joined) return;
    this.log.info({ why }, 'rejoining the session group');
    this.join().catch(() => {
      if (!this.closed) void this.joinLoop();
    });
  }

  private assign(members: Map<string, { metadata?: Buffer | string | undefined }>): GroupPartitionsAssignments[] {
    const list = [...members].map(([memberId, m]) => ({ memberId, info: decodeMemberInfo(typeof m.metadata === 'string' ? Buffer.from(m.metadata) : m.metadata) }));
    const counts = new Set(list.map((m) => m.info?.sessions).filter((n) => n !== undefined));
    if (counts.size > 1) this.log.error({ counts: [...counts] }, 'members of the session group disagree on MQTT_SESSIONS; the leader assigns its own count');
    const result = assignSessions(list, this.config.count);
    this.log.info({ members: list.map((m) => ({ instance: m.info?.instance ?? m.memberId, healthy: m.info?.healthy ?? true, held: m.info?.owned ?? [], gets: result.get(m.memberId) })) }, 'assigned the MQTT sessions (this replica leads the group)');
    return [...result].map(([memberId, partitions]) => ({ memberId, assignments: new Map([[this.config.topic, { topic: this.config.topic, partitions }]]) }));
  }

  /** LeaveGroup (the others rebalance at once), then close the clients. Bounded. */
  async close(timeoutMs = 5000): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const c = this.consumer;
    if (!c) return;
    try {
      if (this.joined) {
        await withTimeout(c.leaveGroup(false) as unknown as Promise<void>, timeoutMs, 'LeaveGroup');
        this.log.info('left the session group: the others take the sessions over now');
      }
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'could not leave the session group; the others take over after BRIDGE_GROUP_SESSION_TIMEOUT_MS');
    }
    this.joined = false;
    await withTimeout(new Promise<void>((resolve) => c.close(true, () => resolve())), 2000, 'consumer close').catch(() => undefined);
  }
}
