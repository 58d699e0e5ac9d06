import { ConfluentSchemaRegistry, SchemaValidationError } from '@platformatic/kafka';
import { fullFormats } from 'ajv-formats/dist/formats.js';
import type { RegistryClient, RegistryTransport } from './client.js';
import { explainRegistryTls, RegistryError } from './client.js';
import { compileProtobuf, messageIndexBytes } from './protobuf.js';
import type { RegistryFormat } from './types.js';
import { valueKind } from './values.js';

/**
 * One schema id, compiled: checks a JSON value and writes it in the Confluent wire format
 * (magic byte 0, the id as 4 bytes big-endian, for Protobuf the message indexes, then the
 * payload). Avro and JSON Schema go through @platformatic/kafka's ConfluentSchemaRegistry: it
 * fetches the schema by id (so a value is checked against exactly what consumers will decode it
 * with), compiles it (avsc; ajv with the draft the schema names) and frames the value. Protobuf
 * is ours (src/registry/protobuf.ts says why).
 */
export interface Codec {
  readonly id: number;
  /** The framed value, or what is wrong with the value (the validator's words). */
  encode(value: unknown): Buffer | { readonly mismatch: string };
}

/** Structural view of the avsc Type that @platformatic/kafka compiles (avsc is its dependency, not ours). */
interface AvroType {
  readonly name?: string | undefined;
  readonly typeName: string;
  readonly fields?: readonly { readonly name: string }[];
  readonly types?: readonly AvroType[];
  isValid(v: unknown, opts: { noUndeclaredFields: boolean; errorHook: (path: string[], v: unknown, type: AvroType) => void }): boolean;
}

interface AjvError {
  readonly instancePath: string;
  readonly message?: string;
  readonly params?: Record<string, unknown>;
}

const MAX_PROBLEMS = 5;

export class CodecFactory {
  private readonly platformatic: ConfluentSchemaRegistry;
  private readonly serialize: (data: unknown, headers: undefined, message: unknown) => Buffer;

  constructor(
    private readonly client: RegistryClient,
    transport: RegistryTransport,
  ) {
    this.platformatic = new ConfluentSchemaRegistry({
      url: transport.url,
      headers: transport.headers,
      timeout: transport.timeoutMs,
      // The encoder has its own retry loop (a held subject is tried every SCHEMA_REGISTRY_RETRY_MS).
      retries: 0,
      ...(transport.tls ? { tls: transport.tls } : {}),
      jsonValidateSend: true,
      // ajv in strict mode refuses a schema with a `format` it does not know: give it the standard ones.
      jsonAjvOptions: { formats: fullFormats },
    });
    this.serialize = this.platformatic.getSerializers().value as unknown as (data: unknown, headers: undefined, message: unknown) => Buffer;
  }

  /** Compiles schema `id` for `format`. Throws RegistryError (unreachable or refused). */
  async create(id: number, format: RegistryFormat, message: string | undefined): Promise<Codec> {
    if (format === 'protobuf') return this.protobuf(id, message);
    try {
      await new Promise<void>((resolve, reject) => {
        void this.platformatic.fetchSchema(id, (err) => (err ? reject(err) : resolve()));
      });
    } catch (err) {
      throw classify(err, id);
    }
    const schema = this.platformatic.get(id);
    const want = format === 'avro' ? 'avro' : 'json';
    if (!schema || schema.type !== want) {
      throw new RegistryError('refused', `schema id ${id} is ${schema ? schema.type.toUpperCase() : 'unknown'}, not ${want === 'avro' ? 'AVRO' : 'JSON'} (the route's format is ${format})`);
    }
    const meta = { metadata: { schemas: { value: id } } };
    if (format === 'avro') {
      const type = schema.schema as unknown as AvroType;
      return {
        id,
        encode: (value) => {
          const problems: string[] = [];
          const hook = (path: string[], v: unknown, t: AvroType) => {
            if (problems.length < MAX_PROBLEMS) problems.push(avroProblem(path, v, t));
          };
          if (!type.isValid(value, { noUndeclaredFields: true, errorHook: hook })) return { mismatch: problems.join('; ') || 'does not match the Avro schema' };
          return this.serialize(value, undefined, meta);
        },
      };
    }
    return {
      id,
      encode: (value) => {
        try {
          return this.serialize(value, undefined, meta);
        } catch (err) {
          if (err instanceof SchemaValidationError) return { mismatch: ajvProblems((err.validationErrors ?? []) as AjvError[]) };
          throw err;
        }
      },
    };
  }

  private async protobuf(id: number, message: string | undefined): Promise<Codec> {
    const s = await this.client.byId(id);
    if (s.schemaType !== 'PROTOBUF') throw new RegistryError('refused', `schema id ${id} is ${s.schemaType}, not PROTOBUF (the route's format is protobuf)`);
    let pb;
    try {
      pb = compileProtobuf(s.schema, message);
    } catch (err) {
      throw new RegistryError('refused', `schema id ${id}: ${(err as Error).message}`);
    }
    const head = Buffer.alloc(5);
    head.writeInt32BE(id, 1);
    const prefix = Buffer.concat([head, messageIndexBytes(pb.indexes)]);
    return {
      id,
      encode: (value) => {
        const problems = pb.check(value);
        if (problems.length > 0) return { mismatch: problems.join('; ') };
        return Buffer.concat([prefix, pb.encode(value)]);
      },
    };
  }
}

/** @platformatic/kafka's errors from fetchSchema: network and timeouts are outages; an HTTP "no" or a schema that does not compile is a refusal. */
function classify(err: unknown, id: number): RegistryError {
  const e = err as { code?: unknown; canRetry?: unknown; response?: unknown; message?: unknown; errors?: unknown[] };
  const first = Array.isArray(e.errors) && e.errors.length > 0 ? (e.errors[e.errors.length - 1] as typeof e) : e;
  const text = typeof first.message === 'string' ? first.message : String(err);
  const tls = explainRegistryTls(err);
  if (tls) return new RegistryError('refused', tls, undefined, { cause: err });
  if (first.code === 'PLT_KFK_NETWORK' || first.canRetry === true) return new RegistryError('unreachable', `fetching schema id ${id}: ${text}`, undefined, { cause: err });
  return new RegistryError('refused', `schema id ${id}: ${text}${typeof first.response === 'string' && first.response ? ` ${first.response.slice(0, 300)}` : ''}`, undefined, { cause: err });
}


function avroTypeName(t: AvroType): string {
  if (t.types) return `one of ${t.types.map(avroTypeName).join(' | ')}`;
  return t.name ?? t.typeName;
}

function avroProblem(path: string[], v: unknown, t: AvroType): string {
  const at = path.length === 0 ? '(value)' : path.join('.');
  // A record whose fields all fit, refused only for fields the schema does not declare.
  if (t.fields && typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const declared = new Set(t.fields.map((f) => f.name));
    const extra = Object.keys(v).filter((k) => !declared.has(k));
    if (extra.length > 0) return `${at}: ${extra.slice(0, 5).map((k) => `"${k}"`).join(', ')} not in the schema of ${t.name ?? 'the record'}`;
  }
  return `${at}: ${valueKind(v)} is not ${/^[aeiou]/.test(avroTypeName(t)) ? 'an' : 'a'} ${avroTypeName(t)}`;
}

function ajvProblems(errors: readonly AjvError[]): string {
  if (errors.length === 0) return 'does not match the JSON Schema';
  return errors
    .slice(0, MAX_PROBLEMS)
    .map((e) => {
      const extra = e.params && typeof e.params.additionalProperty === 'string' ? ` ("${e.params.additionalProperty}")` : '';
      return `${e.instancePath === '' ? '(value)' : e.instancePath} ${e.message ?? 'is invalid'}${extra}`;
    })
    .join('; ');
}
