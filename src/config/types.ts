/** TLS material for one connection: file paths as configured (read at start), never the contents. */
export interface TlsConfig {
  /** CA certificate file (PEM); unset = Node's built-in CAs. */
  readonly caFile?: string | undefined;
  /** Client certificate file (PEM); always set together with keyFile. */
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** Passphrase of an encrypted keyFile. Secret. */
  readonly keyPassphrase?: string | undefined;
  /** Skip certificate and host name verification. */
  readonly insecure: boolean;
}

export type SaslMechanism = 'plain' | 'scram-sha-256' | 'scram-sha-512';

/** Produce compression codecs (all built into the Kafka client). */
export type KafkaCompression = 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';

/** The validated, frozen configuration. Units are in the names. See src/config/spec.ts. */
export interface Config {
  readonly mqtt: {
    /** mqtt://host:port, mqtts://, ws:// or wss:// */
    readonly url: string;
    /** From MQTT_TOPIC; empty when ROUTES_FILE provides the subscriptions. */
    readonly topics: readonly string[];
    readonly clientId: string;
    /** MQTT_SHARED_GROUP: subscribe every filter as $share/<group>/<filter>; undefined = plain subscriptions. */
    readonly sharedGroup?: string | undefined;
    readonly qos: 0 | 1;
    readonly protocolVersion: 4 | 5;
    readonly sessionExpiryS: number;
    readonly keepaliveS: number;
    readonly reconnectMs: number;
    readonly username?: string | undefined;
    readonly password?: string | undefined;
    /** Set when the connection uses TLS (mqtts:// or wss://): ROOT_CA, MQTT_CLIENT_CERT/KEY, MQTT_KEY_PASSPHRASE, MQTT_TLS_INSECURE. */
    readonly tls?: TlsConfig | undefined;
    /** Messages received and not yet durable; at this bound reading stops. */
    readonly maxInFlight: number;
    /** Payload bytes of those messages; at this bound reading stops too. */
    readonly maxInFlightBytes: number;
    /**
     * While the oldest unsettled message is younger than readAheadMaxAgeMs, reading also stops at
     * this many (0 = off): the pipeline stays shallow while Kafka keeps up, and maxInFlight stays
     * the buffer for a Kafka that is slow or silent.
     */
    readonly readAheadMessages: number;
    readonly readAheadMaxAgeMs: number;
    /** What happens to messages the broker had queued for a filter removed from the configuration. */
    readonly removedFilterPolicy: 'forward' | 'dead_letter';
  };
  readonly kafka: {
    readonly brokers: readonly string[];
    readonly clientId: string;
    readonly workers: number;
    /** KAFKA_LINGER_MS: how long a worker waits for another worker's request to finish before sending its own. */
    readonly lingerMs: number;
    readonly autoCreateTopics: boolean;
    readonly batchMaxMessages: number;
    /** KAFKA_REPLAY_BATCH_MAX_MESSAGES: records per replay page (one produce request). */
    readonly replayBatchMaxMessages: number;
    readonly batchMaxBytes: number;
    readonly writeTimeoutMs: number;
    /** KAFKA_DELIVERY_TIMEOUT_MS: how long the sending producer retries a batch whose outcome is unknown. */
    readonly deliveryTimeoutMs: number;
    readonly connectTimeoutMs: number;
    readonly compression: KafkaCompression;
    /** Set when Kafka is reached over TLS: KAFKA_TLS, KAFKA_TLS_CA/CERT/KEY, KAFKA_TLS_KEY_PASSPHRASE, KAFKA_TLS_INSECURE. */
    readonly tls?: TlsConfig | undefined;
    /** Set when KAFKA_SASL_MECHANISM is. `password` is secret. */
    readonly sasl?: { readonly mechanism: SaslMechanism; readonly username: string; readonly password: string } | undefined;
  };
  readonly mapping: {
    readonly topic?: string | undefined;
    /** ROUTES_FILE, resolved; when set the routes transform replaces the default mapping. */
    readonly routesFile?: string | undefined;
    readonly separator: '_' | '.' | '-';
    readonly format: 'raw' | 'envelope' | 'avro' | 'protobuf' | 'json_schema';
    /** MESSAGE_SCHEMA_*: the schema of a registry MESSAGE_FORMAT (without a routes file). */
    readonly schema?: MessageSchemaConfig | undefined;
    readonly dlqTopic: string;
    readonly maxMessageBytes: number;
  };
  readonly spool: {
    readonly path: string;
    readonly replayIntervalMs: number;
    readonly maxBytes: number;
    readonly maxAgeMs: number;
    readonly fullPolicy: 'block' | 'drop_oldest' | 'drop_newest';
    readonly commitLingerMs: number;
    /** Free-space watermark on the spool's file system: the larger of these two. */
    readonly minFreeBytes: number;
    readonly minFreePercent: number;
    /** Size of the reserve file beside the spool (0 = none). */
    readonly reserveBytes: number;
  };
  /** Set when SCHEMA_REGISTRY_URL is: the Confluent-compatible schema registry of the avro, protobuf and json_schema formats. */
  readonly registry?: RegistryConfig | undefined;
  readonly http: { readonly port: number; readonly host: string };
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  readonly shutdownTimeoutMs: number;
  /** IDLE_MEMORY_RELEASE_MS: quiet time before a memory-reducing garbage collection (0 = never; src/memory). */
  readonly idleMemoryReleaseMs: number;
  /** Set when BRIDGE_GROUP is: the MQTT sessions belong to a group of replicas (src/sessions). */
  readonly sessions?: SessionsConfig | undefined;
  /** Non-fatal findings (unknown variables), logged once at start. */
  readonly warnings: readonly string[];
}

/** The schema registry connection (SCHEMA_REGISTRY_*). Secrets: password, token, tls.keyPassphrase. */
export interface RegistryConfig {
  /** Base URL of the Confluent-compatible API (e.g. http://registry:8080/apis/ccompat/v7), without credentials. */
  readonly url: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** Bearer token (instead of username/password). */
  readonly token?: string | undefined;
  /** Set for an https:// URL. */
  readonly tls?: TlsConfig | undefined;
  /** One request's budget. */
  readonly timeoutMs: number;
  /** While the registry cannot be reached, how often a subject whose records are held is tried again. */
  readonly retryMs: number;
}

/** MESSAGE_SCHEMA_FILE / _AUTO_REGISTER / _VERSION / _PROTOBUF_MESSAGE. */
export interface MessageSchemaConfig {
  readonly file?: string | undefined;
  readonly autoRegister: boolean;
  readonly version?: number | 'latest' | undefined;
  readonly message?: string | undefined;
}

/** BRIDGE_GROUP and friends: MQTT sessions owned by a group of replicas through Kafka's group coordinator. */
export interface SessionsConfig {
  /** BRIDGE_GROUP: the consumer group id. */
  readonly group: string;
  /** BRIDGE_INSTANCE_ID (host name expanded). */
  readonly instanceId: string;
  /** MQTT_SESSIONS. */
  readonly count: number;
  /** The internal topic, one partition per session. */
  readonly topic: string;
  readonly sessionTimeoutMs: number;
  readonly heartbeatMs: number;
  /** BRIDGE_SESSION_RELEASE_MS. */
  readonly releaseMs: number;
}
