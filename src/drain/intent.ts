import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

/**
 * The intent to drain for a scale-down: a marker file beside the spool (`<SPOOL_PATH>.drain-on-stop`),
 * so it lives on the replica's own volume and a restart still finds it. Set in the pod with
 * `mqtt-kafka-spool drain-on-stop` (`--cancel` removes it); read by the bridge when SIGTERM
 * arrives. A replica with the marker drains on stop (docs/operations.md, "Scaling down"):
 * unsubscribes, makes durable what the broker had queued for it, empties its spool to Kafka,
 * ends its session, removes the marker and exits 0.
 */
export const drainIntentPath = (spoolPath: string): string => `${spoolPath}.drain-on-stop`;

export function hasDrainIntent(spoolPath: string): boolean {
  return existsSync(drainIntentPath(spoolPath));
}

/** Writes the marker (with when and by whom, for people reading the volume). */
export function setDrainIntent(spoolPath: string, now = new Date()): string {
  const path = drainIntentPath(spoolPath);
  writeFileSync(path, `${JSON.stringify({ setAt: now.toISOString(), by: 'mqtt-kafka-spool drain-on-stop' })}\n`, { mode: 0o640 });
  return path;
}

export function clearDrainIntent(spoolPath: string): boolean {
  const path = drainIntentPath(spoolPath);
  if (!existsSync(path)) return false;
  rmSync(path, { force: true });
  return true;
}

/** When the marker was set, if it was written by setDrainIntent. */
export function drainIntentSetAt(spoolPath: string): string | undefined {
  try {
    const v = JSON.parse(readFileSync(drainIntentPath(spoolPath), 'utf8')) as { setAt?: unknown };
    return typeof v.setAt === 'string' ? v.setAt : undefined;
  } catch {
    return undefined;
  }
}
