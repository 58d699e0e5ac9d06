/**
 * The schema registry room: typed records (Avro, Protobuf, JSON Schema) in the Confluent wire
 * format. Its contract toward the rest of the bridge (src/registry/types.ts): resolve a route's
 * subject to a schema id (cached), encode a value for a route (a Buffer, a mismatch, or "wait"),
 * and the registry's health. src/main.ts imports this module dynamically, only when a
 * configuration uses a registry format, so a bridge without such routes does not load it.
 */
import type { Logger } from 'pino';
import type { RegistryConfig } from '../config/types.js';
import { createRegistryClient, registryTransport } from './client.js';
import { CodecFactory } from './codecs.js';
import { SchemaEncoder } from './encoder.js';
import type { RegistryTelemetry, SchemaUse } from './types.js';

export { SchemaEncoder, subjectFor } from './encoder.js';

/**
 * Connects to the registry and resolves every subject known at start (routes with a constant
 * topic). Throws ConfigError (BRIDGE_ERR_SCHEMA_REFUSED, exit 2) when the registry refuses one;
 * an unreachable registry does not throw (see SchemaEncoder).
 */
export async function startSchemaEncoder(
  config: RegistryConfig,
  uses: readonly SchemaUse[],
  deps: { readonly logger: Logger; readonly telemetry: RegistryTelemetry },
): Promise<SchemaEncoder> {
  const transport = registryTransport(config);
  const client = createRegistryClient(transport);
  const encoder = new SchemaEncoder(uses, { client, codecs: new CodecFactory(client, transport), logger: deps.logger, telemetry: deps.telemetry, retryMs: config.retryMs });
  await encoder.prepare();
  return encoder;
}
