import { errorChain } from '../errors.js';
import { tlsFailure } from '../tls.js';
import type { WriteErrorKind } from './types.js';

/**
 * Kafka error codes (the protocol's names, as the client reports them in `apiId`) that mean
 * the broker will never take this record as it is: retrying or spooling it cannot help, so the
 * writer splits the batch down to the record and dead-letters it.
 */
const REFUSED_FOR_GOOD: Record<string, WriteErrorKind> = {
  MESSAGE_TOO_LARGE: 'too_large',
  RECORD_LIST_TOO_LARGE: 'too_large',
  // The broker's record validation: e.g. a null key on a compacted topic, a timestamp outside
  // message.timestamp.before/after.max.ms, a corrupt batch.
  INVALID_RECORD: 'invalid_record',
  CORRUPT_MESSAGE: 'invalid_record',
  INVALID_TIMESTAMP: 'invalid_record',
};

const BY_API_ID: Record<string, WriteErrorKind> = {
  ...REFUSED_FOR_GOOD,
  SASL_AUTHENTICATION_FAILED: 'auth',
  ILLEGAL_SASL_STATE: 'auth',
  UNSUPPORTED_SASL_MECHANISM: 'auth',
  TOPIC_AUTHORIZATION_FAILED: 'auth',
  CLUSTER_AUTHORIZATION_FAILED: 'auth',
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 'auth',
  UNKNOWN_TOPIC_OR_PARTITION: 'topic_missing',
  LEADER_NOT_AVAILABLE: 'leader_unavailable',
  NOT_LEADER_OR_FOLLOWER: 'leader_unavailable',
  FENCED_LEADER_EPOCH: 'leader_unavailable',
  // Fewer in-sync replicas than min.insync.replicas: with acks=all the write must fail, and does.
  NOT_ENOUGH_REPLICAS: 'not_enough_replicas',
  NOT_ENOUGH_REPLICAS_AFTER_APPEND: 'not_enough_replicas',
  // A broker that cannot serve right now (restarting, its controller or coordinator moving).
  NOT_CONTROLLER: 'leader_unavailable',
  COORDINATOR_NOT_AVAILABLE: 'leader_unavailable',
  COORDINATOR_LOAD_IN_PROGRESS: 'leader_unavailable',
  NOT_COORDINATOR: 'leader_unavailable',
  REPLICA_NOT_AVAILABLE: 'leader_unavailable',
  KAFKA_STORAGE_ERROR: 'leader_unavailable',
  BROKER_NOT_AVAILABLE: 'connection',
  NETWORK_EXCEPTION: 'connection',
  REQUEST_TIMED_OUT: 'timeout',
  OUT_OF_ORDER_SEQUENCE_NUMBER: 'fatal_producer',
  UNKNOWN_PRODUCER_ID: 'fatal_producer',
  INVALID_PRODUCER_EPOCH: 'fatal_producer',
  PRODUCER_FENCED: 'fatal_producer',
};

/** Order of precedence when one failed request carries several errors (one per partition or attempt). */
const PRECEDENCE: readonly WriteErrorKind[] = [
  'tls',
  'auth',
  'too_large',
  'invalid_record',
  'fatal_producer',
  'topic_missing',
  'not_enough_replicas',
  'leader_unavailable',
  'timeout',
  'connection',
  'unknown',
];

/**
 * Maps a failed write (a Kafka client error, possibly an aggregate of several, or our own
 * write timeout) to a bounded kind for metrics, logs and the writer's decision.
 */
export function classifyKafkaError(err: unknown): WriteErrorKind {
  if (tlsFailure(err)) return 'tls';
  const kinds = new Set<WriteErrorKind>();
  for (const e of errorChain(err)) {
    const apiId = typeof e.apiId === 'string' ? e.apiId : undefined;
    const mapped = apiId ? BY_API_ID[apiId] : undefined;
    if (mapped) kinds.add(mapped);
    // The client's own check before producing: the topic is not in the metadata and auto-creation is off.
    else if (isUnknownTopic(e)) kinds.add('topic_missing');
    else if (e.code === 'PLT_KFK_AUTHENTICATION') kinds.add(isSaslFailure(e) ? 'auth' : 'connection');
    else if (e.name === 'TimeoutError' || (e.code === 'PLT_KFK_NETWORK' && /timed out/i.test(String(e.message)))) kinds.add('timeout');
    else if (e.code === 'PLT_KFK_NETWORK' || isSocketError(e.code)) kinds.add('connection');
  }
  for (const k of PRECEDENCE) if (kinds.has(k)) return k;
  return 'unknown';
}

/**
 * True when Kafka refused the records of this error for good (too large, invalid): the writer
 * halves the batch until single records remain and dead-letters those. A whole batch refused
 * for good is rare (one bad record among good ones makes the whole produce request fail).
 */
export function refusedForGood(kind: WriteErrorKind): boolean {
  return REFUSED_KINDS.has(kind);
}

const REFUSED_KINDS: ReadonlySet<WriteErrorKind> = new Set(Object.values(REFUSED_FOR_GOOD));

const SASL_API_IDS = new Set(['SASL_AUTHENTICATION_FAILED', 'UNSUPPORTED_SASL_MECHANISM', 'ILLEGAL_SASL_STATE']);

/**
 * True when the error chain holds a SASL authentication failure (not an ACL refusal): the broker
 * said so, or the client's SASL exchange failed on its own terms (bad server signature, no common
 * mechanism). The client also reports a connection that dropped during the SASL exchange — plain
 * text sent to a TLS listener, say — as "SASL authentication failed"; that is a connection
 * problem, not credentials, and is not counted here.
 */
export function isSaslFailure(err: unknown): boolean {
  for (const e of errorChain(err)) {
    if (typeof e.apiId === 'string' && SASL_API_IDS.has(e.apiId)) return true;
  }
  for (const e of errorChain(err)) {
    if (e.code !== 'PLT_KFK_AUTHENTICATION') continue;
    let network = false;
    for (const inner of errorChain(e)) if (inner.code === 'PLT_KFK_NETWORK' || isSocketError(inner.code)) network = true;
    if (!network) return true;
  }
  return false;
}

/** The client's "Unknown topic <name>." (a UserError raised from metadata when the topic does not exist). */
function isUnknownTopic(e: { code?: unknown; message?: unknown }): boolean {
  return typeof e.message === 'string' && /^Unknown topic .*\.$/.test(e.message);
}

/** The topic named by the client's "Unknown topic <name>." in the error chain, if any. */
export function missingTopic(err: unknown): string | undefined {
  for (const e of errorChain(err)) {
    const m = typeof e.message === 'string' ? /^Unknown topic (.*)\.$/.exec(e.message) : null;
    if (m) return m[1];
  }
  return undefined;
}

function isSocketError(code: unknown): boolean {
  return typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)$/.test(code);
}
