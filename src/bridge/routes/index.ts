/**
 * Declarative routing: a YAML routes file maps MQTT topics to Kafka records (topic, key,
 * value format, validation, filtering, enrichment, headers). See docs/routes.md.
 */
export { compileRoutes, type RoutesOptions, type RoutesTransform } from './compile.js';
export { loadRoutesFile, parseRoutesYaml } from './load.js';
export { filterCovers, subscriptionsFor } from './pattern.js';
export { uuidFrom, toIso8601 } from './values.js';
