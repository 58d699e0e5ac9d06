import type { Config } from '../config/types.js';
import type { KafkaSecurityOptions } from './security.js';

/**
 * The connection options every @platformatic/kafka client of the bridge shares (bootstrap
 * brokers, client id, timeouts, TLS and SASL), for clients other than the writer's producers:
 * the session group's consumer and admin (src/sessions).
 */
export function kafkaConnectionOptions(config: Config['kafka'], security: KafkaSecurityOptions, clientIdSuffix = ''): {
  clientId: string;
  bootstrapBrokers: string[];
  connectTimeout: number;
  requestTimeout: number;
} & KafkaSecurityOptions {
  return {
    clientId: `${config.clientId}${clientIdSuffix}`,
    bootstrapBrokers: [...config.brokers],
    connectTimeout: config.connectTimeoutMs,
    requestTimeout: Math.max(1000, config.connectTimeoutMs),
    ...security,
  };
}
