import type { InboundMessage } from '../mqtt/types.js';
import type { DeferredResult, TransformResult } from './types.js';

interface Held {
  readonly msg: InboundMessage;
  result: TransformResult;
  /** For a deferred result: its `ready` has settled. */
  settled: boolean;
}

/**
 * Records that wait for their value (a deferred result: the schema registry is needed and cannot
 * be reached), and every later record of the same topic and key behind them, so a key's records
 * still reach their partition in receive order. Other keys, and other topics, flow on. Nothing here is acknowledged: held messages count
 * as in flight, so the MQTT source's bound (MAX_IN_FLIGHT_MESSAGES) also bounds this, and a
 * stop leaves them to the broker, which redelivers them to the next session.
 */
export class HeldRecords {
  /** By topic and key (`topic \0 key`): order matters within a partition, and a partition is one topic's. */
  private readonly byKey = new Map<string, Held[]>();
  private held = 0;
  private closed = false;

  /** `release` gets each record in key order once nothing before it waits; it is handled as if just transformed. */
  constructor(private readonly release: (msg: InboundMessage, result: TransformResult) => void) {}

  /** Records held now. */
  get count(): number {
    return this.held;
  }

  /** True when `r` must wait: it is deferred itself, or its key has records waiting. */
  mustWait(r: TransformResult): boolean {
    if (r.kind === 'deferred') return true;
    return r.kind === 'record' && this.held > 0 && this.byKey.has(heldKey(r.topic, r.key));
  }

  hold(msg: InboundMessage, r: TransformResult): void {
    const key = r.kind === 'record' || r.kind === 'deferred' ? heldKey(r.topic, r.key) : '';
    let q = this.byKey.get(key);
    if (!q) this.byKey.set(key, (q = []));
    const h: Held = { msg, result: r, settled: r.kind !== 'deferred' };
    q.push(h);
    this.held++;
    if (r.kind === 'deferred') this.watch(key, h, r);
  }

  /** No more releases (the bridge is stopping; the writers may be closed). */
  close(): void {
    this.closed = true;
  }

  private watch(key: string, h: Held, r: DeferredResult): void {
    void r.ready.then(() => {
      h.settled = true;
      this.drain(key);
    });
  }

  private drain(key: string): void {
    if (this.closed) return;
    const q = this.byKey.get(key);
    if (!q) return;
    while (q.length > 0) {
      const head = q[0] as Held;
      if (!head.settled) return;
      if (head.result.kind === 'deferred') {
        const next = head.result.resolve();
        if (next.kind === 'deferred') {
          // The subject is waiting again (the registry went away once more): stay at the head.
          head.result = next;
          head.settled = false;
          this.watch(key, head, next);
          return;
        }
        head.result = next;
      }
      q.shift();
      this.held--;
      this.release(head.msg, head.result);
    }
    this.byKey.delete(key);
  }
}

function heldKey(topic: string, key: string | null): string {
  return key === null ? `${topic}\u0000` : `${topic}\u0000\u0001${key}`;
}
