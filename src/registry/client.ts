import { createUndiciAgent } from '@platformatic/kafka';
import type { RegistryConfig } from '../config/types.js';
import { readTlsMaterial, tlsFailure, tlsHint } from '../tls.js';

/**
 * The Confluent Schema Registry REST verbs the bridge needs and @platformatic/kafka's
 * ConfluentSchemaRegistry does not offer (it only fetches a schema by id): register a schema
 * under a subject, look a subject's version up, and find the id of a given schema. Same transport
 * as that client: fetch, with its undici Agent for TLS.
 */

/** Why a request did not give an answer. `unreachable`: try again later; `refused`: the registry said no. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly kind: 'unreachable' | 'refused',
    message: string,
    /** HTTP status, when the registry answered. */
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A schema as the registry returns it. */
export interface RegisteredSchema {
  readonly id: number;
  /** The schema text (Avro JSON, .proto source, JSON Schema). */
  readonly schema: string;
  /** AVRO (also when absent), PROTOBUF or JSON. */
  readonly schemaType: string;
  readonly version?: number;
}

export type SchemaType = 'AVRO' | 'PROTOBUF' | 'JSON';

/** HTTP statuses that mean "not now" (overloaded, restarting, behind a proxy), not "no". */
const TRANSIENT = new Set([408, 425, 429, 500, 502, 503, 504]);

export interface RegistryClient {
  /** POST /subjects/{subject}/versions: registers (or finds) the schema; its id. */
  register(subject: string, schemaType: SchemaType, schema: string): Promise<number>;
  /** GET /subjects/{subject}/versions/{version}. */
  version(subject: string, version: number | 'latest'): Promise<RegisteredSchema>;
  /** POST /subjects/{subject}: the id of this schema if the subject has it (404 refused otherwise). */
  lookup(subject: string, schemaType: SchemaType, schema: string): Promise<RegisteredSchema>;
  /** GET /schemas/ids/{id}. */
  byId(id: number): Promise<RegisteredSchema>;
}

/** Request options shared with @platformatic/kafka's ConfluentSchemaRegistry (same auth and TLS). */
export interface RegistryTransport {
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; passphrase?: string; rejectUnauthorized: boolean } | undefined;
  readonly timeoutMs: number;
}

/** The transport for a validated registry config (TLS files are read here). */
export function registryTransport(config: RegistryConfig): RegistryTransport {
  const headers: Record<string, string> = { Accept: 'application/vnd.schemaregistry.v1+json, application/json' };
  if (config.token !== undefined) headers.Authorization = `Bearer ${config.token}`;
  else if (config.username !== undefined) headers.Authorization = `Basic ${Buffer.from(`${config.username}:${config.password ?? ''}`).toString('base64')}`;
  let tls: RegistryTransport['tls'];
  if (config.tls) {
    const m = readTlsMaterial(config.tls, { ca: 'SCHEMA_REGISTRY_TLS_CA', cert: 'SCHEMA_REGISTRY_TLS_CERT', key: 'SCHEMA_REGISTRY_TLS_KEY' });
    tls = { ...m, ...(config.tls.keyPassphrase === undefined ? {} : { passphrase: config.tls.keyPassphrase }), rejectUnauthorized: !config.tls.insecure };
  }
  return { url: config.url.replace(/\/+$/, ''), headers, tls, timeoutMs: config.timeoutMs };
}

export function createRegistryClient(t: RegistryTransport): RegistryClient {
  const dispatcher = t.tls ? createUndiciAgent({ connect: t.tls }) : undefined;

  const request = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> => {
    const init: RequestInit & { dispatcher?: unknown } = {
      method,
      headers: body === undefined ? t.headers : { ...t.headers, 'Content-Type': 'application/vnd.schemaregistry.v1+json' },
      signal: AbortSignal.timeout(t.timeoutMs),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(dispatcher ? { dispatcher } : {}),
    };
    let res: Response;
    try {
      res = await fetch(`${t.url}${path}`, init);
    } catch (err) {
      const tls = explainRegistryTls(err);
      if (tls) throw new RegistryError('refused', tls, undefined, { cause: err });
      const timedOut = (err as Error).name === 'TimeoutError';
      throw new RegistryError('unreachable', timedOut ? `no answer within ${t.timeoutMs} ms` : `cannot reach the registry (${causeText(err)})`, undefined, { cause: err });
    }
    const text = await res.text().catch(() => '');
    if (!res.ok) {
      const kind = TRANSIENT.has(res.status) ? 'unreachable' : 'refused';
      throw new RegistryError(kind, `HTTP ${res.status}${registryMessage(text)}`, res.status);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new RegistryError('refused', `HTTP ${res.status} with a body that is not JSON`, res.status);
    }
  };

  const schemaBody = (schemaType: SchemaType, schema: string) => (schemaType === 'AVRO' ? { schema } : { schema, schemaType });
  const registered = (v: unknown, what: string): RegisteredSchema => {
    const o = v as Partial<RegisteredSchema> | null;
    if (!o || typeof o.id !== 'number' || typeof o.schema !== 'string') throw new RegistryError('refused', `unexpected answer to ${what}`);
    return { id: o.id, schema: o.schema, schemaType: o.schemaType ?? 'AVRO', ...(typeof o.version === 'number' ? { version: o.version } : {}) };
  };
  const subjectPath = (s: string) => `/subjects/${encodeURIComponent(s)}`;

  return {
    async register(subject, schemaType, schema) {
      const v = (await request('POST', `${subjectPath(subject)}/versions`, schemaBody(schemaType, schema))) as { id?: unknown } | null;
      if (typeof v?.id !== 'number') throw new RegistryError('refused', 'unexpected answer to a registration (no id)');
      return v.id;
    },
    async version(subject, version) {
      return registered(await request('GET', `${subjectPath(subject)}/versions/${version}`), `GET ${subjectPath(subject)}/versions/${version}`);
    },
    async lookup(subject, schemaType, schema) {
      return registered(await request('POST', subjectPath(subject), schemaBody(schemaType, schema)), `POST ${subjectPath(subject)}`);
    },
    async byId(id) {
      const v = (await request('GET', `/schemas/ids/${id}`)) as Partial<RegisteredSchema> | null;
      return registered({ ...v, id }, `GET /schemas/ids/${id}`);
    },
  };
}

/**
 * A TLS handshake failure is a configuration problem (wrong CA, name, client certificate), not an
 * outage: it is refused (at start: exit 2) with what to check. Undefined for anything else.
 */
export function explainRegistryTls(err: unknown): string | undefined {
  const tls = tlsFailure(err);
  if (!tls) return undefined;
  const hint = tlsHint(tls.kind, {
    verify: "check SCHEMA_REGISTRY_TLS_CA: it must be the CA that signed the registry's certificate",
    name: "the registry's certificate does not name the host in SCHEMA_REGISTRY_URL",
    clientCert: 'the registry wants a client certificate it trusts: check SCHEMA_REGISTRY_TLS_CERT/SCHEMA_REGISTRY_TLS_KEY',
    notTls: 'the registry does not speak TLS on that port: use http:// or the TLS port',
    other: 'check the SCHEMA_REGISTRY_TLS_* settings',
  });
  return `TLS handshake with the schema registry failed: ${tls.reason} (${hint})`;
}

/** The registry's own words (`{"error_code": 409, "message": "..."}`), cut to a log-friendly length. */
function registryMessage(body: string): string {
  try {
    const o = JSON.parse(body) as { message?: unknown; error_code?: unknown };
    if (typeof o.message === 'string') return `: ${o.message.slice(0, 500)}${typeof o.error_code === 'number' ? ` (error_code ${o.error_code})` : ''}`;
  } catch {
    // not JSON
  }
  return body.length > 0 ? `: ${body.slice(0, 200)}` : '';
}

function causeText(err: unknown): string {
  const c = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (c && typeof c.code === 'string') return c.code;
  if (c && typeof c.message === 'string') return c.message;
  return err instanceof Error ? err.message : String(err);
}
