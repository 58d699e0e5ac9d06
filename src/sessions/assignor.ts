/**
 * Who holds which MQTT session: computed by the group's leader at every rebalance (Kafka's
 * group coordinator runs the protocol; the assignment is ours). Each member tells the others,
 * in its JoinGroup metadata, which sessions it holds now and whether it can reach the MQTT
 * broker. The rules, in order:
 *
 *  1. A session stays with the member that holds it (sticky), unless that member is unhealthy
 *     while another one is healthy: moving a session costs a takeover, so it moves only when
 *     its owner is gone (not in the group any more) or cannot hold it.
 *  2. When no member is healthy (the broker is down for everyone) every member counts as a
 *     candidate: sessions stay where they are instead of going round the group.
 *  3. A session nobody holds goes to the candidate holding the fewest (ties: lowest member id,
 *     so every leader computes the same answer).
 *  4. Then, only between healthy members, one session at a time moves from the most to the
 *     least loaded while they differ by more than one (a replica added to the group gets work).
 *     With one session this never moves anything.
 */

/** What a member says about itself in its JoinGroup metadata (userData). */
export interface MemberInfo {
  /** BRIDGE_INSTANCE_ID of the member. */
  readonly instance: string;
  /** Sessions it holds (connected, or connecting) right now. */
  readonly owned: readonly number[];
  /** False while it cannot keep its MQTT connection (BRIDGE_SESSION_RELEASE_MS). */
  readonly healthy: boolean;
  /** MQTT_SESSIONS as it is configured there. */
  readonly sessions: number;
}

const VERSION = 1;

export function encodeMemberInfo(info: MemberInfo): Buffer {
  return Buffer.from(JSON.stringify({ v: VERSION, ...info }));
}

/** undefined for metadata that is not ours (another client in the group, an older format). */
export function decodeMemberInfo(buf: Buffer | null | undefined): MemberInfo | undefined {
  if (!buf || buf.length === 0) return undefined;
  try {
    const o = JSON.parse(buf.toString('utf8')) as Partial<MemberInfo> & { v?: number };
    if (o.v !== VERSION || typeof o.instance !== 'string' || !Array.isArray(o.owned)) return undefined;
    return { instance: o.instance, owned: o.owned.filter((n) => Number.isInteger(n)), healthy: o.healthy !== false, sessions: Number(o.sessions) || 0 };
  } catch {
    return undefined;
  }
}

export interface GroupMember {
  readonly memberId: string;
  readonly info: MemberInfo | undefined;
}

/** Sessions 0..sessions-1 over the members; every member gets an entry (possibly empty). */
export function assignSessions(members: readonly GroupMember[], sessions: number): Map<string, number[]> {
  const sorted = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  const out = new Map<string, number[]>(sorted.map((m) => [m.memberId, []]));
  if (sorted.length === 0) return out;
  const healthy = sorted.filter((m) => m.info?.healthy !== false);
  const candidates = new Set((healthy.length > 0 ? healthy : sorted).map((m) => m.memberId));
  const unowned: number[] = [];
  for (let s = 0; s < sessions; s++) {
    const holder = sorted.find((m) => candidates.has(m.memberId) && m.info?.owned.includes(s));
    if (holder) out.get(holder.memberId)!.push(s);
    else unowned.push(s);
  }
  const load = (id: string) => out.get(id)!.length;
  for (const s of unowned) {
    let best: string | undefined;
    for (const id of candidates) if (best === undefined || load(id) < load(best)) best = id;
    out.get(best!)!.push(s);
  }
  const movable = healthy.map((m) => m.memberId);
  for (;;) {
    if (movable.length < 2) break;
    let max = movable[0]!;
    let min = movable[0]!;
    for (const id of movable) {
      if (load(id) > load(max)) max = id;
      if (load(id) < load(min)) min = id;
    }
    if (load(max) - load(min) <= 1) break;
    const from = out.get(max)!;
    out.get(min)!.push(from.pop()!);
  }
  for (const list of out.values()) list.sort((a, b) => a - b);
  return out;
}
