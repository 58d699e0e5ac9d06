/**
 * Sparkplug `seq` checks. Every message an edge node publishes for itself or its devices
 * (NBIRTH, NDATA, DBIRTH, DDATA, DDEATH) carries `seq`, 0–255, one more than the previous one,
 * wrapping after 255; NBIRTH starts the count afresh. NDEATH (the broker publishes it as the
 * node's Will), commands and STATE carry none.
 *
 * The last seq per edge node is kept in memory only: writing it per message would cost a
 * durable commit per message. After a restart the first message of each node is therefore
 * not checked. A late message moves the expectation back to it, so one reordered message is
 * reported as out of order and the next as a gap, and a node that restarted its count without
 * an NBIRTH is reported once, not forever.
 */

/** Bounded set of anomaly kinds (a metric label). */
export type SeqAnomaly = 'gap' | 'out_of_order' | 'invalid';

export interface SeqVerdict {
  readonly anomaly: SeqAnomaly;
  /** What seq was expected (for gap and out_of_order). */
  readonly expected?: number;
}

const MAX_NODES = 100_000;

export class SeqTracker {
  private readonly last = new Map<string, number>();

  /** NBIRTH: the count starts again at its seq (0 per the specification). */
  birth(node: string, seq: number | null): SeqVerdict | undefined {
    if (seq === null || seq > 255) {
      this.last.delete(node);
      return { anomaly: 'invalid' };
    }
    this.set(node, seq);
    return undefined;
  }

  /** NDEATH: the node is gone; its next NBIRTH starts a new count. */
  death(node: string): void {
    this.last.delete(node);
  }

  /** A message that continues the node's count. Returns what is wrong with its seq, if anything. */
  next(node: string, seq: number | null): SeqVerdict | undefined {
    if (seq === null || seq > 255) return { anomaly: 'invalid' };
    const last = this.last.get(node);
    this.set(node, seq);
    if (last === undefined) return undefined;
    const expected = (last + 1) & 0xff;
    if (seq === expected) return undefined;
    // Up to 127 ahead: messages were missed. Otherwise it is behind: late or repeated.
    return { anomaly: ((seq - expected) & 0xff) < 128 ? 'gap' : 'out_of_order', expected };
  }

  private set(node: string, seq: number): void {
    // A runaway number of node ids must not grow memory: forgetting costs only one unchecked message per node.
    if (this.last.size >= MAX_NODES && !this.last.has(node)) this.last.clear();
    this.last.set(node, seq);
  }
}
