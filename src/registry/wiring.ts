import type { Logger } from 'pino';
import type { Transform } from '../bridge/types.js';
import type { Config } from '../config/types.js';
import { ConfigError } from '../errors.js';
import type { RegistryStatus, RegistryTelemetry } from './types.js';

/** What the bridge keeps of the registry room. */
export interface RunningRegistry {
  status(): RegistryStatus;
  close(): void;
}

/**
 * Starts the schema registry room when the transform has routes in a registry format, and gives
 * the transform its encoder. The room (and what it loads: its HTTP client, codecs, protobufjs
 * use) is imported only then. Throws ConfigError when such routes have no SCHEMA_REGISTRY_URL or
 * the registry refuses a schema at start.
 */
export async function startRegistryFor(config: Config, transform: Transform, deps: { logger: Logger; telemetry: RegistryTelemetry }): Promise<RunningRegistry | undefined> {
  const uses = transform.schemaUses ?? [];
  if (uses.length === 0) {
    if (config.registry) deps.logger.warn({ schemaRegistry: config.registry.url }, 'SCHEMA_REGISTRY_URL is set, but no route uses avro, protobuf or json_schema: it is not used');
    return undefined;
  }
  if (!config.registry) {
    const routes = [...new Set(uses.map((u) => `${u.route} (${u.format})`))].join(', ');
    throw new ConfigError([`SCHEMA_REGISTRY_URL: required by ${routes}`]);
  }
  const { startSchemaEncoder } = await import('./index.js');
  deps.logger.info({ schemaRegistry: config.registry.url, routes: uses.length }, 'schema registry: resolving the schemas of the routes');
  const encoder = await startSchemaEncoder(config.registry, uses, deps);
  transform.useEncoder?.(encoder);
  return encoder;
}
