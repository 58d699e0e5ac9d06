/**
 * Sparkplug B 3.0: decoding payloads into JSON records, with BIRTH certificates kept durably so
 * that DATA messages' metric aliases resolve to names across restarts. See docs/routes.md
 * ("format: sparkplug") for the record format and births.ts for the state layout.
 */
export { SparkplugDecoder, type SparkplugDecoded, type SparkplugDeps, type SparkplugInvalid, type SparkplugTooLargeResult } from './decoder.js';
export { SPARKPLUG_HEADER, NO_SPARKPLUG_TELEMETRY, type SparkplugTelemetry } from './types.js';
export { MESSAGE_TYPES, NAMESPACE, parseSparkplugTopic, type MessageType } from './topic.js';
export { payloadType, SPARKPLUG_B_PROTO } from './schema.js';
export type { SeqAnomaly } from './sequence.js';
