import type { MqttClient } from 'mqtt';
import { BridgeError } from '../errors.js';

/**
 * The keepalive seam (issue 9: back-pressure without disconnects).
 *
 * In mqtt 5.16 the KeepaliveManager ticks every keepalive/2: on the 2nd tick since its last
 * reschedule it calls `client.sendPing()`, on the 3rd `client.onKeepaliveTimeout()`, which
 * destroys the connection. Only an incoming PINGRESP (or ack) reschedules it. But MQTT.js
 * processes incoming packets one at a time, and while the bridge holds `handleMessage`'s
 * callback (intake paused at the in-flight bound, spool blocked) it processes none: the
 * broker's PINGRESP waits unread in the socket behind the PUBLISH packets we are not reading.
 * Without this seam the client then "times out" a healthy connection every 1.5 × keepalive
 * and reconnects in a loop for as long as the pause lasts.
 *
 * We replace `onKeepaliveTimeout` on the client instance: while `deaf()` says we are the ones
 * not reading (intake held now, or held within the last 1.5 × keepalive so the PINGRESP may
 * still sit behind the backlog), the timeout sends another PINGREQ and restarts the keepalive
 * cycle instead of dropping the connection. The broker keeps hearing from us at least once per
 * keepalive (its own limit is 1.5 × keepalive), so it keeps the connection too. While we are
 * reading, a missing PINGRESP still ends the connection exactly as before.
 *
 * While deaf, a dead connection is still noticed: the PINGREQs we keep writing fail on a socket
 * the peer has reset or closed, and MQTT.js's 'close' handling takes over.
 *
 * Private API: pinned by the exact mqtt version in package.json and by
 * test/unit/keepalive-seam.test.ts, which fails if an upgrade changes either half.
 */
export interface KeepaliveSeam {
  /** Keepalive timeouts turned into another PINGREQ because intake was held (a count, for tests and logs). */
  readonly extended: number;
}

type Hooks = { onKeepaliveTimeout?: () => void; sendPing?: () => void; reschedulePing?: (force?: boolean) => void };

export function installKeepaliveSeam(client: MqttClient, deaf: () => boolean): KeepaliveSeam {
  const c = client as unknown as Hooks;
  const original = c.onKeepaliveTimeout;
  if (typeof original !== 'function' || typeof c.sendPing !== 'function' || typeof c.reschedulePing !== 'function') {
    throw new BridgeError(
      'BRIDGE_ERR_MQTT_SEAM',
      'mqtt client has no onKeepaliveTimeout/sendPing/reschedulePing; the keepalive seam needs the pinned mqtt version (see package.json)',
    );
  }
  let extended = 0;
  c.onKeepaliveTimeout = function (this: Hooks) {
    if (!deaf()) {
      original.call(this);
      return;
    }
    extended++;
    // Our PINGRESPs are unread behind the held PUBLISHes, not missing: keep the broker's
    // keepalive satisfied and start a new cycle (next PINGREQ in one keepalive).
    this.sendPing!();
    this.reschedulePing!(true);
  };
  return {
    get extended() {
      return extended;
    },
  };
}
