/** One message as the MQTT broker handed it over. */
export interface InboundMessage {
  /** Receive sequence number, strictly increasing per process; PUBACKs are released in this order. */
  readonly seq: number;
  /**
   * Stable message id (instance id + seq), written as the `mqtt.message_id` header and kept in
   * the spool: every copy of this receipt that reaches Kafka (retries, replays) carries it.
   */
  readonly id: string;
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  /** The broker flagged this as a redelivery (DUP): it may already be in Kafka. */
  readonly dup: boolean;
  /** Wall-clock receive time, ms since epoch. */
  readonly receivedAtMs: number;
  /** MQTT 5 user properties, if any. */
  readonly userProperties?: Readonly<Record<string, string | string[]>> | undefined;
  /**
   * Set when the topic matches a filter removed from the configuration and none of the
   * configured ones: the broker had queued it for the old subscription (see subscriptions.ts).
   * The bridge applies MQTT_REMOVED_FILTER_POLICY to it. The value is that removed filter.
   */
  readonly removedFilter?: string | undefined;
}

/**
 * Why reading from MQTT is paused (reported by /readyz as `intakePaused`).
 * - `in_flight_bound`: MAX_IN_FLIGHT_MESSAGES messages are not durable yet (Kafka slow or failing).
 * - `in_flight_bytes_bound`: MAX_IN_FLIGHT_BYTES reached.
 * - `read_ahead_bound`: READ_AHEAD_MESSAGES are not durable yet while Kafka keeps up (normal at
 *   full speed; lifted once the oldest has waited READ_AHEAD_MAX_AGE_MS).
 * - `mqtt_write_blocked`: the MQTT socket cannot take our PUBACKs (its write buffer is full).
 * - `paused`: pause() was called.
 * - `stopping`: graceful stop; nothing more is read.
 * The bridge reports `spool_blocked` instead of an in-flight bound while the spool holds commits back.
 */
export type IntakePauseReason = 'in_flight_bound' | 'in_flight_bytes_bound' | 'read_ahead_bound' | 'mqtt_write_blocked' | 'paused' | 'stopping';

/** What the MQTT source needs from the rest of the bridge. */
export interface MqttSourceDeps {
  /** Called synchronously for every message, in receive order. */
  onMessage(msg: InboundMessage): void;
  /** Connection state changes, for readiness and metrics. */
  onState?(state: MqttState): void;
}

/**
 * `standby`: only with BRIDGE_GROUP, a replica that holds no MQTT session right now (the group
 * gave them to others); it takes one over when the group assigns it (src/sessions).
 */
export type MqttState = 'connecting' | 'connected' | 'subscribed' | 'disconnected' | 'closed' | 'standby';

/**
 * The MQTT side of the bridge: delivers messages, and sends each QoS 1 PUBACK only once the
 * bridge has settled that message (made it durable, or dead-lettered it durably), in receive order.
 */
export interface MqttSource {
  /** Connects (handlers attached first) and subscribes. Resolves once subscribed. */
  start(): Promise<void>;
  /** The message with this seq is durable; its PUBACK may go out once all earlier ones have. */
  settle(seq: number): void;
  /** Messages received and not yet settled. */
  readonly inFlight: number;
  /** Payload bytes of the in-flight messages. */
  readonly inFlightBytes: number;
  /** QoS 1 messages whose PUBACK is held. */
  readonly unacked: number;
  /**
   * Drain for a scale-down: UNSUBSCRIBEs every filter and does not subscribe again after a
   * reconnect. Messages the broker had already queued for this session still arrive (MQTT 5
   * §3.10.4) and are handled as usual. Resolves on the UNSUBACK; rejects when not connected.
   */
  unsubscribeAll(): Promise<void>;
  readonly state: MqttState;
  /** True while intake is paused because MAX_IN_FLIGHT_MESSAGES was reached (or pause() was called). */
  readonly paused: boolean;
  /** Why intake is paused, while it is; undefined otherwise. */
  readonly pauseReason: IntakePauseReason | undefined;
  /** Stop reading further messages (in-flight ones still settle and are PUBACKed). */
  pause(): void;
  resume(): void;
  /**
   * Graceful stop, first step: no message is handed to onMessage any more. Messages that
   * arrive from now on are left unacknowledged (the broker redelivers them to the next session)
   * and counted; in-flight ones still settle and are PUBACKed by close().
   */
  stopIntake(): void;
  /** Messages that arrived after stopIntake(): never handed over nor PUBACKed, so still in the broker's session. */
  readonly leftForRedelivery: number;
  /**
   * Stops intake, writes every PUBACK that became releasable, confirms the broker has read them
   * (a PINGREQ after them is answered), then disconnects. Idempotent. `deadlineMs` (epoch ms)
   * bounds the whole step; default 5 s from now.
   */
  close(deadlineMs?: number): Promise<void>;
}
