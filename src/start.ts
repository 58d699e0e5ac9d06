import { config as loadDotenv } from 'dotenv';
import { loadConfig } from './config/load.js';
import { hasDrainIntent } from './drain/intent.js';
import { BridgeError, ConfigError, describeError } from './errors.js';
import { runBridge, type RunningBridge } from './main.js';
import { createLogger } from './observability/logger.js';

/**
 * Entry point: `npm start`. Reads the environment (and .env, which never overrides what is
 * already set), validates it once, runs the bridge, stops gracefully on SIGTERM/SIGINT.
 * Exit codes: 0 clean stop, 1 forced or failed stop, 2 invalid configuration, 3 spool unusable.
 */
async function main(): Promise<void> {
  loadDotenv({ quiet: true });
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mqtt-kafka-spool: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  // Signal handlers go on before anything starts: as PID 1 in a container, node ignores SIGTERM
  // without one, and a pod stopped while it starts would wait out its whole grace period.
  let running: RunningBridge | undefined;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (!running) {
      logger.info({ signal }, 'stopping before start finished; nothing was acknowledged yet');
      process.exit(0);
    }
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now; unacknowledged messages will be redelivered by the broker');
      process.exit(1);
    }
    // Marked with `drain-on-stop` (a scale-down): drain instead of the ordinary stop.
    const drain = hasDrainIntent(config.spool.path);
    logger.info({ signal, timeoutMs: config.shutdownTimeoutMs, drainForScaleDown: drain }, drain ? 'stopping: draining for scale-down' : 'stopping: draining in-flight messages');
    const timer = setTimeout(() => {
      logger.error({ code: drain ? 'BRIDGE_ERR_DRAIN_INCOMPLETE' : 'BRIDGE_ERR_SHUTDOWN_TIMEOUT' }, 'graceful stop took longer than SHUTDOWN_TIMEOUT_MS; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    timer.unref();
    (drain ? running.drain().then((o) => o.complete) : running.stop().then(() => true)).then(
      (complete) => {
        logger.info('stopped');
        process.exit(complete ? 0 : 1);
      },
      (err: unknown) => {
        logger.error({ err: describeError(err) }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    running = await runBridge(config, logger);
    if (hasDrainIntent(config.spool.path)) {
      logger.warn({ spool: config.spool.path }, 'this replica is marked drain-on-stop: its next stop drains it for a scale-down (cancel: drain-on-stop --cancel)');
    }
  } catch (err) {
    const code = err instanceof BridgeError && err.code === 'BRIDGE_ERR_SPOOL_OPEN' ? 3 : err instanceof ConfigError ? 2 : 1;
    logger.fatal({ err: describeError(err) }, 'cannot start');
    process.stderr.write(`mqtt-kafka-spool: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(code);
  }
}

void main();
