import mqtt from 'mqtt';
import type { ReadRecord } from './kcat.js';

export interface BadgeRunOptions {
  url: string;
  badges: number;
  /** Messages per badge. */
  perBadge: number;
  /** Topic for a badge; default `cackalacky/badge/egress/{badge_id}/cp/heartbeat`. */
  topic?: (badgeId: string) => string;
  /** Publishes in flight at once (QoS 1). */
  window?: number;
  /** Called after every `every` messages (to inject faults mid-stream). */
  onProgress?: (published: number) => void | Promise<void>;
  /** Target rate in messages/s; unset = as fast as the window allows. */
  ratePerS?: number;
  qos?: 0 | 1;
  /** Publisher keeps a persistent session (fixed client id, clean: false), so its unacknowledged publishes are resent after a broker restart. */
  persistentSession?: boolean;
  /** Pads each JSON payload with a `pad` field to about this many bytes (to fill a spool quickly). */
  payloadBytes?: number;
}

export const badgeId = (i: number): string => `badge-${String(i).padStart(4, '0')}`;

/**
 * Simulated badges: publishes `perBadge` QoS 1 messages for each of `badges` badges,
 * interleaved (round-robin), each payload `{"badge_id", "seq", "ts"}` with a per-badge
 * sequence number starting at 0. Resolves when the broker acknowledged every publish.
 */
export async function publishBadges(opts: BadgeRunOptions): Promise<number> {
  const client = await mqtt.connectAsync(opts.url, {
    clientId: `badge-sim-${process.pid}-${Date.now()}`,
    clean: !opts.persistentSession,
    reconnectPeriod: 500,
  });
  const topic = opts.topic ?? ((id: string) => `cackalacky/badge/egress/${id}/cp/heartbeat`);
  const window = opts.window ?? 200;
  const inflight = new Set<Promise<unknown>>();
  const started = Date.now();
  let n = 0;
  try {
    for (let seq = 0; seq < opts.perBadge; seq++) {
      for (let b = 0; b < opts.badges; b++) {
        const id = badgeId(b);
        const body: Record<string, unknown> = { badge_id: id, seq, ts: Date.now() / 1000 };
        if (opts.payloadBytes) body.pad = 'x'.repeat(Math.max(0, opts.payloadBytes - JSON.stringify(body).length - 10));
        const p = client.publishAsync(topic(id), JSON.stringify(body), { qos: opts.qos ?? 1 });
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
        n++;
        if (inflight.size >= window) await Promise.race(inflight);
        if (opts.onProgress) await opts.onProgress(n);
        if (opts.ratePerS) {
          const due = started + (n * 1000) / opts.ratePerS;
          const wait = due - Date.now();
          if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        }
      }
    }
    await Promise.all(inflight);
  } finally {
    await client.endAsync();
  }
  return n;
}

export interface BadgeCheck {
  /** Distinct (badge, seq) pairs found. */
  distinct: number;
  /** Records beyond the first copy of a (badge, seq). */
  duplicates: number;
  /** (badge, seq) pairs never found. */
  missing: string[];
  /** Badges whose first copies are not in increasing seq order. */
  outOfOrder: string[];
  /** First copies that arrived after a higher seq of the same badge (order violations, all badges together). */
  orderViolations: number;
  /** Badges whose records landed in more than one partition. */
  splitPartitions: string[];
}

/**
 * Checks what an independent consumer read: every (badge, seq) present, and per badge the
 * first copies in seq order within one partition. Duplicates (at-least-once) are counted.
 */
export function checkBadges(records: readonly ReadRecord[], badges: number, perBadge: number, parse: (r: ReadRecord) => { badge_id: string; seq: number } = defaultParse): BadgeCheck {
  const seen = new Map<string, Set<number>>();
  const lastFirst = new Map<string, number>();
  const partitions = new Map<string, Set<number>>();
  const outOfOrder = new Set<string>();
  let duplicates = 0;
  let orderViolations = 0;
  const sorted = [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  for (const r of sorted) {
    const { badge_id, seq } = parse(r);
    let s = seen.get(badge_id);
    if (!s) seen.set(badge_id, (s = new Set()));
    let p = partitions.get(badge_id);
    if (!p) partitions.set(badge_id, (p = new Set()));
    p.add(r.partition);
    if (s.has(seq)) {
      duplicates++;
      continue;
    }
    s.add(seq);
    const prev = lastFirst.get(badge_id) ?? -1;
    if (seq < prev) {
      outOfOrder.add(badge_id);
      orderViolations++;
    } else lastFirst.set(badge_id, seq);
  }
  const missing: string[] = [];
  for (let b = 0; b < badges; b++) {
    const id = badgeId(b);
    const s = seen.get(id);
    for (let q = 0; q < perBadge; q++) if (!s?.has(q)) missing.push(`${id}#${q}`);
  }
  let distinct = 0;
  for (const s of seen.values()) distinct += s.size;
  return {
    distinct,
    duplicates,
    missing,
    outOfOrder: [...outOfOrder],
    orderViolations,
    splitPartitions: [...partitions].filter(([, p]) => p.size > 1).map(([id]) => id),
  };
}

function defaultParse(r: ReadRecord): { badge_id: string; seq: number } {
  return JSON.parse(r.value ?? '{}') as { badge_id: string; seq: number };
}

/** One MQTT message to publish. */
export interface PublishItem {
  readonly topic: string;
  readonly payload: string | Buffer;
}

/**
 * Publishes `items` in this order at QoS 1 from one connection, `window` publishes in flight
 * (the broker delivers one client's messages in the order it received them). Resolves when the
 * broker acknowledged every publish.
 */
export async function publishMessages(url: string, items: readonly PublishItem[], opts: { window?: number; onProgress?: (published: number) => void | Promise<void> } = {}): Promise<number> {
  const client = await mqtt.connectAsync(url, { clientId: `pub-${process.pid}-${Date.now()}`, clean: true, reconnectPeriod: 500 });
  const window = opts.window ?? 200;
  const inflight = new Set<Promise<unknown>>();
  let n = 0;
  try {
    for (const it of items) {
      const p = client.publishAsync(it.topic, it.payload, { qos: 1 });
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
      n++;
      if (inflight.size >= window) await Promise.race(inflight);
      if (opts.onProgress) await opts.onProgress(n);
    }
    await Promise.all(inflight);
  } finally {
    await client.endAsync();
  }
  return n;
}
