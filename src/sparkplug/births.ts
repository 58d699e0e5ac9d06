import type { StateStore } from '../spool/types.js';

/**
 * # BIRTH certificates, kept durably
 *
 * DATA messages name their metrics by alias; the names (and data types, which DATA messages
 * leave out) come from the last NBIRTH of the edge node or DBIRTH of the device. They are kept in
 * the spool database's StateStore so that a restarted bridge still resolves names:
 *
 *     sparkplug/<group>/<edge_node>            -> NBIRTH certificate (JSON)
 *     sparkplug/<group>/<edge_node>/<device>   -> DBIRTH certificate (JSON)
 *
 *     { "v": 1, "kind": "NBIRTH" | "DBIRTH",
 *       "session": "<bridge message id of the NBIRTH>",   NBIRTH: its own id; DBIRTH: the NBIRTH's it followed (null: none known)
 *       "bdSeq": "<decimal>" | null,                       NBIRTH only
 *       "seq": <0-255> | null, "received_at": <ms>,
 *       "metrics": [[name, alias (decimal) | null, datatype | null], ...] }
 *
 * Sparkplug ids cannot contain '/', so keys are unambiguous and `sparkplug/<group>/<node>/` lists
 * exactly the node's devices.
 *
 * ## Lifecycle
 * - NBIRTH replaces the node's certificate and starts a new session. DBIRTHs of the earlier
 *   session become stale without being touched: a device certificate counts only while its
 *   `session` is the node's current one (NBIRTH would otherwise cost one delete per device).
 * - DBIRTH replaces the device's certificate. DDEATH deletes it. NDEATH (when its bdSeq matches)
 *   deletes the node's certificate and its devices'.
 * - Stale device certificates are deleted when they are next looked up.
 *
 * ## Ordering and crashes
 * The transform runs in receive order and writes synchronously (each write is its own
 * `synchronous=FULL` transaction), so a BIRTH is on disk before any later message is even
 * mapped, let alone acknowledged. After a crash the broker redelivers what was not acknowledged;
 * a redelivered BIRTH simply replaces the certificate again. The other way round is a known
 * limit: a BIRTH is written before the messages received ahead of it are acknowledged, so a
 * DATA message from before a rebirth that changed aliases, redelivered after a crash, is resolved
 * with the newer certificate (docs/routes.md; Sparkplug DATA is usually QoS 0, never redelivered).
 * A failed write (disk full) keeps the certificate in memory, so this process still resolves
 * names; it is counted and logged. The database then still holds the previous certificate of
 * that node, if any: after a restart (or once the cache is cleared) its DATA resolves with that
 * one, or is delivered unresolved (flagged) when there was none; never lost.
 *
 * Certificates are cached in memory after the first lookup (also "none", so DATA of unknown
 * nodes does not hit the database per message). The cache is cleared when it exceeds
 * CACHE_MAX entries: lookups then read the database again.
 */

/** What a BIRTH says about one metric. */
export interface BirthMetric {
  readonly name: string;
  readonly datatype: number | null;
}

/** A BIRTH certificate as used for resolving. */
export interface Birth {
  readonly kind: 'NBIRTH' | 'DBIRTH';
  readonly session: string | null;
  readonly bdSeq: string | null;
  readonly seq: number | null;
  readonly receivedAtMs: number;
  /** alias (decimal) -> name and datatype. */
  readonly byAlias: ReadonlyMap<string, BirthMetric>;
  /** name -> datatype, for DATA metrics sent by name without a datatype. */
  readonly typeByName: ReadonlyMap<string, number | null>;
  /** [name, alias, datatype] as stored. */
  readonly metrics: readonly (readonly [string, string | null, number | null])[];
}

/** Called when a state write fails; the caller counts and logs it. */
export type StateWriteError = (err: unknown, op: string) => void;

const PREFIX = 'sparkplug/';
const CACHE_MAX = 50_000;

export const nodeKey = (group: string, node: string): string => `${PREFIX}${group}/${node}`;
export const deviceKey = (group: string, node: string, device: string): string => `${PREFIX}${group}/${node}/${device}`;

/** Builds a certificate from the BIRTH's metrics. */
export function makeBirth(
  kind: Birth['kind'],
  metrics: readonly (readonly [string, string | null, number | null])[],
  meta: { session: string | null; bdSeq: string | null; seq: number | null; receivedAtMs: number },
): Birth {
  const byAlias = new Map<string, BirthMetric>();
  const typeByName = new Map<string, number | null>();
  for (const [name, alias, datatype] of metrics) {
    if (alias !== null) byAlias.set(alias, { name, datatype });
    typeByName.set(name, datatype);
  }
  return { kind, ...meta, byAlias, typeByName, metrics };
}

function serialize(b: Birth): string {
  return JSON.stringify({ v: 1, kind: b.kind, session: b.session, bdSeq: b.bdSeq, seq: b.seq, received_at: b.receivedAtMs, metrics: b.metrics });
}

/** Reads a stored certificate; undefined when it is not one this version understands. */
function deserialize(text: string): Birth | undefined {
  try {
    const o = JSON.parse(text) as Record<string, unknown>;
    if (o.v !== 1 || (o.kind !== 'NBIRTH' && o.kind !== 'DBIRTH') || !Array.isArray(o.metrics)) return undefined;
    const metrics = (o.metrics as unknown[]).filter(
      (m): m is [string, string | null, number | null] =>
        Array.isArray(m) && typeof m[0] === 'string' && (m[1] === null || typeof m[1] === 'string') && (m[2] === null || typeof m[2] === 'number'),
    );
    return makeBirth(o.kind, metrics, {
      session: typeof o.session === 'string' ? o.session : null,
      bdSeq: typeof o.bdSeq === 'string' ? o.bdSeq : null,
      seq: typeof o.seq === 'number' ? o.seq : null,
      receivedAtMs: typeof o.received_at === 'number' ? o.received_at : 0,
    });
  } catch {
    return undefined;
  }
}

/** BIRTH certificates over a StateStore, with an in-memory cache. */
export class BirthStore {
  private readonly cache = new Map<string, Birth | null>();

  constructor(
    private store: StateStore,
    private readonly onWriteError: StateWriteError,
  ) {}

  /** Switches to another store (the spool's, once it is open); the cache is dropped. */
  use(store: StateStore): void {
    this.store = store;
    this.cache.clear();
  }

  node(group: string, node: string): Birth | undefined {
    return this.read(nodeKey(group, node));
  }

  /** The device's certificate, if it belongs to the node's current session. */
  device(group: string, node: string, device: string): Birth | undefined {
    const key = deviceKey(group, node, device);
    const d = this.read(key);
    if (!d) return undefined;
    const current = this.node(group, node)?.session ?? null;
    if (d.session === current) return d;
    this.remove(key); // from an earlier session of the node
    return undefined;
  }

  putNode(group: string, node: string, birth: Birth): void {
    this.write(nodeKey(group, node), birth);
  }

  putDevice(group: string, node: string, device: string, birth: Birth): void {
    this.write(deviceKey(group, node, device), birth);
  }

  deleteDevice(group: string, node: string, device: string): void {
    this.remove(deviceKey(group, node, device));
  }

  /** Deletes the node's certificate and every device certificate under it. */
  deleteNode(group: string, node: string): void {
    const key = nodeKey(group, node);
    this.remove(key);
    let devices: string[] = [];
    try {
      devices = this.store.list(`${key}/`).map(([k]) => k);
    } catch (err) {
      this.onWriteError(err, 'list');
    }
    for (const [k] of this.cache) if (k.startsWith(`${key}/`)) devices.push(k);
    for (const k of new Set(devices)) this.remove(k);
  }

  private read(key: string): Birth | undefined {
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit ?? undefined;
    let birth: Birth | undefined;
    try {
      const text = this.store.get(key);
      birth = text === undefined ? undefined : deserialize(text);
    } catch (err) {
      this.onWriteError(err, 'read');
      return undefined; // not cached: the next lookup tries again
    }
    this.remember(key, birth ?? null);
    return birth;
  }

  private write(key: string, birth: Birth): void {
    this.remember(key, birth);
    try {
      this.store.set(key, serialize(birth));
    } catch (err) {
      this.onWriteError(err, 'write');
    }
  }

  private remove(key: string): void {
    this.remember(key, null);
    try {
      this.store.delete(key);
    } catch (err) {
      this.onWriteError(err, 'delete');
    }
  }

  private remember(key: string, birth: Birth | null): void {
    if (this.cache.size >= CACHE_MAX && !this.cache.has(key)) this.cache.clear();
    this.cache.set(key, birth);
  }
}
