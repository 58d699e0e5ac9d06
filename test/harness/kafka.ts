import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Kafka as KafkaJs, logLevel, type Admin } from 'kafkajs';
import { kcatRead, type ReadRecord } from './kcat.js';
import { freePorts } from './ports.js';
import { ensureBrokersInstalled, findExecutable, makeTempDir, ManagedProcess, repoRoot, spawnLogged } from './process.js';

const KAFKA_VERSION = '4.4.0';

export type { ReadRecord };

export interface KafkaOptions {
  /** PLAINTEXT listener port on 127.0.0.1; a free one is picked if omitted. */
  port?: number;
  /** KRaft controller listener port; a free one is picked if omitted. */
  controllerPort?: number;
  /** log.dirs; a temp dir if omitted. An already formatted dir is reused (no reformat). */
  dataDir?: string;
  /** Where server.properties and kafka.log go; defaults to $HARNESS_LOG_DIR or a temp dir. */
  logDir?: string;
  /** Extra / overriding server.properties entries. */
  extraProps?: Record<string, string>;
  /**
   * Extra arguments for `StorageTool format` on a fresh data dir, e.g.
   * `['--add-scram', 'SCRAM-SHA-512=[name=alice,password=alice-secret]']` to create SCRAM users.
   */
  formatArgs?: string[];
}

export interface ReadTopicOptions {
  /** Keep polling until at least this many records are seen (or the timeout passes). */
  expected?: number;
  /** Total time budget; default 30 s. */
  timeoutMs?: number;
}

/** A private single-node KRaft Kafka (broker+controller in one JVM) started by the harness. */
export interface Kafka {
  readonly port: number;
  readonly controllerPort: number;
  /** '127.0.0.1:port' */
  readonly bootstrap: string;
  /** PID of the current JVM (undefined while stopped). */
  readonly pid: number | undefined;
  readonly dataDir: string;
  readonly logFile: string;
  readonly running: boolean;
  /** Starts the JVM again after stop()/kill9(): same ports, same data dir, no reformat. */
  start(): Promise<void>;
  /** SIGTERM (controlled shutdown) and wait; SIGKILL after 30 s. */
  stop(): Promise<void>;
  /**
   * SIGKILL: a crash. The next start() takes ~11 s instead of ~2 s: the controller refuses the new
   * broker registration until the dead incarnation's session expires (broker.session.timeout.ms,
   * 9 s by default; extraProps can lower it, e.g. 3000 with broker.heartbeat.interval.ms=1000 -> ~6 s).
   */
  kill9(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /** Creates a topic (no-op if it exists) and waits until every partition has a leader. */
  createTopic(name: string, partitions?: number): Promise<void>;
  /**
   * Reads the whole topic from the beginning with kcat, polling until `expected` records are seen
   * or the timeout passes, then returns what was read (so a test's assertion shows the shortfall).
   * Throws only if kcat itself still fails at the deadline (e.g. the topic does not exist).
   */
  readTopic(topic: string, opts?: ReadTopicOptions): Promise<ReadRecord[]>;
  /** partition -> high watermark (the next offset to be written), via the kafkajs admin. */
  endOffsets(topic: string): Promise<Record<number, number>>;
  /** Runs `fn` with a connected kafkajs admin, disconnecting afterwards. */
  withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T>;
}

/** Directory holding the Kafka jars (see scripts/install-brokers.sh). */
export function kafkaLibsDir(): string {
  return process.env.KAFKA_LIBS_DIR ?? path.join(repoRoot, '.cache', `kafka-${KAFKA_VERSION}`, 'libs');
}

/**
 * Formats (first time only) and starts a single-node KRaft Kafka on 127.0.0.1, resolving once a
 * kafkajs admin can list topics. Installs the jars first if they are missing.
 */
export async function startKafka(opts: KafkaOptions = {}): Promise<Kafka> {
  const libs = kafkaLibsDir();
  if (!fs.existsSync(path.join(libs, `kafka_2.13-${KAFKA_VERSION}.jar`))) ensureBrokersInstalled();
  const [p1, p2] = await freePorts(2);
  const port = opts.port ?? (p1 as number);
  const controllerPort = opts.controllerPort ?? (p2 as number);
  const logDir = opts.logDir ?? process.env.HARNESS_LOG_DIR ?? makeTempDir('kafka-');
  fs.mkdirSync(logDir, { recursive: true });
  const dataDir = opts.dataDir ?? makeTempDir('kafka-data-');
  fs.mkdirSync(dataDir, { recursive: true });

  const props: Record<string, string> = {
    'process.roles': 'broker,controller',
    'node.id': '1',
    // Static voter set; do not combine with `StorageTool format --standalone`.
    'controller.quorum.voters': `1@127.0.0.1:${controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names': 'CONTROLLER',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'inter.broker.listener.name': 'PLAINTEXT',
    'log.dirs': dataDir,
    'num.partitions': '1',
    'offsets.topic.replication.factor': '1',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    'group.initial.rebalance.delay.ms': '0',
    // Tests create their topics explicitly; a typo should fail, not auto-create.
    'auto.create.topics.enable': 'false',
    ...opts.extraProps,
  };
  const configFile = path.join(logDir, `server-${port}.properties`);
  fs.writeFileSync(configFile, Object.entries(props).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
  const logFile = path.join(logDir, `kafka-${port}.log`);

  // Format only a fresh data dir: reformatting would wipe the cluster id and fail on restart.
  if (!fs.existsSync(path.join(dataDir, 'meta.properties'))) {
    await formatStorage(libs, configFile, logFile, opts.formatArgs ?? []);
  }
  const kafka = new KafkaBroker(libs, port, controllerPort, configFile, dataDir, logFile);
  await kafka.start();
  return kafka;
}

function javaArgs(libs: string, heap: boolean): string[] {
  return [
    ...(heap ? ['-Xmx512m', '-Xms256m'] : ['-Xmx256m']),
    // One GC thread and quick startup: the machine has 2 cores shared with node and mosquitto.
    '-XX:+UseSerialGC',
    '-XX:-UsePerfData',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${path.join(repoRoot, 'scripts', 'kafka', 'log4j2.properties')}`,
    '-cp',
    // java expands the trailing '*' itself (no shell involved).
    `${libs}/*`,
  ];
}

async function formatStorage(libs: string, configFile: string, logFile: string, extraArgs: readonly string[]): Promise<void> {
  // A KRaft cluster id is a base64url UUID (22 chars); avoid a leading '-' that the CLI parser
  // would take for an option.
  let clusterId = randomBytes(16).toString('base64url');
  while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url');
  const proc = spawnLogged(
    'java',
    [...javaArgs(libs, false), 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', configFile, ...extraArgs],
    { logFile, name: 'kafka-storage-format' },
  );
  const exit = await proc.waitExit(120_000);
  if (exit.code !== 0) {
    throw new Error(`kafka StorageTool format failed (${JSON.stringify(exit)}):\n${proc.logTail()}`);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class KafkaBroker implements Kafka {
  private proc: ManagedProcess | undefined;

  constructor(
    private readonly libs: string,
    readonly port: number,
    readonly controllerPort: number,
    private readonly configFile: string,
    readonly dataDir: string,
    readonly logFile: string,
  ) {}

  get bootstrap(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const proc = spawnLogged('java', [...javaArgs(this.libs, true), 'kafka.Kafka', this.configFile], {
      logFile: this.logFile,
      name: `kafka:${this.port}`,
    });
    this.proc = proc;
    // The port opens before the broker can serve metadata, so wait for a real admin round trip.
    const deadline = Date.now() + 90_000;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (!proc.running) {
        throw new Error(`kafka exited during startup (pid ${proc.pid}):\n${proc.logTail()}`);
      }
      try {
        await this.withAdmin((admin) => admin.listTopics());
        return;
      } catch (err) {
        lastError = err;
        await sleep(250);
      }
    }
    await proc.stop('SIGKILL');
    throw new Error(`kafka did not become ready in 90 s: ${String(lastError)}\n${proc.logTail()}`);
  }

  async stop(): Promise<void> {
    await this.proc?.stop('SIGTERM', 30_000);
  }

  async kill9(): Promise<void> {
    await this.proc?.kill9();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
    // A short-lived client per call: it survives broker restarts without stale connections,
    // and the retry loops live in the callers, so kafkajs' own retries are kept short.
    const client = new KafkaJs({
      clientId: 'test-harness',
      brokers: [this.bootstrap],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 2000,
      retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 500 },
    });
    const admin = client.admin();
    await admin.connect();
    try {
      return await fn(admin);
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  async createTopic(name: string, partitions = 1): Promise<void> {
    await this.withAdmin(async (admin) => {
      await admin.createTopics({ topics: [{ topic: name, numPartitions: partitions }], waitForLeaders: true });
      // waitForLeaders relies on kafkajs' metadata retries; check explicitly so a test never
      // produces into a partition that is still leaderless.
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          const md = await admin.fetchTopicMetadata({ topics: [name] });
          const parts = md.topics[0]?.partitions ?? [];
          if (parts.length === partitions && parts.every((p) => p.leader >= 0)) return;
        } catch {
          // UNKNOWN_TOPIC_OR_PARTITION while metadata propagates: retry
        }
        if (Date.now() > deadline) throw new Error(`topic ${name} has no leader after 30 s`);
        await sleep(100);
      }
    });
  }

  async endOffsets(topic: string): Promise<Record<number, number>> {
    const offsets = await this.withAdmin((admin) => admin.fetchTopicOffsets(topic));
    const out: Record<number, number> = {};
    for (const o of offsets) out[o.partition] = Number(o.high);
    return out;
  }

  async readTopic(topic: string, opts: ReadTopicOptions = {}): Promise<ReadRecord[]> {
    let kcat = findExecutable('kcat', 'KCAT_BIN');
    if (!kcat) {
      ensureBrokersInstalled();
      kcat = findExecutable('kcat', 'KCAT_BIN');
      if (!kcat) throw new Error('kcat not found after running scripts/install-brokers.sh');
    }
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    let records: ReadRecord[] = [];
    for (;;) {
      const remaining = Math.max(1000, deadline - Date.now());
      try {
        records = await kcatRead(kcat, this.bootstrap, topic, remaining);
      } catch (err) {
        // e.g. topic metadata not there yet, or the broker restarting: retry until the deadline
        if (Date.now() >= deadline) throw err;
      }
      if (opts.expected === undefined || records.length >= opts.expected || Date.now() >= deadline) return records;
      await sleep(250);
    }
  }
}
