import type { MqttClient } from 'mqtt';
import { BridgeError } from '../errors.js';

/**
 * The PUBACK seam (DESIGN §4). In mqtt 5.x, handlePublish() for a QoS 1 message calls
 * `client.handleMessage(packet, cb)` and, once `cb` runs, sends the PUBACK through
 * `client._sendPacket({cmd: 'puback', messageId}, done)`; the next incoming packet is processed
 * only after `done`. We answer `done` at once without writing, so reading goes on, and write the
 * real PUBACK later ourselves, once the message is durable.
 *
 * Our PUBACKs are written as raw bytes, many per write: MQTT.js writes every packet as several
 * small chunks, and at tens of thousands of PUBACKs a second against a busy broker those chunks
 * piled up by the hundred thousand in the socket's write buffer (measured: 700k buffered chunks,
 * 100+ MB of heap). A PUBACK with reason Success and no properties is the same 4 bytes in MQTT
 * 3.1.1 and 5 (MQTT 5 §3.4.2.1: remaining length 2). When the socket's buffer is full, `blocked`
 * turns true until it drains; the source then stops reading, so unsent PUBACKs stay bounded.
 *
 * This relies on private API, so the mqtt version is pinned exactly in package.json and
 * test/unit/puback-seam.test.ts fails if an upgrade changes either half of the seam.
 */
export interface PubackSeam {
  /** Queues a PUBACK for `packetId` on the current connection; written on the next tick, batched. */
  sendPuback(packetId: number): void;
  /**
   * Writes the queued PUBACKs now instead of on the next tick (graceful stop: they must be in
   * the socket before DISCONNECT, which MQTT.js writes at once). Resolves once the socket has
   * taken them (its write callback), or at once when nothing was queued.
   */
  flush(): Promise<void>;
  /** After DISCONNECT: PUBACKs are no longer written (a late one would follow the DISCONNECT and be ignored). */
  stop(): void;
  /** True while the socket's write buffer is full. */
  readonly blocked: boolean;
}

type SendPacket = (packet: Record<string, unknown>, cb?: (err?: Error) => void, cbStorePut?: unknown, noStore?: boolean) => void;
type Stream = { write(b: Buffer, cb?: (err?: Error | null) => void): boolean; once(ev: 'drain', cb: () => void): unknown };

export function installPubackSeam(client: MqttClient, onUnblocked: () => void = () => undefined): PubackSeam {
  const c = client as unknown as { _sendPacket?: SendPacket; handleMessage?: unknown; stream?: Stream };
  const original = c._sendPacket;
  if (typeof original !== 'function' || typeof c.handleMessage !== 'function') {
    throw new BridgeError(
      'BRIDGE_ERR_MQTT_SEAM',
      'mqtt client has no _sendPacket/handleMessage; the PUBACK seam needs the pinned mqtt version (see package.json)',
    );
  }
  c._sendPacket = function (this: unknown, packet, cb, cbStorePut, noStore) {
    if (packet.cmd === 'puback') {
      // MQTT.js's own PUBACK: swallowed; the AckTracker sends it once the message is durable.
      cb?.();
      return;
    }
    original.call(this, packet, cb, cbStorePut, noStore);
  };

  let pending: number[] = [];
  let pendingStream: Stream | undefined;
  // The socket whose write buffer is full. Blocking is tied to that socket: if the connection
  // drops, its 'drain' never comes, and the next connection must not inherit the block.
  let blockedStream: Stream | undefined;
  let stopped = false;

  const flush = (onWritten?: () => void): void => {
    const ids = pending;
    const stream = pendingStream;
    pending = [];
    pendingStream = undefined;
    // The connection changed since these were queued: they belong to a dead session's socket.
    if (stopped || !stream || stream !== c.stream || ids.length === 0) {
      onWritten?.();
      return;
    }
    const buf = Buffer.allocUnsafe(ids.length * 4);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      buf[i * 4] = 0x40; // PUBACK
      buf[i * 4 + 1] = 0x02; // remaining length
      buf[i * 4 + 2] = id >> 8;
      buf[i * 4 + 3] = id & 0xff;
    }
    // The callback also runs when the write fails (the connection is gone): nothing to wait for then.
    if (!stream.write(buf, onWritten && (() => onWritten())) && blockedStream !== stream) {
      blockedStream = stream;
      stream.once('drain', () => {
        if (blockedStream === stream) blockedStream = undefined;
        onUnblocked();
      });
    }
  };

  return {
    sendPuback(packetId: number) {
      const stream = c.stream;
      if (!stream || stopped) return;
      if (pendingStream && pendingStream !== stream) flush();
      if (pending.length === 0) process.nextTick(flush);
      pendingStream = stream;
      pending.push(packetId);
    },
    flush() {
      return new Promise<void>((resolve) => flush(resolve));
    },
    stop() {
      stopped = true;
      pending = [];
      pendingStream = undefined;
    },
    get blocked() {
      return blockedStream !== undefined && blockedStream === c.stream;
    },
  };
}
