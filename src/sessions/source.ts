import mqtt, { type IClientOptions } from 'mqtt';
import type { Logger } from 'pino';
import type { Config, SessionsConfig } from '../config/types.js';
import { describeError } from '../errors.js';
import type { KafkaSecurityOptions } from '../kafka/security.js';
import { createMqttSource, type MqttTelemetry } from '../mqtt/source.js';
import type { KeyValueStore } from '../mqtt/subscriptions.js';
import type { InboundMessage, IntakePauseReason, MqttSource, MqttState } from '../mqtt/types.js';
import type { MemberInfo } from './assignor.js';
import { SessionGroup } from './group.js';

/** Why this replica stopped holding a session. */
export type SessionLossReason = 'revoked' | 'taken_over' | 'stopped';

/** What the session group reports; implemented by src/observability (fakes in unit tests). */
export interface SessionTelemetry {
  /** Session `index` is held here (assigned, not taken over) and/or connected and subscribed. */
  sessionState(index: number, held: boolean, connected: boolean): void;
  /** A session was taken over here: assignment to subscribed took `ms`. */
  sessionAcquired(ms: number): void;
  sessionLost(reason: SessionLossReason): void;
  /** 1 while this replica is a member of the group. */
  sessionGroupMember(member: boolean): void;
}

export interface GroupSourceOptions {
  readonly logger: Logger;
  readonly telemetry: MqttTelemetry & SessionTelemetry;
  readonly onMessage: (msg: InboundMessage) => void;
  readonly state?: KeyValueStore;
  readonly clientOptions?: IClientOptions;
  readonly kafka: Config['kafka'];
  readonly kafkaSecurity: KafkaSecurityOptions;
}

/** What /readyz and the logs say about the sessions. */
export interface SessionsStatus {
  readonly group: string;
  readonly instance: string;
  readonly member: boolean;
  readonly generation: number;
  readonly role: 'owner' | 'standby';
  readonly held: number[];
  readonly connected: number[];
  readonly healthy: boolean;
}

export interface GroupSource extends MqttSource {
  status(): SessionsStatus;
}

/** Client id of session `i`: MQTT_CLIENT_ID itself with one session (an existing install keeps its broker session). */
export function sessionClientId(clientId: string, count: number, i: number): string {
  return count === 1 ? clientId : `${clientId}-${i}`;
}

interface Held {
  readonly index: number;
  readonly clientId: string;
  /** The current connection's source (a new one after each confirmed reconnect). */
  source: MqttSource;
  readonly assignedAtMs: number;
  generation: number;
  subscribedOnce: boolean;
  /** Since when the session is not connected (unexpectedly); undefined while up. */
  downSinceMs: number | undefined;
  /** Connection lost: heartbeats answered since (it reconnects at CONFIRMATIONS). */
  suspended: { confirmations: number; readonly takenOver: boolean } | undefined;
}

/**
 * Heartbeats (or a join) the group must answer after a lost connection before it is made again.
 * The second one was sent after the first was answered, so after the loss: had the group given
 * the session to another replica by then, it would have failed (rebalance, unknown member).
 */
const CONFIRMATIONS = 2;

const PROBE_MIN_INTERVAL_MS = 5000;
/** Longest wait, when the group moves a session away from a live replica, for its in-flight messages to become durable. */
const RELEASE_SETTLE_MS = 5000;

/**
 * The MQTT side of a replica in a group (BRIDGE_GROUP): one MQTT source (src/mqtt/source.ts) per
 * session the group assigns to this replica, created when it is assigned and closed when it is
 * not any more; the bridge sees them as one source. Receive sequence numbers are renumbered
 * here (one increasing sequence for the bridge) and mapped back when the bridge settles a
 * message, so each session's PUBACKs still go out in its own receive order.
 *
 * The fence is the broker's session takeover: a CONNECT with the session's client id ends the
 * older connection (MQTT 5: DISCONNECT 0x8E). A replica never reconnects a lost connection on its
 * own (MQTT.js's reconnect is off): it waits until the group has answered two heartbeats since the
 * loss with the session still assigned here. Had the group given the session to another replica,
 * those heartbeats would have failed (a rebalance, or this member expired), so the replica that
 * lost the session stays off it: no ping-pong. A replica cut off from Kafka cannot get them, and so
 * cannot take a session back from its new owner. This one rule serves MQTT 3.1.1 (no reason codes:
 * a takeover looks like any closed connection) and MQTT 5 (a DISCONNECT 0x8E queued behind
 * PUBLISH packets held by flow control may never be read before the socket closes).
 *
 * Health: a session that cannot be kept connected for BRIDGE_SESSION_RELEASE_MS marks this
 * replica unhealthy and it rejoins the group, whose leader then moves its sessions to a healthy
 * replica (src/sessions/assignor.ts). A replica with no session probes the broker (CONNECT with
 * its own clean client id `<MQTT_CLIENT_ID>-probe-<BRIDGE_INSTANCE_ID>`) so the group knows
 * whether it could take one; when no replica can, sessions stay where they are.
 */
export function createGroupSource(mqttConfig: Config['mqtt'], sessions: SessionsConfig, opts: GroupSourceOptions): GroupSource {
  const log = opts.logger.child({ component: 'sessions', group: sessions.group, instance: sessions.instanceId });
  const held = new Map<number, Held>();
  /** Every source not yet closed (held ones and those being released), for the in-flight sums. */
  const live = new Set<MqttSource>();
  const route = new Map<number, { readonly source: MqttSource; readonly seq: number }>();
  let seq = 0;
  let stopped = false;
  let manualPause = false;
  let healthy = true;
  let lastProbeMs = 0;
  let probing = false;
  let closing: Promise<void> | undefined;
  let currentAssignment: readonly number[] = [];

  const self = (): MemberInfo => ({ instance: sessions.instanceId, owned: [...held.keys()].sort((a, b) => a - b), healthy, sessions: sessions.count });
  const group = new SessionGroup(sessions, opts.kafka, opts.kafkaSecurity, opts.logger, self, {
    onAssignment: (generation, list) => onAssignment(generation, list),
    onConfirmed: () => onConfirmed(),
  });

  const aggregate = (): MqttState => {
    if (closing) return 'closed';
    if (held.size === 0) return 'standby';
    // Subscribed only when every held session is; else the state of the first one that is not.
    for (const h of held.values()) if (h.source.state !== 'subscribed') return h.source.state;
    return 'subscribed';
  };
  const report = (): void => {
    opts.telemetry.mqttState(aggregate());
    for (let i = 0; i < sessions.count; i++) {
      const h = held.get(i);
      opts.telemetry.sessionState(i, h !== undefined, h?.source.state === 'subscribed');
    }
    opts.telemetry.sessionGroupMember(group.joined);
  };

  /** A new MQTT source for a held session: a first connect, or a reconnect the group confirmed. */
  const connect = (h: Held): void => {
    const { index, clientId } = h;
    const slog = opts.logger.child({ session: index, clientId });
    const source: MqttSource = createMqttSource(
      { ...mqttConfig, clientId },
      {
        logger: slog,
        telemetry: { mqttState: () => undefined, mqttReconnect: () => opts.telemetry.mqttReconnect(), mqttRedelivered: () => opts.telemetry.mqttRedelivered() },
        onMessage: (msg) => {
          const g = ++seq;
          route.set(g, { source, seq: msg.seq });
          opts.onMessage({ ...msg, seq: g });
        },
        onState: (st) => {
          if (h.source !== source) return;
          if (st === 'subscribed') {
            h.downSinceMs = undefined;
            if (!h.subscribedOnce) {
              h.subscribedOnce = true;
              const ms = Date.now() - h.assignedAtMs;
              opts.telemetry.sessionAcquired(ms);
              log.info({ session: index, clientId, generation: h.generation, takeoverMs: ms }, 'holding MQTT session: connected and subscribed');
            }
          } else if ((st === 'disconnected' || st === 'connecting') && h.downSinceMs === undefined) {
            h.downSinceMs = Date.now();
          }
          report();
        },
        onConnectionLost: (e) => onConnectionLost(h, source, e),
        // Never MQTT.js's own reconnect: the group confirms first (see CONFIRMATIONS).
        reconnect: false,
        ...(opts.state ? { state: opts.state } : {}),
        ...(opts.clientOptions ? { clientOptions: opts.clientOptions } : {}),
      },
    );
    h.source = source;
    live.add(source);
    if (manualPause) source.pause();
    source.start().catch((err: unknown) => log.error({ err: describeError(err), session: index }, 'MQTT session start failed'));
  };

  const acquire = (index: number, generation: number): void => {
    const clientId = sessionClientId(mqttConfig.clientId, sessions.count, index);
    const now = Date.now();
    const h: Held = { index, clientId, source: undefined as unknown as MqttSource, assignedAtMs: now, generation, subscribedOnce: false, downSinceMs: now, suspended: undefined };
    held.set(index, h);
    log.info({ session: index, clientId, generation }, 'the group assigned this MQTT session here: connecting (clean: false, the broker resumes it)');
    connect(h);
    report();
  };

  /** Stops using a session; `graceful`: its in-flight messages settle and are PUBACKed first. */
  const drop = async (index: number, reason: SessionLossReason, graceful: boolean, deadlineMs = Date.now() + RELEASE_SETTLE_MS + 5000): Promise<void> => {
    const h = held.get(index);
    if (!h) return;
    held.delete(index);
    opts.telemetry.sessionLost(reason);
    report();
    const src = h.source;
    src.stopIntake();
    if (graceful) {
      const until = Math.min(Date.now() + RELEASE_SETTLE_MS, deadlineMs - 1000);
      while (src.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    }
    try {
      await src.close(graceful ? deadlineMs : Date.now() + 500);
    } finally {
      live.delete(src);
      report();
    }
  };

  const onAssignment = (generation: number, list: readonly number[]): void => {
    currentAssignment = list;
    const before = [...held.keys()];
    if (stopped) return;
    for (const i of before) {
      if (!list.includes(i)) {
        log.info({ session: i, generation }, 'the group moved this MQTT session to another replica: releasing it (PUBACKs first)');
        void drop(i, 'revoked', true).catch((err: unknown) => log.warn({ err: describeError(err), session: i }, 'releasing the session failed'));
      }
    }
    for (const i of list) {
      const h = held.get(i);
      if (h) {
        h.generation = generation;
        continue;
      }
      acquire(i, generation);
    }
    const now = [...held.keys()].sort((a, b) => a - b);
    log.info({ generation, sessions: now, role: now.length > 0 ? 'owner' : 'standby', released: before.filter((i) => !list.includes(i)) }, 'session group assignment');
    report();
  };

  const onConfirmed = (): void => {
    if (stopped) return;
    for (const h of held.values()) {
      const sus = h.suspended;
      if (!sus || !currentAssignment.includes(h.index)) continue;
      if (++sus.confirmations < CONFIRMATIONS) continue;
      h.suspended = undefined;
      // The group still says the session is ours, since the connection was lost: connect again.
      if (sus.takenOver) {
        log.warn({ session: h.index, clientId: h.clientId, generation: group.generation }, 'the session was taken over, but the group still assigns it here: the other connection is not a member of this group (another process with this client id, or a stale connect). Taking it back');
      } else {
        log.info({ session: h.index, generation: group.generation }, 'the group confirmed the session is still assigned here: reconnecting it');
      }
      connect(h);
    }
  };

  const onConnectionLost = (h: Held, source: MqttSource, e: { takenOver: boolean; reasonCode: number | undefined; upMs: number }): void => {
    if (held.get(h.index) !== h || h.source !== source || h.suspended) return;
    if (h.downSinceMs === undefined) h.downSinceMs = Date.now();
    h.suspended = { confirmations: 0, takenOver: e.takenOver };
    live.delete(source);
    void source.close(Date.now() + 500);
    if (e.takenOver) {
      opts.telemetry.sessionLost('taken_over');
      log.warn({ session: h.index, clientId: h.clientId, generation: group.generation }, 'MQTT session taken over by another connection (DISCONNECT 0x8E): stopped using it; it connects again only if the group confirms it is still assigned here');
    } else if (e.upMs > 0) {
      // MQTT 3.1.1 has no reason code, and a DISCONNECT 0x8E queued behind held messages may never be read: any lost connection may be a takeover.
      log.info({ session: h.index, upMs: e.upMs }, 'MQTT connection lost (maybe taken over): reconnecting only once the group confirms the session is still assigned here');
    }
    report();
  };

  const probe = async (): Promise<boolean> => {
    const c = mqtt.connect(mqttConfig.url, {
      clientId: `${mqttConfig.clientId}-probe-${sessions.instanceId}`,
      clean: true,
      protocolVersion: mqttConfig.protocolVersion,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      username: mqttConfig.username,
      password: mqttConfig.password,
      ...opts.clientOptions,
    });
    try {
      return await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 6000);
        c.once('connect', () => (clearTimeout(t), resolve(true)));
        c.once('error', () => (clearTimeout(t), resolve(false)));
        c.once('close', () => (clearTimeout(t), resolve(false)));
      });
    } finally {
      c.end(true);
    }
  };

  const setHealthy = (ok: boolean, why: string): void => {
    if (healthy === ok) return;
    healthy = ok;
    if (ok) log.info({ why }, 'this replica can reach the MQTT broker again: it may hold sessions');
    else log.warn({ why, releaseMs: sessions.releaseMs }, 'this replica cannot keep its MQTT connection: giving its sessions back to the group (a replica that can reach the broker takes them)');
    group.rejoin(ok ? 'healthy again' : 'unhealthy');
  };

  const healthTimer = setInterval(() => {
    if (stopped) return;
    const now = Date.now();
    if (held.size > 0) {
      const stuck = [...held.values()].find((h) => h.downSinceMs !== undefined && now - h.downSinceMs > sessions.releaseMs);
      if (stuck) setHealthy(false, `session ${stuck.index} not connected for ${now - stuck.downSinceMs!} ms`);
      else if (!healthy && [...held.values()].every((h) => h.source.state === 'subscribed')) setHealthy(true, 'every held session is connected');
      return;
    }
    // No session here: find out whether this replica could take one.
    if (probing || now - lastProbeMs < Math.max(PROBE_MIN_INTERVAL_MS, sessions.releaseMs / 4)) return;
    probing = true;
    lastProbeMs = now;
    probe()
      .then((ok) => setHealthy(ok, ok ? 'probe connected' : 'probe could not connect to the MQTT broker'))
      .catch(() => setHealthy(false, 'probe failed'))
      .finally(() => (probing = false));
  }, 1000);
  healthTimer.unref();

  const sum = (f: (s: MqttSource) => number): number => {
    let n = 0;
    for (const s of live) n += f(s);
    return n;
  };

  const close = (deadlineMs = Date.now() + 5000): Promise<void> => {
    closing ??= (async () => {
      stopped = true;
      clearInterval(healthTimer);
      // PUBACKs confirmed and DISCONNECT first, then LeaveGroup: the next owner's CONNECT comes
      // after ours is gone, so nothing is redelivered twice and nobody is fenced.
      await Promise.all([...held.keys()].map((i) => drop(i, 'stopped', true, deadlineMs).catch(() => undefined)));
      await Promise.all([...live].map((s) => s.close(deadlineMs).catch(() => undefined)));
      await group.close(Math.max(1000, Math.min(5000, deadlineMs - Date.now() + 2000)));
      report();
      log.info('session group: stopped');
    })();
    return closing;
  };

  return {
    async start() {
      log.info({ sessions: sessions.count, topic: sessions.topic, sessionTimeoutMs: sessions.sessionTimeoutMs, heartbeatMs: sessions.heartbeatMs }, 'joining the session group: MQTT sessions are connected only while the group assigns them here');
      report();
      group.start();
    },
    settle(g: number) {
      const r = route.get(g);
      if (!r) return;
      route.delete(g);
      r.source.settle(r.seq);
    },
    // Scale-down: nothing to unsubscribe (the sessions belong to the group). Hand them over now
    // (PUBACKs first, then LeaveGroup); the drain then empties this replica's spool.
    async unsubscribeAll() {
      await close();
    },
    get inFlight() {
      return sum((s) => s.inFlight);
    },
    get inFlightBytes() {
      return sum((s) => s.inFlightBytes);
    },
    get unacked() {
      return sum((s) => s.unacked);
    },
    get state() {
      return aggregate();
    },
    get paused() {
      return [...live].some((s) => s.paused) || manualPause || stopped;
    },
    get pauseReason(): IntakePauseReason | undefined {
      if (stopped) return 'stopping';
      if (manualPause) return 'paused';
      for (const s of live) if (s.pauseReason) return s.pauseReason;
      return undefined;
    },
    pause() {
      manualPause = true;
      for (const s of live) s.pause();
    },
    resume() {
      manualPause = false;
      for (const s of live) s.resume();
    },
    stopIntake() {
      stopped = true;
      for (const s of live) s.stopIntake();
    },
    get leftForRedelivery() {
      return sum((s) => s.leftForRedelivery);
    },
    close,
    status(): SessionsStatus {
      const h = [...held.keys()].sort((a, b) => a - b);
      return {
        group: sessions.group,
        instance: sessions.instanceId,
        member: group.joined,
        generation: group.generation,
        role: h.length > 0 ? 'owner' : 'standby',
        held: h,
        connected: h.filter((i) => held.get(i)?.source.state === 'subscribed'),
        healthy,
      };
    },
  };
}
