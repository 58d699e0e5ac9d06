import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Telemetry } from './telemetry.js';

export interface HealthState {
  /** Liveness: the event loop and the bridge's loops are alive. Stays true during a Kafka outage. */
  live(): { ok: boolean; detail: Record<string, unknown> };
  /** Readiness: subscribed, and Kafka writable or the spool accepting. */
  ready(): { ok: boolean; detail: Record<string, unknown> };
}

/**
 * /healthz (liveness), /readyz (readiness) and /metrics (Prometheus text format). Handlers read
 * in-memory state only, so they answer quickly while the bridge is under load.
 */
export async function startHttpServer(
  opts: { host: string; port: number },
  deps: { telemetry: Telemetry; health: HealthState; logger: Logger },
): Promise<{ server: FastifyInstance; port: number }> {
  const server = Fastify({ logger: false });
  server.get('/healthz', async (_req, reply) => {
    const s = deps.health.live();
    return reply.code(s.ok ? 200 : 503).send({ status: s.ok ? 'ok' : 'unhealthy', ...s.detail });
  });
  server.get('/readyz', async (_req, reply) => {
    const s = deps.health.ready();
    return reply.code(s.ok ? 200 : 503).send({ status: s.ok ? 'ready' : 'not ready', ...s.detail });
  });
  server.get('/metrics', async (_req, reply) => {
    const body = await deps.telemetry.metrics();
    return reply.header('content-type', deps.telemetry.registry.contentType).send(body);
  });
  await server.listen({ host: opts.host, port: opts.port });
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  deps.logger.child({ component: 'http' }).info({ port }, 'serving /healthz, /readyz and /metrics');
  return { server, port };
}
