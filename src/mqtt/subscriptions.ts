/**
 * Subscriptions follow the configuration (issue 9).
 *
 * A persistent session (clean: false) keeps every subscription the client ever made, across
 * restarts: restarting with a different MQTT_TOPIC (or routes file) would keep receiving the old
 * filters' messages. So the source remembers what it subscribed, per client id, in the spool
 * database's durable key-value state, and after a CONNACK with a present session unsubscribes
 * the filters it remembers and the configuration no longer has.
 *
 * Messages the broker had already queued for a removed filter are still delivered (right after
 * CONNACK, and — MQTT 5 §3.10.4 — even after the UNSUBACK, for what was queued before it). They
 * are recognised by topic: a message whose topic matches a removed filter and none of the
 * configured ones can only have come through the removed subscription. The bridge then applies
 * MQTT_REMOVED_FILTER_POLICY (forward, or dead-letter with reason `unsubscribed`); nothing is
 * dropped silently. Removed filters stay remembered as such (at most MAX_REMOVED), so a crash
 * before those queued messages arrived does not let them through as ordinary messages later.
 *
 * Stored value (JSON) under `mqtt/subscriptions/<client id>`:
 *   { "filters": { "<filter>": <qos>, … }, "removed": ["<filter>", …] }
 * `filters` is written before SUBSCRIBE (so a crash right after it still knows what the broker
 * may hold) and narrowed after the UNSUBACK.
 */

import { levelsCover } from './topic-filter.js';

/** The part of the spool's StateStore the source needs. */
export interface KeyValueStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
}

export interface RememberedSubscriptions {
  /** Filters the broker session may hold for this client id, with their QoS. */
  readonly filters: Readonly<Record<string, number>>;
  /** Filters unsubscribed because the configuration dropped them; messages queued for them may still arrive. */
  readonly removed: readonly string[];
}

const MAX_REMOVED = 100;

export const subscriptionsKey = (clientId: string): string => `mqtt/subscriptions/${clientId}`;

/** Reads what was remembered; undefined when nothing was (first run, or an older version). A corrupt value counts as nothing. */
export function loadRemembered(store: KeyValueStore, clientId: string): RememberedSubscriptions | undefined {
  const raw = store.get(subscriptionsKey(clientId));
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw) as { filters?: unknown; removed?: unknown };
    const filters: Record<string, number> = {};
    if (v.filters && typeof v.filters === 'object') {
      for (const [f, q] of Object.entries(v.filters as Record<string, unknown>)) if (typeof q === 'number') filters[f] = q;
    }
    const removed = Array.isArray(v.removed) ? v.removed.filter((x): x is string => typeof x === 'string') : [];
    return { filters, removed };
  } catch {
    return undefined;
  }
}

export function saveRemembered(store: KeyValueStore, clientId: string, r: RememberedSubscriptions): void {
  const removed = [...new Set(r.removed)].slice(-MAX_REMOVED);
  store.set(subscriptionsKey(clientId), JSON.stringify({ filters: r.filters, removed }));
}

/** What to tell the broker after a CONNACK. */
export interface SubscriptionPlan {
  /** Remembered filters the configuration no longer has: UNSUBSCRIBE them (only with a present session). */
  readonly unsubscribe: readonly string[];
  /** Configured filters not remembered as subscribed (new since the last run). */
  readonly added: readonly string[];
  /** Filters whose late messages get the removed-filter policy: earlier removals plus `unsubscribe`, minus what is configured again. */
  readonly removed: readonly string[];
}

export function planSubscriptions(remembered: RememberedSubscriptions | undefined, desired: readonly string[], sessionPresent: boolean): SubscriptionPlan {
  const want = new Set(desired);
  const had = Object.keys(remembered?.filters ?? {});
  const added = desired.filter((f) => !(f in (remembered?.filters ?? {})));
  if (!sessionPresent) {
    // No session: the broker holds no subscription and no queued message for this client.
    return { unsubscribe: [], added, removed: [] };
  }
  const unsubscribe = had.filter((f) => !want.has(f));
  const removed = [...new Set([...(remembered?.removed ?? []), ...unsubscribe])].filter((f) => !want.has(f));
  return { unsubscribe, added, removed };
}

/**
 * Recognises messages that came through a removed filter: the topic matches a removed filter
 * and no configured filter. Costs nothing while no filter was removed.
 */
export class RemovedFilterMatcher {
  private removed: { filter: string; levels: string[] }[] = [];
  private readonly desired: string[][];

  constructor(desired: readonly string[]) {
    this.desired = desired.map(filterLevels);
  }

  set(removed: readonly string[]): void {
    this.removed = removed.map((filter) => ({ filter, levels: filterLevels(filter) }));
  }

  get active(): boolean {
    return this.removed.length > 0;
  }

  /** The removed filter this topic came through, or undefined when it is a configured one's (or none's). */
  match(topic: string): string | undefined {
    if (this.removed.length === 0) return undefined;
    const t = topic.split('/');
    const hit = this.removed.find((r) => levelsCover(r.levels, t));
    if (!hit) return undefined;
    return this.desired.some((d) => levelsCover(d, t)) ? undefined : hit.filter;
  }
}

/** MQTT topic matching (MQTT 5 §4.7): '+' one level, '#' the rest (including the parent level); wildcards at the start never match '$' topics. */
export function topicMatches(filter: string, topic: string): boolean {
  return levelsCover(filterLevels(filter), topic.split('/'));
}

/** Filter levels, without a shared subscription's `$share/<group>/` prefix. */
function filterLevels(filter: string): string[] {
  const levels = filter.split('/');
  return levels[0] === '$share' && levels.length > 2 ? levels.slice(2) : levels;
}
