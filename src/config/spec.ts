import { z } from 'zod';

/**
 * Every environment variable the bridge reads, with its default and meaning. This table is
 * the single source of truth: `loadConfig` validates against it, `.env.example` and the
 * README configuration table are checked against it by unit tests.
 */
export interface VarSpec {
  /** Environment variable name. */
  readonly env: string;
  /** Default as the user would write it in .env; undefined = no default. */
  readonly default?: string;
  /** One line for .env.example and the README. */
  readonly doc: string;
  /** Validates and converts the raw string. */
  readonly schema: z.ZodType;
  /** May be given as `<env>_FILE` (a path whose content is the value); never logged. */
  readonly secret?: boolean;
  /** Grouping for the README table and .env.example. */
  readonly group: 'mqtt' | 'kafka' | 'mapping' | 'registry' | 'spool' | 'runtime';
}

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, 'must be an integer')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const bool = z
  .string()
  .trim()
  .toLowerCase()
  .refine((v) => ['true', 'false', '1', '0', 'yes', 'no'].includes(v), 'must be true or false')
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const nonEmpty = z.string().trim().min(1, 'must not be empty');
const str = z.string();

const list = z
  .string()
  .transform((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0),
  );

const oneOf = <T extends string>(values: readonly [T, ...T[]]) =>
  z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(values, { error: `must be one of ${values.join(', ')}` }));

export const VARS: readonly VarSpec[] = [
  // --- MQTT ---
  { group: 'mqtt', env: 'MQTT_BROKER', doc: 'MQTT broker host name, or a URL (mqtt://, mqtts://, ws://, wss://). Required.', schema: nonEmpty },
  { group: 'mqtt', env: 'MQTT_PORT', default: '1883', doc: 'MQTT broker port (ignored when MQTT_BROKER is a URL with a port).', schema: int(1, 65535) },
  { group: 'mqtt', env: 'MQTT_TOPIC', doc: 'Topic filter(s) to subscribe to; a comma-separated list means several subscriptions. Required unless ROUTES_FILE is set (then derived from its rules).', schema: list.pipe(z.array(z.string()).min(1, 'must name at least one topic filter')) },
  { group: 'mqtt', env: 'MQTT_SHARED_GROUP', doc: 'Shared-subscription group: every topic filter (from MQTT_TOPIC or the routes) is subscribed as $share/<group>/<filter>, so the replicas that use the same group split the messages instead of each receiving all of them. Unset: plain subscriptions. The Helm chart sets it when replicas > 1.', schema: nonEmpty },
  { group: 'mqtt', env: 'MQTT_CLIENT_ID', default: '%h', doc: 'MQTT client id; %h expands to the host name. Must be stable across restarts: it names the persistent session.', schema: nonEmpty },
  { group: 'mqtt', env: 'MQTT_QOS', default: '1', doc: 'Subscription QoS: 1 (at-least-once, default) or 0 (best effort).', schema: int(0, 1) },
  { group: 'mqtt', env: 'MQTT_VERSION', default: '5', doc: 'MQTT protocol version: 5 or 4 (= 3.1.1).', schema: int(4, 5) },
  { group: 'mqtt', env: 'MQTT_SESSION_EXPIRY_S', default: '86400', doc: 'MQTT 5 session expiry: how long the broker keeps the session (and queues messages) while the bridge is away.', schema: int(1, 4294967295) },
  { group: 'mqtt', env: 'MQTT_REMOVED_FILTER_POLICY', default: 'dead_letter', doc: "Filters subscribed in an earlier run and no longer configured are unsubscribed at start; messages the broker had already queued for them are dead_letter (to DLQ_TOPIC, reason 'unsubscribed') or forward (written like any other message).", schema: oneOf(['forward', 'dead_letter']) },
  { group: 'mqtt', env: 'MQTT_KEEPALIVE_S', default: '60', doc: 'MQTT keepalive interval in seconds.', schema: int(1, 65535) },
  { group: 'mqtt', env: 'MQTT_RECONNECT_MS', default: '1000', doc: 'Delay between MQTT reconnect attempts.', schema: int(100) },
  { group: 'mqtt', env: 'MQTT_USERNAME', doc: 'MQTT user name.', schema: str },
  { group: 'mqtt', env: 'MQTT_PASSWORD', doc: 'MQTT password (or MQTT_PASSWORD_FILE).', schema: str, secret: true },
  { group: 'mqtt', env: 'ROOT_CA', doc: "CA certificate file (PEM) the MQTT broker's certificate must chain to (replaces the system CAs). Turns TLS on: a bare MQTT_BROKER host becomes mqtts://.", schema: nonEmpty },
  { group: 'mqtt', env: 'MQTT_CLIENT_CERT', doc: 'Client certificate file (PEM) for MQTT TLS client authentication; needs MQTT_CLIENT_KEY. Turns TLS on like ROOT_CA.', schema: nonEmpty },
  { group: 'mqtt', env: 'MQTT_CLIENT_KEY', doc: 'Private key file (PEM) of MQTT_CLIENT_CERT.', schema: nonEmpty },
  { group: 'mqtt', env: 'MQTT_KEY_PASSPHRASE', doc: 'Passphrase of an encrypted MQTT_CLIENT_KEY (or MQTT_KEY_PASSPHRASE_FILE).', schema: str, secret: true },
  { group: 'mqtt', env: 'MQTT_TLS_INSECURE', default: 'false', doc: "Do not verify the MQTT broker's certificate and host name (tests only; logged as a warning at start).", schema: bool },
  { group: 'mqtt', env: 'MAX_IN_FLIGHT_BYTES', default: '67108864', doc: 'Payload bytes of the messages counted by MAX_IN_FLIGHT_MESSAGES; reading also stops at this bound, so large payloads cannot exhaust memory.', schema: int(65536) },
  { group: 'mqtt', env: 'MAX_IN_FLIGHT_MESSAGES', default: '10000', doc: 'Messages received but not yet durable (in Kafka or the spool). At this bound the bridge stops reading from MQTT; also sent to MQTT 5 brokers as Receive Maximum (capped at 65535).', schema: int(1, 1_000_000) },
  { group: 'mqtt', env: 'READ_AHEAD_MESSAGES', default: '2000', doc: 'While Kafka keeps up, reading from MQTT also stops at this many messages not yet durable (a shallower pipeline: fewer records live long enough to reach the old generation of the heap). Once the oldest of them has waited READ_AHEAD_MAX_AGE_MS (Kafka slow or silent) only MAX_IN_FLIGHT_MESSAGES applies. 0 turns it off.', schema: int(0, 1_000_000) },
  { group: 'mqtt', env: 'READ_AHEAD_MAX_AGE_MS', default: '1000', doc: 'How long the oldest message not yet durable may wait before READ_AHEAD_MESSAGES stops applying and intake reads on up to MAX_IN_FLIGHT_MESSAGES.', schema: int(1, 600_000) },

  // --- Kafka ---
  { group: 'kafka', env: 'KAFKA_BROKER', doc: 'Kafka bootstrap host (with KAFKA_PORT). Either this or KAFKA_BROKERS is required.', schema: nonEmpty },
  { group: 'kafka', env: 'KAFKA_PORT', default: '9092', doc: 'Kafka bootstrap port used with KAFKA_BROKER.', schema: int(1, 65535) },
  { group: 'kafka', env: 'KAFKA_BROKERS', doc: 'Comma-separated host:port list of Kafka bootstrap brokers (instead of KAFKA_BROKER/KAFKA_PORT).', schema: list },
  { group: 'kafka', env: 'KAFKA_CLIENT_ID', default: 'mqtt-kafka-spool', doc: 'Kafka client id.', schema: nonEmpty },
  { group: 'kafka', env: 'KAFKA_WORKERS', default: '4', doc: 'Writer workers. A record goes to worker hash(key) % N; each has one produce request in flight.', schema: int(1, 64) },
  { group: 'kafka', env: 'KAFKA_LINGER_MS', default: '0', doc: 'Workers take turns: while another worker\'s produce request is in flight, a worker with records waits up to this long (or until it has a full batch) before sending its own. With Kafka close by the pool then makes fewer, larger requests (for a Kafka limited by its request rate), for a few ms of latency; with Kafka far away the requests overlap after this wait. Unlike the Java producer\'s linger.ms, nothing waits while no request is out. 0: every worker sends at once.', schema: int(0, 1000) },
  { group: 'kafka', env: 'KAFKA_AUTO_CREATE_TOPICS', default: 'false', doc: 'Let the producer create missing topics (the broker must allow it too).', schema: bool },
  { group: 'kafka', env: 'KAFKA_BATCH_MAX_MESSAGES', default: '500', doc: 'Most records a worker sends in one produce request.', schema: int(1, 100_000) },
  { group: 'kafka', env: 'KAFKA_REPLAY_BATCH_MAX_MESSAGES', default: '1000', doc: 'Most records the replayer sends in one produce request (one page of the spool; KAFKA_BATCH_MAX_BYTES bounds it too). Larger than a worker\'s batch: replay has one request in flight, and each page costs a round trip and a spool commit.', schema: int(1, 100_000) },
  { group: 'kafka', env: 'KAFKA_BATCH_MAX_BYTES', default: '524288', doc: 'Most record bytes a worker sends in one produce request (keep below the broker\'s message.max.bytes).', schema: int(1024) },
  { group: 'kafka', env: 'KAFKA_WRITE_TIMEOUT_MS', default: '10000', doc: 'A batch Kafka has not acknowledged within this time goes to the spool (durable, so its MQTT messages are acknowledged), and the worker spools what follows; its producer keeps retrying it until KAFKA_DELIVERY_TIMEOUT_MS.', schema: int(100) },
  { group: 'kafka', env: 'KAFKA_DELIVERY_TIMEOUT_MS', default: '120000', doc: 'How long the producer that sent a batch keeps retrying it (same producer id and sequences, so Kafka writes it once) when its outcome is unknown (timeout, leader change, too few in-sync replicas). Records not acknowledged within KAFKA_WRITE_TIMEOUT_MS are spooled meanwhile and not replayed while their delivery runs; only after this time is the batch given up and replayed by a new producer (which may duplicate it). Like the Java producer\'s delivery.timeout.ms.', schema: int(1000) },
  { group: 'kafka', env: 'KAFKA_CONNECT_TIMEOUT_MS', default: '5000', doc: 'Kafka connection timeout.', schema: int(100) },
  { group: 'kafka', env: 'KAFKA_COMPRESSION', default: 'none', doc: 'Produce compression: none, gzip, snappy, lz4 or zstd (all built into the client; consumers must support the codec).', schema: oneOf(['none', 'gzip', 'snappy', 'lz4', 'zstd']) },
  { group: 'kafka', env: 'KAFKA_TLS', doc: 'Connect to Kafka over TLS. Unset: on when KAFKA_TLS_CA or KAFKA_TLS_CERT is set, else off.', schema: bool },
  { group: 'kafka', env: 'KAFKA_TLS_CA', doc: "CA certificate file (PEM) Kafka's certificates must chain to (replaces the system CAs).", schema: nonEmpty },
  { group: 'kafka', env: 'KAFKA_TLS_CERT', doc: 'Client certificate file (PEM) for Kafka TLS client authentication (mTLS); needs KAFKA_TLS_KEY.', schema: nonEmpty },
  { group: 'kafka', env: 'KAFKA_TLS_KEY', doc: 'Private key file (PEM) of KAFKA_TLS_CERT.', schema: nonEmpty },
  { group: 'kafka', env: 'KAFKA_TLS_KEY_PASSPHRASE', doc: 'Passphrase of an encrypted KAFKA_TLS_KEY (or KAFKA_TLS_KEY_PASSPHRASE_FILE).', schema: str, secret: true },
  { group: 'kafka', env: 'KAFKA_TLS_INSECURE', default: 'false', doc: "Do not verify Kafka's certificates and host names (tests only; logged as a warning at start).", schema: bool },
  { group: 'kafka', env: 'KAFKA_SASL_MECHANISM', doc: 'SASL authentication: plain, scram-sha-256 or scram-sha-512 (needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD). Unset: no SASL.', schema: oneOf(['plain', 'scram-sha-256', 'scram-sha-512']) },
  { group: 'kafka', env: 'KAFKA_SASL_USERNAME', doc: 'Kafka SASL user name.', schema: nonEmpty },
  { group: 'kafka', env: 'KAFKA_SASL_PASSWORD', doc: 'Kafka SASL password (or KAFKA_SASL_PASSWORD_FILE).', schema: str, secret: true },

  // --- Mapping ---
  { group: 'mapping', env: 'ROUTES_FILE', doc: 'YAML routes file (docs/routes.md): topic/key templates, formats, enrichment, validation, filters. Overrides KAFKA_TOPIC and MESSAGE_FORMAT.', schema: nonEmpty },
  { group: 'mapping', env: 'KAFKA_TOPIC', doc: 'Write every message to this topic. Unset: derive the topic from the MQTT topic.', schema: nonEmpty },
  { group: 'mapping', env: 'KAFKA_TOPIC_SEPARATOR', default: '_', doc: "Replaces '/' when deriving a Kafka topic from an MQTT topic: '_', '.' or '-'.", schema: z.enum(['_', '.', '-'], { error: "must be '_', '.' or '-'" }) },
  { group: 'mapping', env: 'DLQ_TOPIC', default: 'mqtt-dead-letter', doc: 'Dead-letter topic for messages that cannot be delivered as asked (reason in headers).', schema: nonEmpty },
  { group: 'mapping', env: 'KAFKA_MAX_MESSAGE_BYTES', default: '1000000', doc: "Largest record (value + key + headers) sent to Kafka; larger ones are dead-lettered. Keep it at or below the broker's message.max.bytes.", schema: int(1024) },
  { group: 'mapping', env: 'MESSAGE_FORMAT', default: 'raw', doc: 'Record value: raw (payload bytes unchanged), envelope (Metamorphosis JSON {"topic","content":base64}), or avro, protobuf, json_schema (the payload, a JSON object, written through the schema registry in the Confluent wire format; needs MESSAGE_SCHEMA_FILE and SCHEMA_REGISTRY_URL).', schema: oneOf(['raw', 'envelope', 'avro', 'protobuf', 'json_schema']) },
  { group: 'mapping', env: 'MESSAGE_SCHEMA_FILE', doc: 'Schema of MESSAGE_FORMAT avro (.avsc), protobuf (.proto) or json_schema (.json), registered under the subject <topic>-value (docs/routes.md, "Schema registry formats"). Not used with ROUTES_FILE (rules name their own schema).', schema: nonEmpty },
  { group: 'mapping', env: 'MESSAGE_SCHEMA_AUTO_REGISTER', default: 'true', doc: 'Register MESSAGE_SCHEMA_FILE under the subject (true), or only look it up (false: the subject must already have it, or MESSAGE_SCHEMA_VERSION names the version to use).', schema: bool },
  { group: 'mapping', env: 'MESSAGE_SCHEMA_VERSION', doc: "With MESSAGE_SCHEMA_AUTO_REGISTER=false: the subject's version to write with, latest or a number (then MESSAGE_SCHEMA_FILE is not needed).", schema: z.string().trim().refine((v) => v === 'latest' || /^[1-9]\d{0,9}$/.test(v), 'must be latest or a version number').transform((v) => (v === 'latest' ? 'latest' : Number(v))) },
  { group: 'mapping', env: 'MESSAGE_SCHEMA_PROTOBUF_MESSAGE', doc: 'MESSAGE_FORMAT=protobuf: the message type to write (package.Message). Unset: the first message of the .proto file.', schema: nonEmpty },

  // --- Schema registry ---
  { group: 'registry', env: 'SCHEMA_REGISTRY_URL', doc: 'Confluent-compatible schema registry API for the avro, protobuf and json_schema formats, e.g. http://registry:8081 (Confluent, Redpanda, Karapace) or http://apicurio:8080/apis/ccompat/v7. Required when a route or MESSAGE_FORMAT uses one of them. No credentials in the URL: see SCHEMA_REGISTRY_USERNAME.', schema: nonEmpty },
  { group: 'registry', env: 'SCHEMA_REGISTRY_USERNAME', doc: 'Schema registry basic authentication user (with SCHEMA_REGISTRY_PASSWORD).', schema: nonEmpty },
  { group: 'registry', env: 'SCHEMA_REGISTRY_PASSWORD', doc: 'Schema registry basic authentication password (or SCHEMA_REGISTRY_PASSWORD_FILE).', schema: str, secret: true },
  { group: 'registry', env: 'SCHEMA_REGISTRY_TOKEN', doc: 'Schema registry bearer token, instead of a user and password (or SCHEMA_REGISTRY_TOKEN_FILE).', schema: str, secret: true },
  { group: 'registry', env: 'SCHEMA_REGISTRY_TLS_CA', doc: "CA certificate file (PEM) the registry's certificate must chain to (https:// URLs; replaces the system CAs).", schema: nonEmpty },
  { group: 'registry', env: 'SCHEMA_REGISTRY_TLS_CERT', doc: 'Client certificate file (PEM) for registry TLS client authentication; needs SCHEMA_REGISTRY_TLS_KEY.', schema: nonEmpty },
  { group: 'registry', env: 'SCHEMA_REGISTRY_TLS_KEY', doc: 'Private key file (PEM) of SCHEMA_REGISTRY_TLS_CERT.', schema: nonEmpty },
  { group: 'registry', env: 'SCHEMA_REGISTRY_TLS_KEY_PASSPHRASE', doc: 'Passphrase of an encrypted SCHEMA_REGISTRY_TLS_KEY (or SCHEMA_REGISTRY_TLS_KEY_PASSPHRASE_FILE).', schema: str, secret: true },
  { group: 'registry', env: 'SCHEMA_REGISTRY_TLS_INSECURE', default: 'false', doc: "Do not verify the registry's certificate and host name (tests only; logged as a warning at start).", schema: bool },
  { group: 'registry', env: 'SCHEMA_REGISTRY_TIMEOUT_MS', default: '5000', doc: 'Budget of one request to the schema registry; no answer within it counts as unreachable.', schema: int(100) },
  { group: 'registry', env: 'SCHEMA_REGISTRY_RETRY_MS', default: '5000', doc: 'While the registry cannot be reached, how often a subject whose records are held (not acknowledged) is tried again.', schema: int(100) },

  // --- Spool ---
  { group: 'spool', env: 'SPOOL_PATH', default: './data/spool.db', doc: 'SQLite spool file. Its directory must be writable and on persistent storage.', schema: nonEmpty },
  { group: 'spool', env: 'SPOOL_REPLAY_INTERVAL_MS', default: '10000', doc: 'How often the spool probes Kafka and replays.', schema: int(100) },
  { group: 'spool', env: 'SPOOL_MAX_BYTES', default: '1073741824', doc: 'Spool size bound (payload + key + headers bytes). At the bound SPOOL_FULL_POLICY applies.', schema: int(1024) },
  { group: 'spool', env: 'SPOOL_MAX_AGE_MS', default: '0', doc: 'Records older than this are dropped from the spool (counted, logged). 0 = keep until delivered.', schema: int(0) },
  { group: 'spool', env: 'SPOOL_FULL_POLICY', default: 'block', doc: 'When the spool is full: block (stop reading MQTT; the broker keeps messages), drop_oldest or drop_newest.', schema: oneOf(['block', 'drop_oldest', 'drop_newest']) },
  { group: 'spool', env: 'SPOOL_MIN_FREE_BYTES', default: '67108864', doc: "Free space to keep on the spool's file system. Below it (or below SPOOL_MIN_FREE_PERCENT, whichever is larger) the spool takes no new records, whatever SPOOL_FULL_POLICY says: reading from MQTT stops (the broker keeps the messages) until space frees; replay and deletes go on.", schema: int(0) },
  { group: 'spool', env: 'SPOOL_MIN_FREE_PERCENT', default: '5', doc: "The same free-space watermark as a percentage of the spool's file system (0-90).", schema: int(0, 90) },
  { group: 'spool', env: 'SPOOL_RESERVE_BYTES', default: '8388608', doc: 'Space reserved in a file beside the spool (SPOOL_PATH-reserve), released only when the file system is full and the spool could not otherwise open or delete replayed rows; made again once there is room. 0 = no reserve.', schema: int(0) },
  { group: 'spool', env: 'SPOOL_COMMIT_LINGER_MS', default: '2', doc: 'Group commit: how long the spool waits to gather more records into one transaction.', schema: int(0, 1000) },

  // --- Runtime ---
  { group: 'runtime', env: 'HEALTH_PORT', default: '8080', doc: 'HTTP port for /healthz, /readyz and /metrics.', schema: int(0, 65535) },
  { group: 'runtime', env: 'HEALTH_HOST', default: '0.0.0.0', doc: 'Address the HTTP server listens on.', schema: nonEmpty },
  { group: 'runtime', env: 'LOG_LEVEL', default: 'info', doc: 'trace, debug, info, warn, error or fatal.', schema: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal']) },
  { group: 'runtime', env: 'IDLE_MEMORY_RELEASE_MS', default: '10000', doc: 'After this long with nothing received and nothing in flight or being replayed, run one memory-reducing garbage collection (50-110 ms measured) that gives the heap pages of the last burst back to the system (idle RSS about 126 to 97 MB), and again every 5 minutes while it stays quiet. 0 turns it off.', schema: int(0, 86_400_000) },
  { group: 'runtime', env: 'SHUTDOWN_TIMEOUT_MS', default: '25000', doc: 'Graceful stop budget (SIGTERM): drain, flush, PUBACK; a second signal forces exit.', schema: int(100) },

  // --- Session group (issue 16): MQTT sessions that belong to a group of replicas ---
  { group: 'runtime', env: 'BRIDGE_GROUP', doc: "Replicas with the same value share their MQTT sessions: Kafka's group coordinator (a consumer group of this name) decides which live replica holds each session; the others stand by and take over when it dies or stops. Letters, digits, '.', '_' and '-'. Unset: one replica, its own session (no group).", schema: z.string().trim().regex(/^[A-Za-z0-9._-]{1,200}$/, "must be 1-200 letters, digits, '.', '_' or '-'") },
  { group: 'runtime', env: 'BRIDGE_INSTANCE_ID', default: '%h', doc: "This replica's name in the group (logs, metrics, the group's member data); %h expands to the host name (the pod name).", schema: nonEmpty },
  { group: 'mqtt', env: 'MQTT_SESSIONS', default: '1', doc: 'With BRIDGE_GROUP: how many MQTT sessions the group holds. Session i uses the client id MQTT_CLIENT_ID when 1, MQTT_CLIENT_ID-i otherwise; with more than one they subscribe in a shared group (MQTT_SHARED_GROUP, default BRIDGE_GROUP).', schema: int(1, 256) },
  { group: 'runtime', env: 'BRIDGE_GROUP_TOPIC', doc: 'With BRIDGE_GROUP: the small internal topic whose partitions stand for the sessions (one per session; created with the Admin API when missing). Default mqtt-kafka-spool.sessions.<BRIDGE_GROUP>.', schema: z.string().trim().regex(/^[A-Za-z0-9._-]{1,249}$/, "must be a Kafka topic name (letters, digits, '.', '_', '-')") },
  { group: 'runtime', env: 'BRIDGE_GROUP_SESSION_TIMEOUT_MS', default: '6000', doc: "With BRIDGE_GROUP: the group's session timeout. A replica that stops heartbeating for this long (killed, unplugged, cut off from Kafka) loses its sessions to the others. Kafka brokers accept 6000 and up by default (group.min.session.timeout.ms).", schema: int(1000, 1_800_000) },
  { group: 'runtime', env: 'BRIDGE_GROUP_HEARTBEAT_MS', default: '1000', doc: 'With BRIDGE_GROUP: heartbeat interval to the group coordinator; also how soon a member hears of a rebalance. At most a third of BRIDGE_GROUP_SESSION_TIMEOUT_MS.', schema: int(100, 600_000) },
  { group: 'runtime', env: 'BRIDGE_SESSION_RELEASE_MS', default: '20000', doc: 'With BRIDGE_GROUP: an owner that cannot keep an MQTT session connected for this long reports itself unhealthy, and the group gives its sessions to a replica that can reach the broker (when none can, they stay where they are).', schema: int(1000) },
];

export const VARS_BY_NAME: ReadonlyMap<string, VarSpec> = new Map(VARS.map((v) => [v.env, v]));
