/**
 * The contract of the schema registry room toward the rest of the bridge. Only types live here,
 * so the routes compiler and the bridge can name them without loading the room (it is imported
 * dynamically, only when a configuration uses a registry format).
 */

/** Route formats whose values are written in the Confluent wire format through a schema registry. */
export type RegistryFormat = 'avro' | 'protobuf' | 'json_schema';
export const REGISTRY_FORMATS: readonly RegistryFormat[] = ['avro', 'protobuf', 'json_schema'];

/** One route's schema, as the routes file (or MESSAGE_SCHEMA_*) names it. */
export interface SchemaUse {
  /** Route name, for messages. */
  readonly route: string;
  readonly format: RegistryFormat;
  /** Absolute path of the schema file (.avsc, .proto, .json); undefined when looked up by version. */
  readonly file?: string | undefined;
  /** The file's text, read when the routes were loaded. */
  readonly text?: string | undefined;
  /** Register the schema under the subject (default). False: look it up (by `version`, or the file's schema). */
  readonly autoRegister: boolean;
  /** With autoRegister false: the subject's version to use ('latest' or a number); undefined = the file's schema. */
  readonly version?: number | 'latest' | undefined;
  /** Protobuf: the message type to write (full name); undefined = the first message of the file. */
  readonly message?: string | undefined;
  /** The Kafka topic when it is a constant (its subject is resolved at start); undefined for topic templates. */
  readonly staticTopic?: string | undefined;
}

/**
 * What encoding one value gave. Never thrown: bad input is `mismatch` (a dead letter), a
 * registry that answered "no" for this subject is `refused` (a dead letter too), a registry that
 * cannot be reached for a subject not seen yet is `waiting` (the record is held, never dead-lettered).
 */
export type EncodeOutcome =
  | { readonly kind: 'encoded'; readonly value: Buffer }
  | { readonly kind: 'mismatch'; readonly detail: string }
  | { readonly kind: 'refused'; readonly detail: string }
  | {
      readonly kind: 'waiting';
      /** Resolves (never rejects) once the subject is resolved or refused: encode again then. */
      readonly ready: Promise<void>;
    };

/** Encodes a route's JSON value for a topic. Synchronous: schema ids are resolved and cached ahead. */
export interface ValueEncoder {
  /** `use`: index into the transform's `schemaUses`. */
  encode(use: number, topic: string, value: unknown): EncodeOutcome;
}

/** What /readyz and the metrics say about the registry. */
export interface RegistryStatus {
  /** False after a request could not reach the registry, until one succeeds again. */
  readonly up: boolean;
  /** Subjects whose schema id is needed and not known yet (their records are held). */
  readonly waitingSubjects: number;
  /** Subjects the registry refused at run time (their records are dead-lettered as schema_refused). */
  readonly refusedSubjects: number;
}

/** Counts what the registry room does; implemented by observability/telemetry.ts. */
export interface RegistryTelemetry {
  /** One request to the registry: it answered (ok or refused) or could not be reached. */
  registryRequest(result: 'ok' | 'refused' | 'unreachable'): void;
  registryUp(up: boolean): void;
}
