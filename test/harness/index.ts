/**
 * Real-broker test harness: private mosquitto and Kafka (KRaft) instances on free loopback
 * ports, each logging to its own file. Used by the vitest integration tests, bench/run.ts and
 * scripts/demo.ts, so nothing here imports vitest.
 *
 * Typical use:
 *   const mq = await startMosquitto({ persistence: true });
 *   const kafka = await startKafka();
 *   await kafka.createTopic('t', 3);
 *   ...
 *   const records = await kafka.readTopic('t', { expected: 100 });
 *   await stopAll(); // or mq.stop() / kafka.stop()
 */
export { freePort, freePorts, canConnect, waitForPort } from './ports.js';
export {
  ManagedProcess,
  spawnLogged,
  stopAll,
  livePids,
  makeTempDir,
  tailFile,
  findExecutable,
  ensureBrokersInstalled,
  repoRoot,
  type ExitInfo,
  type SpawnLoggedOptions,
} from './process.js';
export { startMosquitto, type Mosquitto, type MosquittoOptions } from './mosquitto.js';
export {
  startKafka,
  startKafkaCluster,
  kafkaLibsDir,
  KafkaNode,
  type Kafka,
  type KafkaAccess,
  type KafkaCluster,
  type KafkaClusterOptions,
  type KafkaOptions,
  type ClientPath,
  type ReadTopicOptions,
  type TopicOptions,
} from './kafka.js';
export { kcatRead, parseKcatJson, type ReadRecord } from './kcat.js';
export { startBridgeProcess, parseMetrics, type BridgeLogLine, type BridgeProcess, type BridgeProcessOptions } from './bridge.js';
export { publishBadges, publishMessages, checkBadges, badgeId, type BadgeCheck, type BadgeRunOptions, type PublishItem } from './badges.js';
export {
  startPrometheus,
  ensurePrometheusInstalled,
  promtoolPath,
  PrometheusApiError,
  type Prometheus,
  type PrometheusOptions,
  type InstantSample,
  type RangeSeries,
  type ActiveAlert,
  type RuleState,
} from './prometheus.js';
export { EdgeNode, DataType, encodePayload, metric, packArray, valueField, type EdgeNodeOptions, type PbObject, type SimMetric } from './sparkplug.js';
export { groupEnv, ReplicaSet, spoolRowsOnDisk, mosquittoSys, waitUntil, type Replica, type ReplicaCounts, type ReplicaSetOptions } from './replicas.js';
export { mountSmallFs, smallFsUnavailable, type SmallFs } from './small-fs.js';
export { startDelayProxy, type DelayProxy, type DelayProxyOptions } from './delay-proxy.js';
export { startRegistry, readTyped, checkKeyOrder, ensureRegistryInstalled, registryDir, readerVenv, type KeyOrder, type SchemaRegistry, type RegistryOptions, type TypedRecord, type ReadTypedOptions } from './registry.js';
export { startBlackholeProxy, type BlackholeProxy, type BlackholeProxyOptions } from './blackhole-proxy.js';
export { runJavaProducer, type JavaProducerOptions, type JavaProducerResult } from './java-producer.js';
