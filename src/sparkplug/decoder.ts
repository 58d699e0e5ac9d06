import { isUtf8 } from 'node:buffer';
import { describeError } from '../errors.js';
import type { InboundMessage } from '../mqtt/types.js';
import { MemoryState } from '../spool/memory-state.js';
import type { StateStore } from '../spool/types.js';
import { BirthStore, deviceKey, makeBirth, nodeKey, type Birth } from './births.js';
import { buildRecord, type BuiltRecord } from './record.js';
import { decodePayload, has, payloadType, type PbMetric, type PbPayload } from './schema.js';
import { SeqTracker, type SeqVerdict } from './sequence.js';
import { parseSparkplugTopic, type EdgeTopic } from './topic.js';
import { NO_SPARKPLUG_TELEMETRY, SPARKPLUG_HEADER as H, type SparkplugTelemetry } from './types.js';
import { SparkplugDataError, SparkplugTooLarge, u64 } from './values.js';

/** A decoded Sparkplug message, ready to become a Kafka record. */
export interface SparkplugDecoded {
  /** The JSON record (docs/routes.md), or a STATE message's JSON payload unchanged. */
  readonly value: Buffer;
  /** `group/edge_node[/device]`, or `STATE/<host_id>`: one key per node and per device keeps each one's order. */
  readonly key: string;
  /** `sparkplug.*` headers. */
  readonly headers: Readonly<Record<string, string>>;
}

/** Why a message is not Sparkplug B; becomes an `invalid_sparkplug` dead letter. `detail` never holds payload content. */
export interface SparkplugInvalid {
  readonly invalid: string;
}

/** The decoded record would be larger than the decoder's limit (at least `tooLarge` bytes): a `too_large` dead letter. */
export interface SparkplugTooLargeResult {
  readonly tooLarge: number;
}

/** What a decoder gets once the bridge's durable parts exist. */
export interface SparkplugDeps {
  readonly state: StateStore;
  readonly telemetry: SparkplugTelemetry;
}

const MAX_WARNED = 10_000;

/**
 * Decodes Sparkplug B messages and keeps the state that needs: BIRTH certificates (durable, see
 * births.ts) and seq counts (memory, see sequence.ts). One decoder serves every sparkplug rule
 * of a routes file, because the state belongs to the edge nodes, not to the rules. `decode` must
 * be called in receive order (the bridge's transform loop does), and never throws.
 *
 * Effects on state follow the Sparkplug protocol whenever the topic and the protobuf are valid,
 * even when a metric value then cannot be decoded (that message is dead-lettered, but its BIRTH
 * still defines the aliases the following DATA messages use).
 */
export class SparkplugDecoder {
  private telemetry: SparkplugTelemetry = NO_SPARKPLUG_TELEMETRY;
  private readonly births: BirthStore;
  private readonly seqs = new SeqTracker();
  /** Nodes/devices already logged as sending unresolved aliases or bad seqs (since their last BIRTH). */
  private readonly warned = new Set<string>();

  /** `maxRecordBytes`: records larger than this are refused; array metrics are checked before they are expanded. */
  constructor(private readonly maxRecordBytes = Number.POSITIVE_INFINITY) {
    // Loads protobufjs now, when a route needs Sparkplug (at start), so that a missing piece fails here.
    payloadType();
    this.births = new BirthStore(new MemoryState(), (err, op) => this.telemetry.sparkplugStateError(op, describeError(err)));
  }

  /** Connects the durable state store and telemetry (the bridge does this once the spool is open). */
  attach(deps: SparkplugDeps): void {
    this.telemetry = deps.telemetry;
    this.births.use(deps.state);
  }

  decode(msg: InboundMessage): SparkplugDecoded | SparkplugInvalid | SparkplugTooLargeResult {
    const t = parseSparkplugTopic(msg.topic);
    if (typeof t === 'string') return { invalid: t };
    if (t.kind === 'state') {
      // STATE (Sparkplug 3.0) is JSON from a host application: passed as it is, if it is JSON.
      if (!isUtf8(msg.payload)) return { invalid: 'STATE payload is not UTF-8 JSON' };
      try {
        JSON.parse(msg.payload.toString('utf8'));
      } catch {
        return { invalid: 'STATE payload is not JSON' };
      }
      this.telemetry.sparkplugMessage('STATE', 'STATE');
      return { value: msg.payload, key: `STATE/${t.hostId}`, headers: { [H.messageType]: 'STATE', [H.hostId]: t.hostId } };
    }
    let p: PbPayload;
    try {
      p = decodePayload(msg.payload);
    } catch (err) {
      // protobufjs' messages (index out of range, invalid wire type, max depth exceeded) hold no payload content.
      return { invalid: `payload is not a Sparkplug B protobuf: ${(err as Error).message.slice(0, 200)}` };
    }
    return this.edge(msg, t, p);
  }

  private edge(msg: InboundMessage, t: EdgeTopic, p: PbPayload): SparkplugDecoded | SparkplugInvalid | SparkplugTooLargeResult {
    const { group, edgeNode, device, type } = t;
    const node = nodeKey(group, edgeNode);
    const headers: Record<string, string> = { [H.messageType]: type, [H.group]: group, [H.edgeNode]: edgeNode };
    if (device !== null) headers[H.device] = device;
    const seq = has(p, 'seq') ? p.seq! : null;
    // 256 stands for "out of range": the checks only need to know it is not 0-255.
    const seqNum = seq === null ? null : seq.high !== 0 || seq.low >>> 0 > 255 ? 256 : seq.low;

    let birth: Birth | undefined;
    let verdict: SeqVerdict | undefined;
    switch (type) {
      case 'NBIRTH':
        verdict = this.seqs.birth(node, seqNum);
        birth = this.birthOf('NBIRTH', p, msg, msg.id, seqNum);
        this.births.putNode(group, edgeNode, birth);
        this.forgetWarnings(node, true);
        break;
      case 'DBIRTH': {
        verdict = this.seqs.next(node, seqNum);
        const session = this.births.node(group, edgeNode)?.session ?? null;
        birth = this.birthOf('DBIRTH', p, msg, session, seqNum);
        this.births.putDevice(group, edgeNode, device as string, birth);
        this.forgetWarnings(deviceKey(group, edgeNode, device as string), false);
        break;
      }
      case 'NDATA':
        verdict = this.seqs.next(node, seqNum);
        birth = this.births.node(group, edgeNode);
        break;
      case 'DDATA':
        verdict = this.seqs.next(node, seqNum);
        birth = this.births.device(group, edgeNode, device as string);
        break;
      case 'DDEATH':
        verdict = this.seqs.next(node, seqNum);
        birth = this.births.device(group, edgeNode, device as string);
        this.births.deleteDevice(group, edgeNode, device as string);
        break;
      case 'NDEATH':
        birth = this.births.node(group, edgeNode);
        headers[H.bdSeq] = this.death(group, edgeNode, p, birth);
        break;
      case 'NCMD':
        birth = this.births.node(group, edgeNode);
        break;
      case 'DCMD':
        birth = this.births.device(group, edgeNode, device as string);
        break;
    }
    this.telemetry.sparkplugMessage(group, type);
    if (verdict) {
      headers[H.seqError] = verdict.anomaly;
      if (verdict.expected !== undefined) headers[H.seqExpected] = String(verdict.expected);
      this.telemetry.sparkplugSeq(group, verdict.anomaly, { edgeNode, type, expected: verdict.expected, got: seq === null ? null : u64(seq), first: this.firstWarning(`seq:${node}`) });
    }

    let built: BuiltRecord;
    try {
      built = buildRecord({ group, message_type: type, edge_node: edgeNode, device }, p, birth, this.maxRecordBytes);
    } catch (err) {
      if (err instanceof SparkplugDataError) return { invalid: err.message };
      if (err instanceof SparkplugTooLarge) return { tooLarge: err.atLeast };
      throw err;
    }
    if (built.unresolved > 0) {
      headers[H.unresolved] = String(built.unresolved);
      const who = device === null ? node : deviceKey(group, edgeNode, device);
      this.telemetry.sparkplugUnresolved(group, { edgeNode, device, type, metrics: built.unresolved, aliases: built.unresolvedAliases, first: this.firstWarning(`alias:${who}`) });
    }
    let value: Buffer;
    try {
      value = Buffer.from(JSON.stringify(built.record), 'utf8');
    } catch (err) {
      // A string beyond V8's maximum length (RangeError): far over any Kafka limit.
      if (err instanceof RangeError) return { tooLarge: Number.MAX_SAFE_INTEGER };
      throw err;
    }
    return { value, key: device === null ? `${group}/${edgeNode}` : `${group}/${edgeNode}/${device}`, headers };
  }

  /** NDEATH: invalidates the node (and its devices) when its bdSeq matches the NBIRTH's. Returns the bdseq header. */
  private death(group: string, edgeNode: string, p: PbPayload, birth: Birth | undefined): string {
    const death = bdSeqOf(p.metrics);
    if (birth && birth.bdSeq !== null && death !== null && birth.bdSeq !== death) {
      // A Will from an earlier connection arriving after the node came back: it is still alive.
      this.telemetry.sparkplugBdSeqMismatch(group, { edgeNode, birth: birth.bdSeq, death });
      return 'mismatch';
    }
    this.births.deleteNode(group, edgeNode);
    this.seqs.death(nodeKey(group, edgeNode));
    if (!birth) return 'no_birth';
    return death === null || birth.bdSeq === null ? 'missing' : 'match';
  }

  private birthOf(kind: Birth['kind'], p: PbPayload, msg: InboundMessage, session: string | null, seq: number | null): Birth {
    const metrics: [string, string | null, number | null][] = [];
    for (const m of p.metrics) {
      if (!has(m, 'name')) continue;
      metrics.push([m.name as string, has(m, 'alias') ? u64(m.alias!) : null, has(m, 'datatype') ? (m.datatype as number) : null]);
    }
    return makeBirth(kind, metrics, { session, bdSeq: kind === 'NBIRTH' ? bdSeqOf(p.metrics) : null, seq, receivedAtMs: msg.receivedAtMs });
  }

  private firstWarning(key: string): boolean {
    if (this.warned.has(key)) return false;
    if (this.warned.size >= MAX_WARNED) this.warned.clear();
    this.warned.add(key);
    return true;
  }

  /** A BIRTH starts afresh: its node (or device) may be logged again. NBIRTH also clears its devices'. */
  private forgetWarnings(key: string, node: boolean): void {
    this.warned.delete(`alias:${key}`);
    if (!node) return;
    this.warned.delete(`seq:${key}`);
    for (const k of this.warned) if (k.startsWith(`alias:${key}/`)) this.warned.delete(k);
  }
}

/** The value of the `bdSeq` metric (decimal), or null when there is none. */
function bdSeqOf(metrics: readonly PbMetric[]): string | null {
  for (const m of metrics) {
    if (m.name !== 'bdSeq' || !has(m, 'name')) continue;
    if (m.value === 'long_value') return u64(m.long_value!);
    if (m.value === 'int_value') return String(m.int_value);
  }
  return null;
}
