import mqtt, { type IClientOptions } from 'mqtt';
import type { Logger } from 'pino';
import type { BridgeDrainResult } from '../bridge/bridge.js';
import type { Config } from '../config/types.js';
import { describeError } from '../errors.js';
import { clearDrainIntent } from './intent.js';

/**
 * Drain for a scale-down: what a replica marked with `drain-on-stop` does on SIGTERM instead of
 * the ordinary stop (docs/operations.md, "Scaling down: drain first").
 *
 *  1. UNSUBSCRIBE every filter: the broker hands this replica nothing new (in shared mode the
 *     other members of the group get it).
 *  2. Take in what the broker had already queued for this session, until nothing has arrived
 *     for DRAIN_QUIET_MS and everything received is durable and PUBACKed.
 *  3. Replay the spool to Kafka until it is empty.
 *  4. The ordinary close (writers, spool, PUBACKs confirmed, DISCONNECT).
 *  5. End the session on the broker: connect once more with the same client id and a clean
 *     start, and disconnect (MQTT 5: session expiry 0; 3.1.1: clean session). Only when steps 1
 *     and 2 finished and no PUBACK was left held: otherwise messages may still wait in the
 *     session (or still be routed to it), and ending it would drop them, so it is kept (and
 *     reported).
 *  6. Check on disk that the spool has no rows; then remove the mark.
 *
 * Complete (exit 0) when the session was ended and the spool is empty; otherwise
 * BRIDGE_ERR_DRAIN_INCOMPLETE (exit 1) with what is left. Nothing is lost either way: what is
 * left is in the spool on the replica's volume or in its session on the broker, and starting
 * the replica again delivers it.
 */
export const DRAIN_QUIET_MS = 2000;

/** Time kept at the end of SHUTDOWN_TIMEOUT_MS for the close and the session's end. */
const CLOSE_RESERVE_MS = 10_000;
/** Of that, the part kept for ending the session (endMqttSession's own timeout, and a margin). */
const END_SESSION_MS = 7_500;

export interface DrainDeps {
  readonly config: Config;
  readonly logger: Logger;
  /** The bridge's drain (src/bridge/bridge.ts). */
  readonly drainBridge: (opts: { deadlineMs: number; closeByMs: number; quietMs: number }) => Promise<BridgeDrainResult>;
  /** Ends the MQTT session (default: endMqttSession with the bridge's client options). */
  readonly endSession: () => Promise<void>;
  /** Rows left in the (closed) spool file. */
  readonly countSpoolRows: () => number;
  readonly quietMs?: number;
}

export interface DrainOutcome {
  readonly complete: boolean;
  readonly sessionEnded: boolean;
  readonly spoolRows: number;
  readonly bridge: BridgeDrainResult;
  readonly ms: number;
}

export async function drainForScaleDown(deps: DrainDeps): Promise<DrainOutcome> {
  const log = deps.logger.child({ component: 'drain' });
  const t0 = Date.now();
  const budget = deps.config.shutdownTimeoutMs;
  const deadlineMs = t0 + Math.max(budget - CLOSE_RESERVE_MS, Math.floor(budget / 2));
  log.info({ deadlineInMs: deadlineMs - t0 }, 'draining for scale-down: unsubscribing, taking in what the session holds, emptying the spool');
  // The close (writers, PUBACKs, DISCONNECT) ends in time for the session's end to fit before the
  // process-level stop timer; the process never exits halfway through either.
  const closeByMs = Math.max(t0 + budget - END_SESSION_MS, deadlineMs);
  const result = await deps.drainBridge({ deadlineMs, closeByMs, quietMs: deps.quietMs ?? DRAIN_QUIET_MS });
  let sessionEnded = false;
  // Only an unsubscribed, quiet session with no PUBACK held can hold nothing more: end it then.
  if (result.unsubscribed && result.quiet && result.unacked === 0) {
    try {
      await deps.endSession();
      sessionEnded = true;
    } catch (err) {
      log.warn({ err: describeError(err) }, 'drain: could not end the MQTT session; it stays on the broker until it expires');
    }
  }
  let spoolRows: number;
  try {
    spoolRows = deps.countSpoolRows();
  } catch (err) {
    log.error({ err: describeError(err) }, 'drain: could not read the spool to check it is empty');
    spoolRows = -1;
  }
  const complete = sessionEnded && spoolRows === 0;
  const ms = Date.now() - t0;
  const fields = { ms, spoolRows, sessionEnded, unsubscribed: result.unsubscribed, quiet: result.quiet, unacked: result.unacked, spoolPath: deps.config.spool.path };
  if (complete) {
    clearDrainIntent(deps.config.spool.path);
    log.info(fields, 'drained for scale-down: spool empty, session ended; the volume can be deleted');
  } else {
    log.error(
      { ...fields, code: 'BRIDGE_ERR_DRAIN_INCOMPLETE' },
      `drain for scale-down incomplete: ${spoolRows !== 0 ? `${spoolRows < 0 ? 'unknown' : spoolRows} records left in the spool` : 'spool empty'}, ` +
        `${sessionEnded ? 'session ended' : 'session kept on the broker (messages may wait in it)'}. Nothing is lost: keep the volume and start this replica again`,
    );
  }
  return { complete, sessionEnded, spoolRows, bridge: result, ms };
}

/**
 * Ends this client id's session on the broker: a connection with a clean start and no session
 * expiry replaces the old session (and its subscriptions and queue) and ends at its DISCONNECT.
 */
export async function endMqttSession(config: Config['mqtt'], clientOptions: IClientOptions = {}, timeoutMs = END_SESSION_MS - 500): Promise<void> {
  const c = mqtt.connect(config.url, {
    clientId: config.clientId,
    clean: true,
    protocolVersion: config.protocolVersion,
    username: config.username,
    password: config.password,
    keepalive: config.keepaliveS,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...(config.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 0 } } : {}),
    ...clientOptions,
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no CONNACK within ${timeoutMs} ms`)), timeoutMs);
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    await c.endAsync();
  } catch (err) {
    c.end(true);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
