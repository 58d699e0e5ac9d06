import type { MqttClient } from 'mqtt';
import { BridgeError } from '../errors.js';

/**
 * The PUBACK seam (DESIGN §4). In mqtt 5.x, handlePublish() for a QoS 1 message calls
 * `client.handleMessage(packet, cb)` and, once `cb` runs, sends the PUBACK through
 * `client._sendPacket({cmd: 'puback', messageId}, done)`; the next incoming packet is processed
 * only after `done`. We answer `done` at once without writing, so reading goes on, and send the
 * real PUBACK later ourselves through the same private `_sendPacket`.
 *
 * This relies on private API, so the mqtt version is pinned exactly in package.json and
 * test/unit/puback-seam.test.ts fails if an upgrade changes either half of the seam.
 */
export interface PubackSeam {
  /** Writes a PUBACK for `packetId` on the current connection. */
  sendPuback(packetId: number): void;
}

type SendPacket = (packet: Record<string, unknown>, cb?: (err?: Error) => void, cbStorePut?: unknown, noStore?: boolean) => void;

export function installPubackSeam(client: MqttClient): PubackSeam {
  const c = client as unknown as { _sendPacket?: SendPacket; handleMessage?: unknown };
  const original = c._sendPacket;
  if (typeof original !== 'function' || typeof c.handleMessage !== 'function') {
    throw new BridgeError(
      'BRIDGE_ERR_MQTT_SEAM',
      'mqtt client has no _sendPacket/handleMessage; the PUBACK seam needs the pinned mqtt version (see package.json)',
    );
  }
  let ours = false;
  c._sendPacket = function (this: unknown, packet, cb, cbStorePut, noStore) {
    if (packet.cmd === 'puback' && !ours) {
      // MQTT.js's own PUBACK: swallowed; the AckTracker sends it once the message is durable.
      cb?.();
      return;
    }
    original.call(this, packet, cb, cbStorePut, noStore);
  };
  return {
    sendPuback(packetId: number) {
      ours = true;
      try {
        original.call(client, { cmd: 'puback', messageId: packetId });
      } finally {
        ours = false;
      }
    },
  };
}
