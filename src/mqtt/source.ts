import { randomBytes } from 'node:crypto';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient, type Packet } from 'mqtt';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import type { Config } from '../config/types.js';
import { FaultReporter } from '../observability/fault-reporter.js';
import { AckTracker } from './ack-tracker.js';
import { installKeepaliveSeam } from './keepalive-seam.js';
import { installPubackSeam, type PubackSeam } from './puback-seam.js';
import {
  RemovedFilterMatcher,
  loadRemembered,
  planSubscriptions,
  saveRemembered,
  type KeyValueStore,
  type RememberedSubscriptions,
  type SubscriptionPlan,
} from './subscriptions.js';
import { explainMqttError } from './tls.js';
import type { InboundMessage, IntakePauseReason, MqttSource, MqttSourceDeps, MqttState } from './types.js';

const noLog = (): void => undefined;

/** What the source reports; implemented by src/observability (fakes in unit tests). */
export interface MqttTelemetry {
  mqttState(state: MqttState): void;
  mqttReconnect(): void;
  mqttRedelivered(): void;
}

export interface MqttSourceOptions extends MqttSourceDeps {
  readonly logger: Logger;
  readonly telemetry: MqttTelemetry;
  /**
   * Durable key-value state (the spool's StateStore) where the source remembers the filters it
   * subscribed, so a later run can unsubscribe the ones the configuration dropped. Without it
   * nothing is remembered and stale subscriptions of a persistent session stay.
   */
  readonly state?: KeyValueStore;
  /** Extra MQTT.js options (TLS material, WebSocket options); merged last. */
  readonly clientOptions?: IClientOptions;
  /** For tests: build the client some other way. */
  readonly createClient?: (url: string, opts: IClientOptions) => MqttClient;
  /**
   * False: MQTT.js does not reconnect after the connection is lost (or a connect fails); the
   * owner of the source decides (src/sessions: MQTT 3.1.1 sessions of a group reconnect only once
   * the group has confirmed they are still theirs). Default true.
   */
  readonly reconnect?: boolean;
  /**
   * Called when a connection that was not being closed by close() ends (or a connect attempt
   * fails). `takenOver`: the broker said another connection took the session over (MQTT 5
   * DISCONNECT 0x8E). `upMs`: how long the
   * connection had been accepted (0 = never).
   */
  readonly onConnectionLost?: (e: { readonly takenOver: boolean; readonly reasonCode: number | undefined; readonly upMs: number }) => void;
}

/** MQTT 5 DISCONNECT reason code: another connection with the same client id took the session over. */
export const SESSION_TAKEN_OVER = 0x8e;

/** Longest wait at shutdown for the broker to confirm it read our last PUBACKs. */
const PUBACK_CONFIRM_MAX_MS = 5000;

/**
 * Subscribes with a persistent session and hands every message to `onMessage`.
 *
 * Flow control: MQTT.js processes one PUBLISH at a time and waits for `handleMessage` to call
 * back. We call back at once (so the bridge is not serialized on Kafka latency) unless
 * MAX_IN_FLIGHT_MESSAGES messages are unsettled; then the callback is held, the socket is no
 * longer read, and the broker keeps the rest. PUBACKs are taken out of MQTT.js's path by the
 * seam in puback-seam.ts and sent by the AckTracker once the message is durable, in order.
 * While the callback is held MQTT.js cannot read the broker's PINGRESPs either; the seam in
 * keepalive-seam.ts keeps the connection up for as long as the pause lasts.
 *
 * Graceful stop (close): no message is delivered any more; the PUBACKs released so far are
 * written, a PINGREQ follows them, and DISCONNECT goes out only once its PINGRESP is read —
 * the broker handles a connection's packets in order, so by then it has read every PUBACK.
 */
export function createMqttSource(config: Config['mqtt'], opts: MqttSourceOptions): MqttSource {
  const log = opts.logger.child({ component: 'mqtt' });
  const instanceId = randomBytes(6).toString('hex');
  let generation = 0;
  let state: MqttState = 'disconnected';
  let manualPause = false;
  let heldCallback: (() => void) | undefined;
  /** Last moment intake was held (Date.now()), for the keepalive seam; 0 = never. */
  let lastHeldMs = 0;
  let closing: Promise<void> | undefined;
  let client: MqttClient | undefined;
  let seam: PubackSeam | undefined;
  // Graceful stop: no delivery after intakeStopped; while draining, late messages are answered
  // at once (not held) so MQTT.js reads on to the PINGRESP that confirms our PUBACKs.
  let intakeStopped = false;
  let draining = false;
  let lateMessages = 0;
  let lateQos0 = 0;
  // PINGREQs written and PINGRESPs read on the current connection (the broker answers in order).
  let pingsSent = 0;
  let pingsAnswered = 0;
  let onPingAnswered: (() => void) | undefined;

  const removedMatcher = new RemovedFilterMatcher(config.topics);
  let removedSeen = 0;
  let loggedPlan = false;
  // Set by unsubscribeAll() (drain for a scale-down): a reconnect must not subscribe again.
  let unsubscribedAll = false;

  const tracker = new AckTracker((packetId, gen) => {
    // A PUBACK belongs to the connection its PUBLISH came on. After a reconnect the broker
    // redelivers unacknowledged messages itself, so stale PUBACKs are dropped, never queued.
    if (gen === generation && client?.connected && seam) seam.sendPuback(packetId);
  });

  const setState = (s: MqttState): void => {
    if (state === s) return;
    state = s;
    opts.telemetry.mqttState(s);
    opts.onState?.(s);
  };

  // Reading also stops while the socket cannot take our PUBACKs: they would pile up unbounded.
  const atHardBound = (): boolean =>
    manualPause || tracker.inFlight >= config.maxInFlight || tracker.inFlightBytes >= config.maxInFlightBytes || seam?.blocked === true;
  // The read-ahead bound: while Kafka keeps up (the oldest unsettled message is younger than
  // READ_AHEAD_MAX_AGE_MS), reading stops at READ_AHEAD_MESSAGES. A deeper pipeline buys no
  // throughput then, only records that live through two scavenges and are promoted to the old
  // generation (README "Memory and CPU"). Once the oldest has waited that long, Kafka is slow or
  // silent and MAX_IN_FLIGHT_MESSAGES is the buffer again, as before.
  const readAheadFull = (now: number): boolean => {
    if (config.readAheadMessages <= 0 || tracker.inFlight < config.readAheadMessages) return false;
    const oldest = tracker.oldestAtMs;
    return oldest !== undefined && now - oldest < config.readAheadMaxAgeMs;
  };
  const atCapacity = (now = performance.now()): boolean => atHardBound() || readAheadFull(now);
  // Held by the read-ahead bound alone, nothing may settle (Kafka silent): this timer lifts it once
  // the oldest message is old enough. One at a time; when it fires early (the oldest settled
  // meanwhile) it looks again and re-arms.
  let readAheadTimer: NodeJS.Timeout | undefined;
  const armReadAheadTimer = (now: number): void => {
    if (readAheadTimer !== undefined || heldCallback === undefined || intakeStopped || atHardBound() || !readAheadFull(now)) return;
    readAheadTimer = setTimeout(
      () => {
        readAheadTimer = undefined;
        releaseHeld();
      },
      Math.max(1, tracker.oldestAtMs! + config.readAheadMaxAgeMs - now),
    );
    readAheadTimer.unref();
  };
  const clearReadAheadTimer = (): void => {
    if (readAheadTimer === undefined) return;
    clearTimeout(readAheadTimer);
    readAheadTimer = undefined;
  };

  const keepaliveMs = config.keepaliveS * 1000;
  /** True while we are not reading, or were not a moment ago (PINGRESPs may still sit behind the backlog). */
  const deaf = (): boolean => heldCallback !== undefined || Date.now() - lastHeldMs < keepaliveMs * 1.5;

  const hold = (callback: () => void): void => {
    heldCallback = callback;
    lastHeldMs = Date.now();
  };

  const release = (): void => {
    const cb = heldCallback;
    if (!cb) return;
    heldCallback = undefined;
    clearReadAheadTimer();
    lastHeldMs = Date.now();
    cb();
  };

  const releaseHeld = (): void => {
    if (!heldCallback || intakeStopped) return;
    const now = performance.now();
    if (!atCapacity(now)) release();
    else armReadAheadTimer(now);
  };

  const handleMessage = (packet: IPublishPacket, callback: () => void): void => {
    if (intakeStopped) {
      // Never handed to the bridge, never PUBACKed: the broker redelivers it to the next session.
      // Not so at QoS 0: that one is gone, and said so at close.
      if (packet.qos === 0) lateQos0++;
      else lateMessages++;
      if (draining || !client?.connected) callback();
      else hold(callback);
      return;
    }
    const qos = packet.qos;
    if (qos > 0 && !client?.connected) {
      // Parsed before its connection closed: its PUBACK can no longer be sent, and the broker
      // redelivers it to the next connection. Handing it over too would only make a duplicate.
      callback();
      return;
    }
    // topicAliasMaximum is not sent in CONNECT, so the broker never aliases: packet.topic is whole.
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    // The read-ahead bound's age runs on the monotonic clock: a wall clock stepped back would hold intake.
    const now = performance.now();
    const seq = tracker.push(qos > 0 && packet.messageId !== undefined ? packet.messageId : -1, generation, payload.length + packet.topic.length, now);
    const removedFilter = removedMatcher.active ? removedMatcher.match(packet.topic) : undefined;
    if (removedFilter !== undefined && removedSeen++ === 0) {
      log.info({ filter: removedFilter, policy: config.removedFilterPolicy }, 'messages queued for a removed filter are arriving; MQTT_REMOVED_FILTER_POLICY applies to them');
    }
    const msg: InboundMessage = {
      seq,
      id: `${instanceId}-${seq.toString(36)}`,
      topic: packet.topic,
      payload,
      qos,
      retain: packet.retain,
      dup: packet.dup,
      receivedAtMs: Date.now(),
      userProperties: packet.properties?.userProperties,
      removedFilter,
    };
    if (packet.dup) opts.telemetry.mqttRedelivered();
    try {
      opts.onMessage(msg);
    } catch (err) {
      // onMessage must not throw; if it does, the message stays unsettled (never PUBACKed)
      // and the broker will redeliver it after a reconnect.
      log.error({ err: describeError(err), seq }, 'message handler threw; message left unacknowledged');
    }
    if (atCapacity(now)) {
      hold(callback);
      armReadAheadTimer(now);
    } else callback();
  };

  // --- subscriptions --------------------------------------------------------------------------
  const remember = (r: RememberedSubscriptions): void => {
    if (!opts.state) return;
    try {
      saveRemembered(opts.state, config.clientId, r);
    } catch (err) {
      // Not fatal: subscribing works; only a later run could not tell what to unsubscribe.
      log.warn({ err: describeError(err) }, 'could not record the subscribed filters in the spool database');
    }
  };
  const recall = (): RememberedSubscriptions | undefined => {
    if (!opts.state) return undefined;
    try {
      return loadRemembered(opts.state, config.clientId);
    } catch (err) {
      log.warn({ err: describeError(err) }, 'could not read the remembered filters from the spool database');
      return undefined;
    }
  };
  const desiredQos = (): Record<string, number> => Object.fromEntries(config.topics.map((t) => [t, config.qos]));

  const logPlanOnce = (plan: SubscriptionPlan, remembered: RememberedSubscriptions | undefined, sessionPresent: boolean): void => {
    if (loggedPlan) return;
    loggedPlan = true;
    if (!opts.state) return;
    if (remembered === undefined && sessionPresent) {
      log.info({ clientId: config.clientId }, 'no subscriptions remembered for this client id (first run with this spool): filters an earlier run subscribed, if they differ, stay in the session');
    } else if (plan.unsubscribe.length > 0 || (remembered !== undefined && plan.added.length > 0)) {
      log.info(
        { added: plan.added, removed: plan.unsubscribe, policy: config.removedFilterPolicy },
        'subscriptions changed since the last run: unsubscribing removed filters',
      );
    }
  };

  /**
   * After every CONNACK: subscribe the configured filters and, with a present session,
   * unsubscribe the remembered ones the configuration dropped. Runs before any PUBLISH of the
   * new connection is handled (MQTT.js emits 'packetreceive' for the CONNACK first).
   */
  const planFor = (sessionPresent: boolean): { plan: SubscriptionPlan; remembered: RememberedSubscriptions | undefined } => {
    const remembered = recall();
    const plan = planSubscriptions(remembered, config.topics, sessionPresent);
    removedMatcher.set(plan.removed);
    logPlanOnce(plan, remembered, sessionPresent);
    return { plan, remembered };
  };

  const subscribe = (c: MqttClient, sessionPresent: boolean, plan: SubscriptionPlan, remembered: RememberedSubscriptions | undefined, onSubscribed: () => void): void => {
    // Written before SUBSCRIBE: a crash right after it still leaves a record of what the broker may hold.
    remember({ filters: { ...(sessionPresent ? remembered?.filters : {}), ...desiredQos() }, removed: plan.removed });
    const topics = Object.fromEntries(config.topics.map((t) => [t, { qos: config.qos }]));
    const stream = c.stream;
    const gone = (): boolean => !c.connected || c.stream !== stream || (stream as { destroyed?: boolean }).destroyed === true;
    c.subscribe(topics, (err, granted) => {
      if (err) {
        // A connection that dropped before its SUBACK: subscribing is repeated after the reconnect.
        if (gone()) log.info({ err: describeError(err) }, 'subscribe interrupted by a disconnect; repeated after reconnecting');
        else log.error({ err: describeError(err) }, 'subscribe failed');
        return;
      }
      const refused = (granted ?? []).filter((g) => g.qos === 128 || g.qos > 2);
      if (refused.length > 0) {
        log.error({ topics: refused.map((g) => g.topic) }, 'broker refused subscription (check ACLs and topic filters)');
        return;
      }
      const downgraded = (granted ?? []).filter((g) => g.qos < config.qos);
      if (downgraded.length > 0) log.warn({ topics: downgraded.map((g) => g.topic) }, 'broker granted a lower QoS than asked');
      if (plan.unsubscribe.length === 0) {
        onSubscribed();
        return;
      }
      c.unsubscribe([...plan.unsubscribe], (uerr, packet) => {
        if (uerr && gone()) {
          log.info({ err: describeError(uerr) }, 'unsubscribe interrupted by a disconnect; repeated after reconnecting');
          return;
        }
        const { failed, codes } = unsubackFailures(plan.unsubscribe, uerr, packet);
        if (failed.length > 0) {
          log.error({ err: uerr ? describeError(uerr) : undefined, filters: failed, reasonCodes: codes }, 'unsubscribe failed; the removed filters stay subscribed (retried at the next connect)');
        } else {
          log.info({ filters: plan.unsubscribe }, 'unsubscribed filters no longer in the configuration');
        }
        remember({ filters: { ...Object.fromEntries(failed.map((f) => [f, remembered?.filters[f] ?? config.qos])), ...desiredQos() }, removed: plan.removed });
        onSubscribed();
      });
    });
  };

  const start = async (): Promise<void> => {
    const clientOpts: IClientOptions = {
      clientId: config.clientId,
      clean: false,
      protocolVersion: config.protocolVersion,
      keepalive: config.keepaliveS,
      reconnectPeriod: opts.reconnect === false ? 0 : config.reconnectMs,
      connectTimeout: 10_000,
      resubscribe: false,
      // Without this MQTT.js stops reconnecting after a refused CONNACK (bad password, ACL):
      // the bridge would sit disconnected even after the broker is fixed.
      reconnectOnConnackError: true,
      manualConnect: true,
      // mqtt-packet's default pre-builds 65,536 two-byte Buffers for packet ids (6.5 MB of heap,
      // measured, README "Memory"); without the cache it writes each id into a fresh 2-byte slice.
      writeCache: false,
      // MQTT.js logs through `debug` several times per packet; disabled, each call still costs a
      // namespace check (about 1 µs per message in all). DEBUG=mqttjs* keeps its logging.
      ...(process.env.DEBUG ? {} : { log: noLog }),
      username: config.username,
      password: config.password,
      ...(config.protocolVersion === 5
        ? {
            properties: {
              sessionExpiryInterval: config.sessionExpiryS,
              receiveMaximum: Math.min(config.maxInFlight, 65535),
            },
          }
        : {}),
      ...opts.clientOptions,
    };
    const c = (opts.createClient ?? mqtt.connect)(config.url, clientOpts);
    client = c;
    seam = installPubackSeam(c, () => releaseHeld());
    installKeepaliveSeam(c, deaf);
    // Handlers go on before connect(): a persistent session's queued messages arrive right after CONNACK.
    (c as unknown as { handleMessage: typeof handleMessage }).handleMessage = handleMessage;

    let firstSubscribe: { resolve: () => void; reject: (e: unknown) => void } | undefined;
    const subscribed = new Promise<void>((resolve, reject) => (firstSubscribe = { resolve, reject }));
    let planned: { plan: SubscriptionPlan; remembered: RememberedSubscriptions | undefined; sessionPresent: boolean } | undefined;

    c.on('packetreceive', (p: Packet) => {
      if (p.cmd === 'connack') {
        // A new connection starts here, not at the 'connect' event: MQTT.js emits that only once
        // its outgoing store has been replayed (asynchronously), so nothing guarantees it comes
        // before the PUBLISH packets a persistent session queues right behind the CONNACK.
        // Their PUBACKs belong to this connection.
        generation++;
        pingsSent = 0;
        pingsAnswered = 0;
        const sessionPresent = p.sessionPresent === true;
        planned = { ...planFor(sessionPresent), sessionPresent };
      } else if (p.cmd === 'pingresp') {
        pingsAnswered++;
        onPingAnswered?.();
      }
    });
    c.on('packetsend', (p: Packet) => {
      if (p.cmd === 'pingreq') pingsSent++;
    });

    // One line when the connection fails, one per distinct problem (at most one a minute), a
    // summary a minute while it keeps failing, one line once it has stayed up: never a line
    // per reconnect attempt.
    const fault = new FaultReporter({
      logger: log,
      fault: 'mqtt_connection',
      level: 'warn',
      startMsg: 'MQTT broker unreachable; reconnecting',
      summaryMsg: 'MQTT connection still failing; reconnecting',
      endMsg: 'MQTT connection restored',
    });
    let accepted = false;
    let acceptedAtMs = 0;
    let takenOver = false;
    let disconnectReason: number | undefined;
    c.on('disconnect', (packet: Packet) => {
      // The broker ends the connection (MQTT 5 only): 0x8E means a newer connection with this
      // client id holds the session now. Reconnecting would take it back: never.
      const rc = (packet as { reasonCode?: number }).reasonCode;
      disconnectReason = rc;
      if (rc === SESSION_TAKEN_OVER) {
        // Reported to onConnectionLost; without a session group (reconnect on) MQTT.js reconnects as before.
        takenOver = true;
        log.warn({ clientId: config.clientId, reasonCode: rc }, 'MQTT session taken over by another connection with this client id (DISCONNECT 0x8E)');
      } else {
        log.warn({ clientId: config.clientId, reasonCode: rc }, 'the MQTT broker sent DISCONNECT');
      }
    });
    c.on('connect', (connack) => {
      if (state === 'closed') {
        // A connect that was under way when close() ran: not ours to use.
        c.end(true);
        return;
      }
      accepted = true;
      acceptedAtMs = Date.now();
      fault.ok();
      setState('connected');
      log.info({ sessionPresent: connack.sessionPresent, clientId: config.clientId }, 'connected to MQTT broker');
      if (unsubscribedAll) {
        // Draining for a scale-down: take in what the session still holds, subscribe to nothing.
        unsubscribeAll().catch((err: unknown) => log.error({ err: describeError(err) }, 'drain: unsubscribe after reconnecting failed; the filters stay subscribed'));
        return;
      }
      const p = planned ?? { ...planFor(connack.sessionPresent), sessionPresent: connack.sessionPresent };
      planned = undefined;
      let done = false;
      const onSubscribed = (): void => {
        if (done || state !== 'connected') return;
        done = true;
        setState('subscribed');
        log.info({ topics: config.topics, qos: config.qos }, 'subscribed');
        firstSubscribe?.resolve();
        firstSubscribe = undefined;
      };
      subscribe(c, p.sessionPresent, p.plan, p.remembered, onSubscribed);
      // A present session that already holds exactly these filters (as remembered) delivers at
      // once: ready now, not only at the SUBACK, which waits behind any PUBLISH held while intake
      // is paused.
      const had = p.remembered?.filters ?? {};
      if (p.sessionPresent && p.plan.unsubscribe.length === 0 && p.remembered !== undefined && config.topics.every((t) => had[t] === config.qos)) onSubscribed();
    });
    c.on('reconnect', () => {
      setState('connecting');
      opts.telemetry.mqttReconnect();
    });
    c.on('close', () => {
      const upMs = accepted ? Date.now() - acceptedAtMs : 0;
      accepted = false;
      if (state !== 'closed' && !intakeStopped) {
        try {
          opts.onConnectionLost?.({ takenOver, reasonCode: disconnectReason, upMs });
        } catch (err) {
          log.error({ err: describeError(err) }, 'connection-lost handler threw');
        }
      }
      disconnectReason = undefined;
      // PUBACKs still held for this connection can no longer be sent; the broker redelivers.
      generation++;
      if (state !== 'closed') setState('disconnected');
      onPingAnswered?.();
      release();
    });
    const scheme = config.url.slice(0, config.url.indexOf(':'));
    c.on('error', (err) => {
      const p = explainMqttError(err, { beforeConnack: !accepted, tls: ['mqtts', 'wss', 'ssl'].includes(scheme), websocket: scheme.startsWith('ws') });
      log.debug({ err: describeError(err) }, p.message);
      fault.fail(err, { msg: p.message, problem: p.message, level: p.config ? 'error' : 'warn', fields: { retryInMs: config.reconnectMs } });
    });
    c.on('offline', () => {
      if (state !== 'closed') fault.fail(undefined, { fields: { retryInMs: config.reconnectMs } });
    });

    setState('connecting');
    c.connect();
    await subscribed;
  };

  /**
   * Writes the released PUBACKs, then a PINGREQ, and waits for its PINGRESP: the broker handles a
   * connection's packets in order, so the answer proves it has read every PUBACK before it.
   * MQTT.js must read on for that, so late messages are answered (not held) from here on.
   */
  const confirmPubacks = async (c: MqttClient, deadlineMs: number): Promise<boolean> => {
    draining = true;
    release();
    // Written to the socket now, so ahead of the PINGREQ below. Not awaited: the PINGRESP is the
    // proof we need, and its wait is bounded (a socket that takes nothing would not be).
    void seam?.flush();
    if (!c.connected) return false;
    const target = pingsSent + 1;
    c.sendPing();
    if (pingsSent < target) return false; // not written (connection gone)
    const left = Math.min(deadlineMs - Date.now(), PUBACK_CONFIRM_MAX_MS);
    if (pingsAnswered >= target) return true;
    let timer: NodeJS.Timeout | undefined;
    const ok = await new Promise<boolean>((resolve) => {
      onPingAnswered = () => {
        if (pingsAnswered >= target) resolve(true);
        else if (!c.connected) resolve(false);
      };
      timer = setTimeout(() => resolve(false), Math.max(left, 0));
    });
    clearTimeout(timer);
    onPingAnswered = undefined;
    return ok;
  };

  const close = (deadlineMs = Date.now() + 5000): Promise<void> => {
    closing ??= (async () => {
      intakeStopped = true;
      clearReadAheadTimer();
      manualPause = true;
      const c = client;
      if (c) {
        // A closed source never connects again (a reconnect timer, or a connect still under way).
        c.options.reconnectPeriod = 0;
        setState('closed');
        const unacked = tracker.unacked;
        if (c.connected) {
          const confirmed = await confirmPubacks(c, deadlineMs);
          if (!confirmed) log.warn({ unacked }, 'could not confirm that the broker read the last PUBACKs before disconnecting; it may redeliver some of those messages');
        }
        // Nothing more may be written after DISCONNECT: it would be ignored by the broker.
        seam?.stop();
        // Do not wait on a dead connection: after 3 s the socket is closed (what was not
        // PUBACKed is redelivered).
        let timer: NodeJS.Timeout | undefined;
        const ended = await Promise.race([
          c.endAsync(false).then(
            () => true,
            (err: unknown) => (log.warn({ err: describeError(err) }, 'MQTT disconnect failed'), true),
          ),
          new Promise<false>((r) => (timer = setTimeout(() => r(false), Math.max(Math.min(3000, deadlineMs - Date.now()), 100)))),
        ]);
        clearTimeout(timer);
        if (!ended) {
          log.warn('MQTT disconnect did not finish in time; closing the connection');
          c.end(true);
        }
      }
      if (lateMessages > 0) {
        log.info({ messages: lateMessages }, 'messages that arrived after intake stopped were left unacknowledged; the broker redelivers them to the next session');
      }
      if (lateQos0 > 0) {
        log.warn({ messages: lateQos0 }, 'QoS 0 messages that arrived after intake stopped were not forwarded (QoS 0 is not redelivered)');
      }
      if (removedSeen > 0) log.info({ messages: removedSeen, policy: config.removedFilterPolicy }, 'messages queued for removed filters this run');
      log.info({ unacked: tracker.unacked, inFlight: tracker.inFlight }, 'MQTT source closed');
    })();
    return closing;
  };

  const unsubscribeAll = (): Promise<void> => {
    unsubscribedAll = true;
    const c = client;
    if (!c?.connected) return Promise.reject(new Error('not connected to the MQTT broker'));
    const remembered = recall();
    // Also filters an earlier UNSUBSCRIBE failed to remove: the session may still hold them.
    const filters = [...new Set([...config.topics, ...Object.keys(remembered?.filters ?? {})])];
    return new Promise<void>((resolve, reject) => {
      c.unsubscribe(filters, (err, packet) => {
        const { failed, codes } = unsubackFailures(filters, err, packet);
        // The session holds only what failed now: a later start subscribes the rest again.
        remember({ filters: Object.fromEntries(failed.map((f) => [f, remembered?.filters[f] ?? config.qos])), removed: remembered?.removed ?? [] });
        if (failed.length > 0) {
          reject(err ?? new Error(`the broker refused to unsubscribe ${failed.join(', ')} (reason codes ${codes.join(', ')})`));
          return;
        }
        log.info({ topics: filters }, 'unsubscribed every filter (drain for scale-down)');
        resolve();
      });
    });
  };

  const pauseReason = (): IntakePauseReason | undefined => {
    if (intakeStopped) return 'stopping';
    if (manualPause) return 'paused';
    if (heldCallback === undefined) return undefined;
    if (seam?.blocked) return 'mqtt_write_blocked';
    if (tracker.inFlightBytes >= config.maxInFlightBytes && tracker.inFlight < config.maxInFlight) return 'in_flight_bytes_bound';
    if (tracker.inFlight < config.maxInFlight && readAheadFull(performance.now())) return 'read_ahead_bound';
    return 'in_flight_bound';
  };

  return {
    start,
    unsubscribeAll,
    settle(seq: number) {
      tracker.settle(seq);
      releaseHeld();
    },
    get inFlight() {
      return tracker.inFlight;
    },
    get unacked() {
      return tracker.unacked;
    },
    get inFlightBytes() {
      return tracker.inFlightBytes;
    },
    get state() {
      return state;
    },
    get paused() {
      return heldCallback !== undefined || manualPause || intakeStopped;
    },
    get pauseReason() {
      return pauseReason();
    },
    pause() {
      manualPause = true;
    },
    resume() {
      if (closing || intakeStopped) return;
      manualPause = false;
      releaseHeld();
    },
    stopIntake() {
      intakeStopped = true;
    },
    get leftForRedelivery() {
      return lateMessages;
    },
    close,
  };
}

/**
 * The filters an UNSUBSCRIBE did not remove: all of them when it failed; with MQTT 5 those whose
 * UNSUBACK reason code is a failure (0x80 and up). 0x00 success and 0x11 "no subscription
 * existed" both leave the broker holding none. MQTT.js passes the codes in `packet.granted` and
 * does not turn them into an error.
 */
function unsubackFailures(filters: readonly string[], err: Error | undefined, packet: unknown): { failed: string[]; codes: number[] } {
  const codes = ((packet as { granted?: number[] } | undefined)?.granted ?? []) as number[];
  return { failed: err ? [...filters] : filters.filter((_, i) => (codes[i] ?? 0) >= 0x80), codes };
}
