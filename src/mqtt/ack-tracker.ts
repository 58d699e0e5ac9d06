/**
 * Ordered ack finalizer.
 *
 * Every message gets a receive sequence number (consecutive integers). When a message is
 * durable it is settled; a QoS 1 PUBACK is released only when every message received before it
 * on the same connection has been settled too, because MQTT requires PUBACKs in the order the
 * PUBLISH packets arrived (MQTT 5 §4.6). QoS 0 messages hold a place in the order (they count
 * towards the in-flight bound) but release nothing.
 *
 * Entries are kept in a plain array used as a queue; seq - headSeq is the index.
 */
export interface AckEntry {
  /** MQTT packet identifier to PUBACK, or -1 for QoS 0. */
  readonly packetId: number;
  /** Connection generation the message arrived on; a PUBACK is only valid on that connection. */
  readonly generation: number;
  /** Payload bytes, for the in-flight byte bound. */
  readonly bytes: number;
  /** When it was received (performance.now(), monotonic), for the read-ahead bound's age. */
  readonly atMs: number;
  settled: boolean;
}

export class AckTracker {
  private entries: AckEntry[] = [];
  private head = 0;
  private headSeq = 0;
  private nextSeq = 0;
  private settledCount = 0;
  private unackedCount = 0;
  private bytesCount = 0;

  /** @param release sends one PUBACK; called in receive order. */
  constructor(private readonly release: (packetId: number, generation: number) => void) {}

  /** Registers a received message; returns its seq. */
  push(packetId: number, generation: number, bytes = 0, atMs = 0): number {
    this.entries.push({ packetId, generation, bytes, atMs, settled: false });
    this.bytesCount += bytes;
    if (packetId >= 0) this.unackedCount++;
    return this.nextSeq++;
  }

  /** Marks `seq` durable and releases every PUBACK that is now in order. Unknown or repeated seqs are ignored. */
  settle(seq: number): void {
    const idx = this.head + (seq - this.headSeq);
    if (seq < this.headSeq || idx >= this.entries.length) return;
    const e = this.entries[idx];
    if (!e || e.settled) return;
    e.settled = true;
    this.settledCount++;
    if (seq === this.headSeq) this.drain();
  }

  private drain(): void {
    let e = this.entries[this.head];
    while (e && e.settled) {
      this.head++;
      this.headSeq++;
      this.settledCount--;
      this.bytesCount -= e.bytes;
      if (e.packetId >= 0) {
        this.unackedCount--;
        this.release(e.packetId, e.generation);
      }
      e = this.entries[this.head];
    }
    // Compact now and then so the array does not grow without bound.
    if (this.head > 4096 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  /** Messages pushed and not yet released (settled but waiting behind an earlier one count too). */
  get inFlight(): number {
    return this.entries.length - this.head;
  }

  /** When the oldest message counted by inFlight was received (push's atMs); undefined when none is. */
  get oldestAtMs(): number | undefined {
    return this.entries[this.head]?.atMs;
  }

  /** Payload bytes of the messages counted by inFlight. */
  get inFlightBytes(): number {
    return this.bytesCount;
  }

  /** Settled entries still waiting for an earlier one. */
  get waiting(): number {
    return this.settledCount;
  }

  /** QoS 1 messages whose PUBACK has not gone out. */
  get unacked(): number {
    return this.unackedCount;
  }

  /** Next seq that push() will return. */
  get next(): number {
    return this.nextSeq;
  }
}
