import type { SeqAnomaly } from './sequence.js';
import type { MessageType } from './topic.js';

/**
 * What the Sparkplug decoder reports. Implemented by Telemetry (counts by group, never by node or
 * device id; logs with the ids). `first` is true for the first occurrence for that node or device
 * since its last BIRTH: only those are logged, so a misbehaving node cannot flood the log.
 */
export interface SparkplugTelemetry {
  /** A Sparkplug message was decoded (or passed, for STATE). */
  sparkplugMessage(group: string, type: MessageType): void;
  /** A DATA/CMD/DEATH message was delivered with metric aliases no BIRTH names. */
  sparkplugUnresolved(group: string, ctx: { readonly edgeNode: string; readonly device: string | null; readonly type: MessageType; readonly metrics: number; readonly aliases: readonly string[]; readonly first: boolean }): void;
  /** A seq gap, out-of-order or invalid seq. */
  sparkplugSeq(group: string, kind: SeqAnomaly, ctx: { readonly edgeNode: string; readonly type: MessageType; readonly expected: number | undefined; readonly got: string | null; readonly first: boolean }): void;
  /** An NDEATH whose bdSeq is not the one of the node's NBIRTH (a stale Will): the node stays alive. */
  sparkplugBdSeqMismatch(group: string, ctx: { readonly edgeNode: string; readonly birth: string | null; readonly death: string | null }): void;
  /** Reading or writing BIRTH state in the spool database failed. */
  sparkplugStateError(op: string, err: string): void;
}

/** A telemetry sink that does nothing (a transform not yet attached to the bridge). */
export const NO_SPARKPLUG_TELEMETRY: SparkplugTelemetry = {
  sparkplugMessage: () => undefined,
  sparkplugUnresolved: () => undefined,
  sparkplugSeq: () => undefined,
  sparkplugBdSeqMismatch: () => undefined,
  sparkplugStateError: () => undefined,
};

/** Headers the decoder writes on every Sparkplug record (names; see docs/routes.md). */
export const SPARKPLUG_HEADER = {
  messageType: 'sparkplug.message_type',
  group: 'sparkplug.group',
  edgeNode: 'sparkplug.edge_node',
  device: 'sparkplug.device',
  hostId: 'sparkplug.host_id',
  unresolved: 'sparkplug.unresolved',
  seqError: 'sparkplug.seq_error',
  seqExpected: 'sparkplug.seq_expected',
  bdSeq: 'sparkplug.bdseq',
} as const;
