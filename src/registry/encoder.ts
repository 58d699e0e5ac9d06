import type { Logger } from 'pino';
import { ConfigError, describeError } from '../errors.js';
import { FaultReporter } from '../observability/fault-reporter.js';
import { RegistryError, type RegistryClient, type SchemaType } from './client.js';
import type { Codec } from './codecs.js';
import type { EncodeOutcome, RegistryStatus, RegistryTelemetry, SchemaUse, ValueEncoder } from './types.js';

/**
 * Resolves each (route, topic) to a schema id and a compiled codec, caches both, and encodes
 * values synchronously from the cache.
 *
 * - Subjects follow the topic name strategy: `<topic>-value`.
 * - At start, `prepare()` resolves every route whose topic is a constant: a refusal (incompatible
 *   change, invalid schema, unknown subject or version, bad credentials) stops the bridge with
 *   one ConfigError naming each route and the registry's words; a registry that cannot be reached
 *   is an outage, not a configuration error: the bridge starts and keeps trying.
 * - A subject seen for the first time at run time (topic templates) is resolved then; until it is,
 *   `encode` answers `waiting` and the bridge holds those records (not acknowledged). An
 *   unreachable registry is retried every `retryMs`, reported as one fault (one line when it
 *   starts, a summary a minute, one when it ends) and by `status()`.
 * - A subject the registry refuses at run time answers `refused` (the records are dead-lettered,
 *   reason schema_refused) and is asked again after REFUSED_RETRY_MS.
 * - Once resolved, a subject never needs the registry again in this process.
 */

/** How long a run-time refusal stands before the registry is asked again. */
export const REFUSED_RETRY_MS = 60_000;
/** Cached subjects beyond which resolved ones are forgotten (resolved again when next seen). */
const MAX_SUBJECTS = 100_000;

const SCHEMA_TYPES: Record<SchemaUse['format'], SchemaType> = { avro: 'AVRO', protobuf: 'PROTOBUF', json_schema: 'JSON' };

export interface SchemaEncoderDeps {
  readonly client: RegistryClient;
  /** Compiles a schema id for a format (CodecFactory). */
  readonly codecs: { create(id: number, format: SchemaUse['format'], message: string | undefined): Promise<Codec> };
  readonly logger: Logger;
  readonly telemetry: RegistryTelemetry;
  readonly retryMs: number;
  readonly now?: () => number;
}

interface Entry {
  readonly use: number;
  readonly subject: string;
  state: 'resolving' | 'ready' | 'refused';
  codec?: Codec;
  detail?: string;
  /** HTTP status of the refusal, for the hint at start. */
  status?: number | undefined;
  retryAt?: number;
  ready: Promise<void>;
  wake: () => void;
  /** The first attempt's end, whatever it gave (prepare() waits for it, not for the registry). */
  first?: Promise<void>;
  timer?: NodeJS.Timeout | undefined;
}

export const subjectFor = (topic: string): string => `${topic}-value`;

export class SchemaEncoder implements ValueEncoder {
  private readonly entries = new Map<string, Entry>();
  private readonly codecCache = new Map<string, Promise<Codec>>();
  private readonly log: Logger;
  private readonly fault: FaultReporter;
  private readonly now: () => number;
  private up = true;
  private closed = false;
  /** During prepare(): a refusal stops the start (one message), it is not logged as a run-time fault. */
  private preparing = false;

  constructor(
    private readonly uses: readonly SchemaUse[],
    private readonly deps: SchemaEncoderDeps,
  ) {
    this.log = deps.logger.child({ component: 'schema-registry' });
    this.now = deps.now ?? Date.now;
    this.fault = new FaultReporter({
      logger: this.log,
      fault: 'schema_registry',
      level: 'warn',
      startMsg: 'schema registry unreachable: records of subjects whose schema id is not known yet are held (not acknowledged) until it answers; subjects already known keep flowing',
      summaryMsg: 'schema registry still unreachable',
      endMsg: 'schema registry reachable again; held records go on',
      onChange: (active) => {
        this.up = !active;
        deps.telemetry.registryUp(!active);
      },
    });
    deps.telemetry.registryUp(true);
  }

  /**
   * Resolves the subjects of every route with a constant topic. Throws ConfigError
   * (BRIDGE_ERR_SCHEMA_REFUSED) when the registry refuses any of them; an unreachable registry
   * does not throw (the subjects are retried in the background).
   */
  async prepare(): Promise<void> {
    const started: Entry[] = [];
    this.preparing = true;
    this.uses.forEach((u, i) => {
      if (u.staticTopic !== undefined) started.push(this.entry(i, u.staticTopic));
    });
    await Promise.all(started.map((e) => e.first));
    this.preparing = false;
    const refused = started.filter((e) => e.state === 'refused');
    if (refused.length > 0) {
      this.close();
      throw new ConfigError(
        refused.map((e) => `route ${this.uses[e.use]?.route ?? e.use}: the schema registry refused subject ${e.subject}: ${e.detail ?? ''}${refusalHint(e.status)}`),
        'BRIDGE_ERR_SCHEMA_REFUSED',
      );
    }
    const waiting = started.filter((e) => e.state === 'resolving').length;
    this.log.info({ subjects: started.length - waiting, waiting }, waiting > 0 ? 'schema registry: started without some schema ids; their records wait for the registry' : 'schema registry: every static subject resolved');
  }

  encode(use: number, topic: string, value: unknown): EncodeOutcome {
    const e = this.entry(use, topic);
    if (e.state === 'ready') {
      const out = (e.codec as Codec).encode(value);
      return Buffer.isBuffer(out) ? { kind: 'encoded', value: out } : { kind: 'mismatch', detail: out.mismatch };
    }
    if (e.state === 'refused') {
      if (this.now() < (e.retryAt ?? 0) || this.closed) return { kind: 'refused', detail: `the schema registry refused subject ${e.subject}: ${e.detail ?? ''}` };
      this.restart(e);
    }
    return { kind: 'waiting', ready: e.ready };
  }

  status(): RegistryStatus {
    let waitingSubjects = 0;
    let refusedSubjects = 0;
    for (const e of this.entries.values()) {
      if (e.state === 'resolving') waitingSubjects++;
      else if (e.state === 'refused') refusedSubjects++;
    }
    return { up: this.up, waitingSubjects, refusedSubjects };
  }

  /** Stops retrying; waiting records stay unacknowledged (the broker redelivers them to the next session). */
  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      if (e.timer) clearTimeout(e.timer);
      e.timer = undefined;
    }
    this.fault.close();
  }

  private entry(use: number, topic: string): Entry {
    const key = `${use}\u0000${topic}`;
    let e = this.entries.get(key);
    if (e) return e;
    if (this.entries.size >= MAX_SUBJECTS) {
      for (const [k, old] of this.entries) if (old.state === 'ready') this.entries.delete(k);
    }
    let wake!: () => void;
    const ready = new Promise<void>((r) => (wake = r));
    e = { use, subject: subjectFor(topic), state: 'resolving', ready, wake };
    this.entries.set(key, e);
    e.first = this.attempt(e);
    return e;
  }

  private restart(e: Entry): void {
    e.state = 'resolving';
    e.ready = new Promise<void>((r) => (e.wake = r));
    void this.attempt(e);
  }

  private async attempt(e: Entry): Promise<void> {
    e.timer = undefined;
    if (this.closed) return;
    const u = this.uses[e.use] as SchemaUse;
    try {
      const id = await this.schemaId(u, e.subject);
      e.codec = await this.codec(id, u);
      e.state = 'ready';
      this.deps.telemetry.registryRequest('ok');
      this.fault.ok(e.subject);
      this.log.debug({ route: u.route, subject: e.subject, id }, 'schema id resolved');
      e.wake();
    } catch (err) {
      const re = err instanceof RegistryError ? err : new RegistryError('refused', describeError(err));
      this.deps.telemetry.registryRequest(re.kind);
      if (re.kind === 'unreachable') {
        this.fault.fail(re, { source: e.subject, fields: { code: 'BRIDGE_ERR_SCHEMA_REGISTRY', subject: e.subject, route: u.route } });
        if (!this.closed) {
          e.timer = setTimeout(() => void this.attempt(e), this.deps.retryMs);
          e.timer.unref();
        }
        return;
      }
      // The registry answered: it is up, and this subject is refused.
      this.fault.ok(e.subject);
      e.state = 'refused';
      e.detail = re.message;
      e.status = re.status;
      e.retryAt = this.now() + REFUSED_RETRY_MS;
      if (!this.preparing) {
        this.log.error(
          { route: u.route, subject: e.subject, err: re.message, retryInMs: REFUSED_RETRY_MS },
          'the schema registry refused the schema of this subject: its records are dead-lettered (schema_refused) until it accepts it',
        );
      }
      e.wake();
    }
  }

  private async schemaId(u: SchemaUse, subject: string): Promise<number> {
    const type = SCHEMA_TYPES[u.format];
    const { client } = this.deps;
    if (u.autoRegister) return client.register(subject, type, u.text ?? '');
    if (u.version !== undefined) {
      const s = await client.version(subject, u.version);
      if (s.schemaType !== type) throw new RegistryError('refused', `version ${u.version} of ${subject} is a ${s.schemaType} schema, the route's format is ${u.format}`);
      return s.id;
    }
    return (await client.lookup(subject, type, u.text ?? '')).id;
  }

  /** One compiled codec per (id, format, message), shared by every subject that names the id. */
  private codec(id: number, u: SchemaUse): Promise<Codec> {
    const key = `${id}\u0000${u.format}\u0000${u.message ?? ''}`;
    let c = this.codecCache.get(key);
    if (!c) {
      c = this.deps.codecs.create(id, u.format, u.message);
      this.codecCache.set(key, c);
      // A failed compile (registry unreachable) is not cached.
      c.catch(() => this.codecCache.delete(key));
    }
    return c;
  }
}

/** What to do about a refusal at start, by the registry's HTTP status. */
function refusalHint(status: number | undefined): string {
  switch (status) {
    case 409:
      return ' -- the schema is not compatible with the subject\'s earlier versions under its compatibility level: make the change compatible (e.g. give new fields a default), or change the subject\'s compatibility in the registry';
    case 404:
      return ' -- with auto_register: false the subject (and version) must exist in the registry';
    case 401:
    case 403:
      return ' -- check SCHEMA_REGISTRY_USERNAME / SCHEMA_REGISTRY_PASSWORD or SCHEMA_REGISTRY_TOKEN';
    case 422:
      return ' -- the registry finds the schema invalid: check the schema file';
    default:
      return '';
  }
}
