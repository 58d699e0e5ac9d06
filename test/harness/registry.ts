import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePorts } from './ports.js';
import { makeTempDir, ManagedProcess, repoRoot, runInstallScriptOnce } from './process.js';

const APICURIO_VERSION = '3.3.3';

/**
 * A private Apicurio Registry 3.x (its Confluent-compatible API under /apis/ccompat/v7) on a free
 * loopback port, started by the harness like the brokers (scripts/install-registry.sh fetches it).
 * In-memory storage by default; `persistent` keeps it in an H2 file so it survives stop()/start()
 * like a production registry (schema ids must not change under a running bridge).
 */
export interface RegistryOptions {
  /** Keep the schemas in an H2 database file under dataDir, across restarts. Default false (in memory). */
  persistent?: boolean;
  dataDir?: string;
  logDir?: string;
}

export interface SchemaRegistry {
  /** Base URL of the Confluent-compatible API (what SCHEMA_REGISTRY_URL takes). */
  readonly url: string;
  readonly port: number;
  readonly logFile: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Starts it again on the same port (same storage when persistent). */
  start(): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** PUT /config/{subject}: the subject's compatibility level (BACKWARD, FULL, NONE …). */
  setCompatibility(subject: string, level: string): Promise<void>;
  /** GET /subjects/{subject}/versions/latest: its schema id. */
  latestId(subject: string): Promise<number>;
}

/** Directory of the unpacked registry (quarkus-run.jar). */
export function registryDir(): string {
  return process.env.REGISTRY_DIR ?? path.join(repoRoot, '.cache', `apicurio-registry-${APICURIO_VERSION}`);
}

/** The reader's venv (test/registry-reader). */
export function readerVenv(): string {
  return process.env.REGISTRY_READER_VENV ?? path.join(repoRoot, '.cache', 'registry-reader-venv');
}

/** Runs scripts/install-registry.sh once per process (idempotent, quiet when everything is there). */
export function ensureRegistryInstalled(): void {
  runInstallScriptOnce('install-registry.sh');
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<SchemaRegistry> {
  ensureRegistryInstalled();
  const dir = registryDir();
  const java = fs.readFileSync(path.join(dir, 'java-path'), 'utf8').trim();
  const [port, mgmtPort] = (await freePorts(2)) as [number, number];
  const logDir = opts.logDir ?? process.env.HARNESS_LOG_DIR ?? makeTempDir('registry-');
  const logFile = path.join(logDir, `registry-${port}.log`);
  const dataDir = opts.dataDir ?? makeTempDir('registry-data-');
  const url = `http://127.0.0.1:${port}/apis/ccompat/v7`;
  const args = [
    // A test registry: small heap, quick start (C1 only), one GC thread.
    '-Xms32m',
    '-Xmx192m',
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1',
    `-Dquarkus.http.host=127.0.0.1`,
    `-Dquarkus.http.port=${port}`,
    `-Dquarkus.management.host=127.0.0.1`,
    `-Dquarkus.management.port=${mgmtPort}`,
    '-Dapicurio.datasource.jdbc.initial-size=2',
    '-Dapicurio.datasource.jdbc.min-size=2',
    '-Dapicurio.datasource.jdbc.max-size=10',
    // Not every request in the log (the tests read it when a start fails).
    '-Dquarkus.http.access-log.enabled=false',
    ...(opts.persistent ? [`-Dapicurio.datasource.url=jdbc:h2:file:${path.join(dataDir, 'registry')}`] : []),
    '-jar',
    path.join(dir, 'quarkus-run.jar'),
  ];
  let proc: ManagedProcess | undefined;
  const start = async (): Promise<void> => {
    proc = ManagedProcess.spawn(java, args, { name: 'registry', logFile, cwd: dataDir, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } });
    const end = Date.now() + 120_000;
    for (;;) {
      if (!proc.running) throw new Error(`the registry exited during start\n${proc.logTail()}`);
      try {
        const r = await fetch(`${url}/subjects`, { signal: AbortSignal.timeout(2000) });
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > end) throw new Error(`the registry did not answer within 120 s\n${proc.logTail()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  await start();
  const ct = { 'Content-Type': 'application/vnd.schemaregistry.v1+json' };
  return {
    url,
    port,
    logFile,
    get pid() {
      return proc?.running ? proc.pid : undefined;
    },
    get running() {
      return proc?.running ?? false;
    },
    start,
    async stop() {
      await proc?.stop('SIGTERM', 20_000);
    },
    async setCompatibility(subject, level) {
      const r = await fetch(`${url}/config/${encodeURIComponent(subject)}`, { method: 'PUT', headers: ct, body: JSON.stringify({ compatibility: level }) });
      if (!r.ok) throw new Error(`PUT /config/${subject}: HTTP ${r.status} ${await r.text()}`);
    },
    async latestId(subject) {
      const r = await fetch(`${url}/subjects/${encodeURIComponent(subject)}/versions/latest`);
      if (!r.ok) throw new Error(`GET /subjects/${subject}/versions/latest: HTTP ${r.status} ${await r.text()}`);
      return ((await r.json()) as { id: number }).id;
    },
  };
}

/** One record as the independent reader (test/registry-reader/read.py) decoded it. */
export interface TypedRecord {
  partition: number;
  offset: number;
  key: string | null;
  headers: Record<string, string>;
  schema_id: number | null;
  /** The decoded value (Avro/JSON Schema: as the JSON it stands for; Protobuf: its JSON mapping with the declared field names). */
  value?: Record<string, unknown>;
  /** Why the value did not decode. */
  error?: string;
}

export interface ReadTypedOptions {
  bootstrap: string;
  registryUrl: string;
  topic: string;
  format: 'avro' | 'protobuf' | 'json_schema';
  /** Protobuf: the full name of the message written. */
  message?: string;
  expected?: number;
  timeoutMs?: number;
}

/**
 * Reads a topic with Confluent's Python client, decoding every value through the registry with
 * Confluent's deserializers (see test/registry-reader/read.py). Not the bridge's code.
 */
export function readTyped(o: ReadTypedOptions): Promise<TypedRecord[]> {
  ensureRegistryInstalled();
  const python = path.join(readerVenv(), 'bin', 'python');
  const timeoutS = (o.timeoutMs ?? 60_000) / 1000;
  const args = [
    path.join(repoRoot, 'test', 'registry-reader', 'read.py'),
    '--bootstrap', o.bootstrap,
    '--registry', o.registryUrl,
    '--topic', o.topic,
    '--format', o.format,
    '--expected', String(o.expected ?? 0),
    '--timeout', String(timeoutS),
    ...(o.message ? ['--message', o.message] : []),
  ];
  return new Promise((resolve, reject) => {
    execFile(python, args, { timeout: (timeoutS + 30) * 1000, maxBuffer: 512 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`the registry reader failed: ${err.message}\n${stderr}`));
        return;
      }
      const out = stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as TypedRecord);
      out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
      resolve(out);
    });
  });
}

/** What a per-key order check found. */
export interface KeyOrder {
  /** Distinct (key, seq) pairs. */
  distinct: number;
  /** Copies beyond the first of a (key, seq). */
  duplicates: number;
  /** First copies that came after a higher seq of the same key (partition order). */
  orderViolations: number;
  /** Keys found in more than one partition. */
  splitKeys: string[];
}

/** Checks per-key order of `records` (in partition/offset order) by a per-key increasing number. */
export function checkKeyOrder<R extends { partition: number; offset: number }>(records: readonly R[], keyOf: (r: R) => string, seqOf: (r: R) => number): KeyOrder {
  const seen = new Map<string, Set<number>>();
  const last = new Map<string, number>();
  const parts = new Map<string, Set<number>>();
  let duplicates = 0;
  let orderViolations = 0;
  for (const r of [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    const k = keyOf(r);
    const q = seqOf(r);
    let s = seen.get(k);
    if (!s) seen.set(k, (s = new Set()));
    let p = parts.get(k);
    if (!p) parts.set(k, (p = new Set()));
    p.add(r.partition);
    if (s.has(q)) {
      duplicates++;
      continue;
    }
    s.add(q);
    if (q < (last.get(k) ?? -Infinity)) orderViolations++;
    else last.set(k, q);
  }
  let distinct = 0;
  for (const s of seen.values()) distinct += s.size;
  return { distinct, duplicates, orderViolations, splitKeys: [...parts].filter(([, p]) => p.size > 1).map(([k]) => k) };
}
