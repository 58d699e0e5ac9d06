import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { VARS_BY_NAME } from '../config/spec.js';
import { clearDrainIntent, setDrainIntent } from './intent.js';

/**
 * `mqtt-kafka-spool drain-on-stop [--cancel]`: marks this replica to drain for a scale-down when
 * it is next stopped (or removes the mark). Run in the bridge's pod or container, where
 * SPOOL_PATH is the running bridge's (`kubectl exec <pod> -- node dist/cli.js drain-on-stop`).
 * Reads SPOOL_PATH from `env` (the caller loads .env first, as the bridge does). Exit codes: 0 done,
 * 2 usage or no spool directory.
 */
export function drainOnStopCommand(args: readonly string[], env: NodeJS.ProcessEnv = process.env, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): number {
  const unknown = args.filter((a) => a !== '--cancel');
  if (unknown.length > 0) {
    out(`mqtt-kafka-spool drain-on-stop: unknown argument ${unknown.join(' ')} (usage: drain-on-stop [--cancel])`);
    return 2;
  }
  // Read through the setting's own schema (trimmed, default when empty), as the bridge reads it:
  // the mark must land beside the spool the bridge opens.
  const spec = VARS_BY_NAME.get('SPOOL_PATH')!;
  const parsed = spec.schema.safeParse(env.SPOOL_PATH || spec.default);
  const spoolPath = resolve(parsed.success ? String(parsed.data) : spec.default!);
  if (!existsSync(dirname(spoolPath))) {
    out(`mqtt-kafka-spool drain-on-stop: the spool directory ${dirname(spoolPath)} does not exist (is SPOOL_PATH the bridge's?)`);
    return 2;
  }
  if (args.includes('--cancel')) {
    const removed = clearDrainIntent(spoolPath);
    out(removed ? `drain-on-stop cancelled for the spool ${spoolPath}: a stop is an ordinary stop again` : `no drain-on-stop mark for the spool ${spoolPath}`);
    return 0;
  }
  const marker = setDrainIntent(spoolPath);
  out(
    `drain-on-stop set (${marker}): on its next SIGTERM this replica unsubscribes, takes in what the broker queued for it, ` +
      `empties its spool to Kafka, ends its MQTT session and exits. Now scale down; cancel with drain-on-stop --cancel.`,
  );
  return 0;
}
