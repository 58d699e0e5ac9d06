import type { Logger } from 'pino';
import { Bridge } from './bridge/bridge.js';
import { createDefaultMapping } from './bridge/mapping.js';
import { compileRoutes, loadRoutesFile } from './bridge/routes/index.js';
import type { Transform } from './bridge/types.js';
import type { Config } from './config/types.js';
import { drainForScaleDown, endMqttSession, type DrainOutcome } from './drain/drain.js';
import { ConfigError } from './errors.js';
import { createKafkaFactory } from './kafka/platformatic-client.js';
import { buildKafkaSecurity } from './kafka/security.js';
import { applySharedGroup } from './mqtt/shared-group.js';
import { createMqttSource } from './mqtt/source.js';
import { createGroupSource, type GroupSource } from './sessions/source.js';
import { buildMqttClientOptions } from './mqtt/tls.js';
import { redactUrl } from './observability/logger.js';
import { startHttpServer } from './observability/http.js';
import { Telemetry } from './observability/telemetry.js';
import { IDLE_RELEASE_REPEAT_MS, IdleMemoryRelease } from './memory/idle-release.js';
import { countSpoolRowsOnDisk, openSqliteSpool } from './spool/sqlite-spool.js';
import { startRegistryFor } from './registry/wiring.js';

/** The routes file's transform when ROUTES_FILE is set (validated here, before anything connects), else the default mapping. */
export function buildTransform(config: Config): Transform {
  const m = config.mapping;
  if (m.routesFile) return loadRoutesFile(m.routesFile, { separator: m.separator, maxMessageBytes: m.maxMessageBytes });
  if (m.format === 'avro' || m.format === 'protobuf' || m.format === 'json_schema') {
    // MESSAGE_FORMAT through the registry: the default mapping as a one-rule routes file.
    const s = m.schema;
    const schema = { ...(s?.file ? { file: s.file } : {}), auto_register: s?.autoRegister ?? true, ...(s?.version ? { version: s.version } : {}), ...(s?.message ? { message: s.message } : {}) };
    const doc = { routes: [{ name: 'default', match: '#', topic: m.topic ?? '{topic_kafka}', format: m.format, schema }] };
    return compileRoutes(doc, 'MESSAGE_FORMAT', { separator: m.separator, maxMessageBytes: m.maxMessageBytes });
  }
  return createDefaultMapping({ topic: m.topic, separator: m.separator, format: m.format, subscriptions: config.mqtt.topics });
}

export interface RunningBridge {
  readonly bridge: Bridge;
  readonly httpPort: number;
  /** Graceful stop (idempotent); HTTP closes last. */
  stop(): Promise<void>;
  /** Drain for a scale-down instead of the ordinary stop (src/drain/drain.ts); HTTP closes last. */
  drain(): Promise<DrainOutcome>;
}

/** Builds every component from the validated config and starts them. Throws BridgeError on a fatal start problem. */
export async function runBridge(config: Config, logger: Logger, opts: { transform?: Transform } = {}): Promise<RunningBridge> {
  for (const w of config.warnings) logger.warn(w);
  const telemetry = new Telemetry(logger);
  const transform = opts.transform ?? buildTransform(config);
  // MQTT_TOPIC wins; otherwise subscribe to exactly what the routes need. With MQTT_SHARED_GROUP
  // each filter becomes $share/<group>/<filter> (messages still arrive under their own topics).
  const filters = config.mqtt.topics.length > 0 ? config.mqtt.topics : transform.subscriptions;
  let topics: string[];
  try {
    topics = applySharedGroup(filters, config.mqtt.sharedGroup);
  } catch (err) {
    throw new ConfigError([(err as Error).message]);
  }
  const mqttConfig = { ...config.mqtt, topics };
  if (config.mqtt.sharedGroup !== undefined && transform.attach !== undefined) {
    // Sparkplug B: the BIRTH a DATA message needs was seen by whichever replica got it.
    logger.warn(
      { sharedGroup: config.mqtt.sharedGroup },
      'the routes decode Sparkplug B, whose BIRTH state is kept per replica: in shared mode a DATA message may reach a replica that did not see its BIRTH (header sparkplug.unresolved) unless the broker keeps each publisher on one member (EMQX hash_clientid)',
    );
  }
  // Routes in a registry format: schema ids resolved before anything connects (a refusal is exit 2).
  const registry = await startRegistryFor(config, transform, { logger, telemetry });
  const clientOptions = buildMqttClientOptions(config.mqtt);
  const kafka = createKafkaFactory(config.kafka, { logger, security: buildKafkaSecurity(config.kafka) });
  // BRIDGE_GROUP: the MQTT sessions belong to the group; this replica connects the ones it is assigned.
  const sessions = config.sessions;
  let groupSource: GroupSource | undefined;
  const bridge = new Bridge({
    config,
    logger,
    telemetry,
    transform,
    kafka,
    openSpool: (deps) => openSqliteSpool(config.spool, { ...deps, logger }),
    createSource: (onMessage, { state }) =>
      sessions
        ? (groupSource = createGroupSource(mqttConfig, sessions, { onMessage, logger, telemetry, clientOptions, state, kafka: config.kafka, kafkaSecurity: buildKafkaSecurity(config.kafka) }))
        : createMqttSource(mqttConfig, { onMessage, logger, telemetry, clientOptions, state }),
    ...(sessions ? { sessionsStatus: () => groupSource?.status() } : {}),
    ...(registry ? { registryStatus: () => registry.status() } : {}),
  });
  const http = await startHttpServer(config.http, { telemetry, health: bridge, logger });
  logger.info(
    { mqtt: redactUrl(config.mqtt.url), topics: mqttConfig.topics, routes: config.mapping.routesFile ?? null, clientId: config.mqtt.clientId, sharedGroup: config.mqtt.sharedGroup ?? null, group: sessions ? { name: sessions.group, instance: sessions.instanceId, sessions: sessions.count } : null, kafka: config.kafka.brokers, workers: config.kafka.workers, spool: config.spool.path },
    'bridge starting',
  );
  // A quiet bridge (a standby replica, a site at night) gives the pages of its last burst back.
  const idleRelease = new IdleMemoryRelease({ afterMs: config.idleMemoryReleaseMs, repeatMs: IDLE_RELEASE_REPEAT_MS, activity: bridge, logger, onRelease: (ms) => telemetry.idleMemoryReleased(ms) });
  idleRelease.start();
  // Not awaited: an unreachable broker is a runtime fault reported by /readyz, not a crash.
  bridge.start().catch((err: unknown) => logger.error({ err }, 'MQTT start failed'));
  let stopping: Promise<void> | undefined;
  let draining: Promise<DrainOutcome> | undefined;
  return {
    bridge,
    httpPort: http.port,
    stop() {
      stopping ??= (async () => {
        idleRelease.stop();
        await (draining ?? bridge.close());
        registry?.close();
        await http.server.close();
      })();
      return stopping;
    },
    drain() {
      idleRelease.stop();
      draining ??= drainForScaleDown({
        config,
        logger,
        drainBridge: (o) => bridge.drainForScaleDown(o),
        // A group's sessions are not this replica's to end: the others hold them on.
        endSession: () => (sessions ? Promise.resolve() : endMqttSession(mqttConfig, clientOptions)),
        countSpoolRows: () => countSpoolRowsOnDisk(config.spool.path),
      }).finally(() => http.server.close());
      return draining;
    },
  };
}
