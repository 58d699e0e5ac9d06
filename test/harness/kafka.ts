import { Admin } from '@platformatic/kafka';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startBlackholeProxy, type BlackholeProxy } from './blackhole-proxy.js';
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
  /** Client paths through black-hole proxies (see `ClientPath`), by name. */
  clientPaths?: readonly string[];
}

/**
 * One client's network path to Kafka, through a proxy per node that can go silent or refuse
 * (blackhole-proxy.ts). Each path is its own listener on every node, advertised as that node's
 * proxy, so a client bootstrapped through `bootstrap` keeps following metadata to proxies of
 * this path only: black-holing path 'a' cuts the clients that use 'a', nobody else, and not the
 * brokers' replication (which stays on the PLAINTEXT listener).
 */
export interface ClientPath {
  readonly name: string;
  /** Bootstrap list through this path's proxies: 'host:port[,host:port…]'. */
  readonly bootstrap: string;
  /** node id → its proxy on this path. */
  readonly proxies: ReadonlyMap<number, BlackholeProxy>;
  /** Silence this path to every node, or to the given ones. */
  blackhole(nodeIds?: readonly number[]): void;
  /** Refuse connections on this path (to every node, or the given ones). */
  refuse(nodeIds?: readonly number[]): void;
  /** Open the path again (every node, or the given ones). */
  heal(nodeIds?: readonly number[]): void;
}

export interface ReadTopicOptions {
  /** Keep polling until at least this many records are seen (or the timeout passes). */
  expected?: number;
  /** Total time budget; default 30 s. */
  timeoutMs?: number;
}

export interface TopicOptions {
  /** Replication factor (default 1 on a single node, 3 on the cluster). */
  replicationFactor?: number;
  /** Topic-level configs, e.g. { 'min.insync.replicas': '2' }. */
  configs?: Record<string, string>;
}

/** What a single broker and the cluster both offer tests. */
export interface KafkaAccess {
  /** Bootstrap list for clients: 'host:port[,host:port…]'. */
  readonly bootstrap: string;
  /** Creates a topic (no-op if it exists) and waits until every partition has a leader. */
  createTopic(name: string, partitions?: number, opts?: TopicOptions): Promise<void>;
  /**
   * Reads the whole topic from the beginning with kcat, polling until `expected` records are seen
   * or the timeout passes, then returns what was read (so a test's assertion shows the shortfall).
   * Throws only if kcat itself still fails at the deadline (e.g. the topic does not exist).
   */
  readTopic(topic: string, opts?: ReadTopicOptions): Promise<ReadRecord[]>;
  /** partition -> high watermark (the next offset to be written). */
  endOffsets(topic: string): Promise<Record<number, number>>;
  /** Runs `fn` with an admin client (@platformatic/kafka), closing it afterwards. */
  withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T>;
  /** A client path asked for with `clientPaths` at start. */
  path(name: string): ClientPath;
}

/** A private single-node KRaft Kafka (broker+controller in one JVM) started by the harness. */
export interface Kafka extends KafkaAccess {
  readonly port: number;
  readonly controllerPort: number;
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
}

/** Directory holding the Kafka jars (see scripts/install-brokers.sh). */
export function kafkaLibsDir(): string {
  return process.env.KAFKA_LIBS_DIR ?? path.join(repoRoot, '.cache', `kafka-${KAFKA_VERSION}`, 'libs');
}

function ensureJars(): string {
  const libs = kafkaLibsDir();
  if (!fs.existsSync(path.join(libs, `kafka_2.13-${KAFKA_VERSION}.jar`))) ensureBrokersInstalled();
  return libs;
}

/** Properties every node gets; `props` override them. */
function baseProps(dataDir: string, port: number, controllerPort: number, paths: readonly NodePath[] = []): Record<string, string> {
  const names = paths.map((p) => listenerName(p.name));
  return {
    'process.roles': 'broker,controller',
    listeners: [`PLAINTEXT://127.0.0.1:${port}`, `CONTROLLER://127.0.0.1:${controllerPort}`, ...paths.map((p, i) => `${names[i]}://127.0.0.1:${p.listenerPort}`)].join(','),
    'advertised.listeners': [`PLAINTEXT://127.0.0.1:${port}`, ...paths.map((p, i) => `${names[i]}://127.0.0.1:${p.proxyPort}`)].join(','),
    'controller.listener.names': 'CONTROLLER',
    'listener.security.protocol.map': ['PLAINTEXT:PLAINTEXT', 'CONTROLLER:PLAINTEXT', ...names.map((n) => `${n}:PLAINTEXT`)].join(','),
    'inter.broker.listener.name': 'PLAINTEXT',
    'log.dirs': dataDir,
    'num.partitions': '1',
    'group.initial.rebalance.delay.ms': '0',
    // Tests create their topics explicitly; a typo should fail, not auto-create.
    'auto.create.topics.enable': 'false',
  };
}

/** A client path's ports on one node: the broker's own listener, and the proxy advertised for it. */
interface NodePath {
  readonly name: string;
  readonly listenerPort: number;
  readonly proxyPort: number;
}

function listenerName(path: string): string {
  if (!/^[a-z0-9_]+$/i.test(path)) throw new Error(`client path name ${JSON.stringify(path)}: letters, digits and _ only`);
  return `PATH_${path.toUpperCase()}`;
}

/** Ports for every client path on `nodes` nodes: [node index][path index]. */
async function planPaths(names: readonly string[], nodes: number): Promise<NodePath[][]> {
  const ports = await freePorts(2 * names.length * nodes);
  return Array.from({ length: nodes }, (_, n) =>
    names.map((name, i) => ({ name, listenerPort: ports[2 * (n * names.length + i)]!, proxyPort: ports[2 * (n * names.length + i) + 1]! })),
  );
}

/** Starts the proxies of every client path (node ids 1..n) and returns the paths by name. */
async function startPaths(names: readonly string[], plan: NodePath[][]): Promise<Map<string, ClientPath>> {
  const out = new Map<string, ClientPath>();
  for (const [i, name] of names.entries()) {
    const proxies = new Map<number, BlackholeProxy>();
    for (const [n, node] of plan.entries()) {
      const np = node[i]!;
      proxies.set(n + 1, await startBlackholeProxy({ port: np.proxyPort, targetPort: np.listenerPort }));
    }
    const pick = (ids?: readonly number[]) => [...proxies].filter(([id]) => ids === undefined || ids.includes(id)).map(([, p]) => p);
    out.set(name, {
      name,
      bootstrap: [...proxies.values()].map((p) => `127.0.0.1:${p.port}`).join(','),
      proxies,
      blackhole: (ids) => pick(ids).forEach((p) => p.blackhole()),
      refuse: (ids) => pick(ids).forEach((p) => p.refuse()),
      heal: (ids) => pick(ids).forEach((p) => p.heal()),
    });
  }
  return out;
}

/**
 * Formats (first time only) and starts a single-node KRaft Kafka on 127.0.0.1, resolving once an
 * admin client can list topics. Installs the jars first if they are missing.
 */
export async function startKafka(opts: KafkaOptions = {}): Promise<Kafka> {
  const libs = ensureJars();
  const [p1, p2] = await freePorts(2);
  const port = opts.port ?? (p1 as number);
  const controllerPort = opts.controllerPort ?? (p2 as number);
  const logDir = opts.logDir ?? process.env.HARNESS_LOG_DIR ?? makeTempDir('kafka-');
  const dataDir = opts.dataDir ?? makeTempDir('kafka-data-');
  const pathNames = opts.clientPaths ?? [];
  const plan = await planPaths(pathNames, 1);
  const node = new KafkaNode(libs, 1, port, controllerPort, dataDir, logDir, {
    ...baseProps(dataDir, port, controllerPort, plan[0]),
    'node.id': '1',
    // Static voter set; do not combine with `StorageTool format --standalone`.
    'controller.quorum.voters': `1@127.0.0.1:${controllerPort}`,
    'offsets.topic.replication.factor': '1',
    'transaction.state.log.replication.factor': '1',
    'transaction.state.log.min.isr': '1',
    ...opts.extraProps,
  });
  await node.format(newClusterId(), opts.formatArgs ?? []);
  await node.start();
  await node.waitServing(90_000);
  return new SingleKafka(node, await startPaths(pathNames, plan));
}

export interface KafkaClusterOptions {
  /** Nodes (each broker + controller in one JVM, all voters); default 3. */
  nodes?: number;
  /** Extra / overriding server.properties entries for every node. */
  extraProps?: Record<string, string>;
  logDir?: string;
  /** Client paths through black-hole proxies (see `ClientPath`), by name. */
  clientPaths?: readonly string[];
}

/**
 * A KRaft cluster of combined broker+controller nodes on 127.0.0.1: default replication factor
 * 3 and min.insync.replicas 2, so acks=all writes survive one node down and fail (as they must)
 * with two down. A node's failure is detected after broker.session.timeout.ms (6 s here).
 */
export interface KafkaCluster extends KafkaAccess {
  readonly nodes: readonly KafkaNode[];
  node(id: number): KafkaNode;
  /** partition -> leader node id (-1: none), from a live node. */
  leaders(topic: string): Promise<Map<number, number>>;
  /** partition -> in-sync replica ids, from a live node. */
  isr(topic: string): Promise<Map<number, number[]>>;
  /** Waits until every partition of `topic` has a leader and `replicas` in-sync replicas. */
  waitInSync(topic: string, replicas: number, timeoutMs?: number): Promise<void>;
  /** Stops every node (SIGTERM). */
  stop(): Promise<void>;
}

export async function startKafkaCluster(opts: KafkaClusterOptions = {}): Promise<KafkaCluster> {
  const libs = ensureJars();
  const n = opts.nodes ?? 3;
  const ports = await freePorts(2 * n);
  const logDir = opts.logDir ?? process.env.HARNESS_LOG_DIR ?? makeTempDir('kafka-cluster-');
  const voters = Array.from({ length: n }, (_, i) => `${i + 1}@127.0.0.1:${ports[n + i]}`).join(',');
  const pathNames = opts.clientPaths ?? [];
  const plan = await planPaths(pathNames, n);
  const nodes = Array.from({ length: n }, (_, i) => {
    const port = ports[i]!;
    const controllerPort = ports[n + i]!;
    const dataDir = makeTempDir(`kafka-node${i + 1}-`);
    return new KafkaNode(libs, i + 1, port, controllerPort, dataDir, logDir, {
      ...baseProps(dataDir, port, controllerPort, plan[i]),
      'node.id': String(i + 1),
      'controller.quorum.voters': voters,
      'default.replication.factor': String(Math.min(3, n)),
      'min.insync.replicas': String(Math.min(2, n)),
      'offsets.topic.replication.factor': String(Math.min(3, n)),
      'transaction.state.log.replication.factor': String(Math.min(3, n)),
      'transaction.state.log.min.isr': String(Math.min(2, n)),
      'unclean.leader.election.enable': 'false',
      // Detect a dead node in 6 s instead of 9 (Kafka's default); heartbeats every second.
      'broker.session.timeout.ms': '6000',
      'broker.heartbeat.interval.ms': '1000',
      ...opts.extraProps,
    }, '-Xmx384m');
  });
  const clusterId = newClusterId();
  await Promise.all(nodes.map((node) => node.format(clusterId, [])));
  // All at once: no node can serve before a quorum of controllers is up.
  await Promise.all(nodes.map((node) => node.start()));
  await Promise.all(nodes.map((node) => node.waitServing(120_000)));
  return new Cluster(nodes, await startPaths(pathNames, plan));
}

function newClusterId(): string {
  // A KRaft cluster id is a base64url UUID (22 chars); avoid a leading '-' that the CLI parser
  // would take for an option.
  let id = randomBytes(16).toString('base64url');
  while (id.startsWith('-')) id = randomBytes(16).toString('base64url');
  return id;
}

function javaArgs(libs: string, heap: string | undefined): string[] {
  return [
    ...(heap ? [heap, '-Xms128m'] : ['-Xmx256m']),
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

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A short-lived admin client per call: it survives broker restarts without stale connections. */
async function withAdminAt<T>(bootstrap: readonly string[], fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = new Admin({ clientId: 'test-harness', bootstrapBrokers: [...bootstrap], connectTimeout: 2000, requestTimeout: 5000, timeout: 5000, retries: 1, retryDelay: 200 });
  try {
    return await fn(admin);
  } finally {
    await admin.close().catch(() => undefined);
  }
}

/** One Kafka JVM (broker + controller). */
export class KafkaNode {
  private proc: ManagedProcess | undefined;
  readonly configFile: string;
  readonly logFile: string;

  constructor(
    private readonly libs: string,
    readonly id: number,
    readonly port: number,
    readonly controllerPort: number,
    readonly dataDir: string,
    logDir: string,
    props: Record<string, string>,
    private readonly heap = '-Xmx512m',
  ) {
    fs.mkdirSync(logDir, { recursive: true });
    fs.mkdirSync(dataDir, { recursive: true });
    this.configFile = path.join(logDir, `server-${port}.properties`);
    fs.writeFileSync(this.configFile, Object.entries(props).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
    this.logFile = path.join(logDir, `kafka-${port}.log`);
  }

  get bootstrap(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  /** Formats a fresh data dir (a formatted one is kept: reformatting would wipe the cluster id). */
  async format(clusterId: string, extraArgs: readonly string[]): Promise<void> {
    if (fs.existsSync(path.join(this.dataDir, 'meta.properties'))) return;
    const proc = spawnLogged('java', [...javaArgs(this.libs, undefined), 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', this.configFile, ...extraArgs], {
      logFile: this.logFile,
      name: 'kafka-storage-format',
    });
    const exit = await proc.waitExit(120_000);
    if (exit.code !== 0) throw new Error(`kafka StorageTool format failed (${JSON.stringify(exit)}):\n${proc.logTail()}`);
  }

  /** Starts the JVM (no-op if running); does not wait for it to serve. */
  async start(): Promise<void> {
    if (this.running) return;
    this.proc = spawnLogged('java', [...javaArgs(this.libs, this.heap), 'kafka.Kafka', this.configFile], { logFile: this.logFile, name: `kafka:${this.port}` });
  }

  /**
   * Waits until this node answers metadata requests and is a registered, unfenced broker in the
   * cluster it reports (the port opens well before that).
   */
  async waitServing(timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (!this.proc?.running) throw new Error(`kafka node ${this.id} exited during startup:\n${this.proc?.logTail() ?? ''}`);
      try {
        const md = await withAdminAt([this.bootstrap], (admin) => admin.metadata({ topics: [], forceUpdate: true }));
        if (md.brokers.has(this.id)) return;
        lastError = new Error(`node ${this.id} not yet registered (brokers ${[...md.brokers.keys()].join(',')})`);
      } catch (err) {
        lastError = err;
      }
      await sleep(250);
    }
    await this.proc?.stop('SIGKILL');
    throw new Error(`kafka node ${this.id} did not serve in ${timeoutMs} ms: ${String(lastError)}\n${this.proc?.logTail() ?? ''}`);
  }

  /** SIGTERM (controlled shutdown: leadership moves away first) and wait; SIGKILL after 30 s. */
  async stop(): Promise<void> {
    await this.proc?.stop('SIGTERM', 30_000);
  }

  /** SIGKILL: a crash, no controlled shutdown. */
  async kill9(): Promise<void> {
    await this.proc?.kill9();
  }
}

abstract class Access implements KafkaAccess {
  abstract get bootstrapList(): string[];

  constructor(protected readonly paths: ReadonlyMap<string, ClientPath>) {}

  path(name: string): ClientPath {
    const p = this.paths.get(name);
    if (!p) throw new Error(`no client path ${JSON.stringify(name)} (start Kafka with clientPaths: [${JSON.stringify(name)}])`);
    return p;
  }

  /** Closes the client paths' proxies. */
  protected async closePaths(): Promise<void> {
    await Promise.all([...this.paths.values()].flatMap((p) => [...p.proxies.values()].map((x) => x.close())));
  }

  get bootstrap(): string {
    return this.bootstrapList.join(',');
  }

  withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
    return withAdminAt(this.bootstrapList, fn);
  }

  async createTopic(name: string, partitions = 1, opts: TopicOptions = {}): Promise<void> {
    await this.withAdmin(async (admin) => {
      const existing = await admin.listTopics();
      if (!existing.includes(name)) {
        await admin.createTopics({
          topics: [name],
          partitions,
          replicas: opts.replicationFactor ?? this.defaultReplicas(),
          configs: Object.entries(opts.configs ?? {}).map(([k, v]) => ({ name: k, value: v })),
        });
      }
    });
    // Check explicitly so a test never produces into a partition that is still leaderless.
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const leaders = await this.partitionLeaders(name);
        if (leaders.size === partitions && [...leaders.values()].every((l) => l >= 0)) return;
      } catch {
        // UNKNOWN_TOPIC_OR_PARTITION while metadata propagates: retry
      }
      if (Date.now() > deadline) throw new Error(`topic ${name} has no leader after 30 s`);
      await sleep(100);
    }
  }

  protected defaultReplicas(): number {
    return 1;
  }

  protected async partitionLeaders(topic: string): Promise<Map<number, number>> {
    const md = await this.withAdmin((admin) => admin.metadata({ topics: [topic], forceUpdate: true }));
    const t = md.topics.get(topic);
    const out = new Map<number, number>();
    t?.partitions.forEach((p, i) => out.set(i, p.leader));
    return out;
  }

  async endOffsets(topic: string): Promise<Record<number, number>> {
    const leaders = await this.partitionLeaders(topic);
    const listed = await this.withAdmin((admin) =>
      admin.listOffsets({ topics: [{ name: topic, partitions: [...leaders.keys()].map((p) => ({ partitionIndex: p, timestamp: -1n })) }] }),
    );
    const out: Record<number, number> = {};
    for (const t of listed) for (const p of t.partitions) out[p.partitionIndex] = Number(p.offset);
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
        // e.g. topic metadata not there yet, or a broker restarting: retry until the deadline
        if (Date.now() >= deadline) throw err;
      }
      if (opts.expected === undefined || records.length >= opts.expected || Date.now() >= deadline) return records;
      await sleep(250);
    }
  }
}

class SingleKafka extends Access implements Kafka {
  constructor(
    private readonly node: KafkaNode,
    paths: ReadonlyMap<string, ClientPath>,
  ) {
    super(paths);
  }
  get bootstrapList(): string[] {
    return [this.node.bootstrap];
  }
  get port(): number {
    return this.node.port;
  }
  get controllerPort(): number {
    return this.node.controllerPort;
  }
  get pid(): number | undefined {
    return this.node.pid;
  }
  get dataDir(): string {
    return this.node.dataDir;
  }
  get logFile(): string {
    return this.node.logFile;
  }
  get running(): boolean {
    return this.node.running;
  }
  async start(): Promise<void> {
    if (this.node.running) return;
    await this.node.start();
    await this.node.waitServing(90_000);
  }
  stop(): Promise<void> {
    return this.node.stop();
  }
  kill9(): Promise<void> {
    return this.node.kill9();
  }
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

class Cluster extends Access implements KafkaCluster {
  constructor(
    readonly nodes: readonly KafkaNode[],
    paths: ReadonlyMap<string, ClientPath>,
  ) {
    super(paths);
  }

  /** Every node's address: clients find the live ones. */
  get bootstrapList(): string[] {
    return this.nodes.map((n) => n.bootstrap);
  }

  node(id: number): KafkaNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  protected override defaultReplicas(): number {
    return Math.min(3, this.nodes.length);
  }

  /** Admin through the running nodes only, so a dead node's connect timeout does not slow every call. */
  override withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
    const live = this.nodes.filter((n) => n.running).map((n) => n.bootstrap);
    return withAdminAt(live.length > 0 ? live : this.bootstrapList, fn);
  }

  leaders(topic: string): Promise<Map<number, number>> {
    return this.partitionLeaders(topic);
  }

  async isr(topic: string): Promise<Map<number, number[]>> {
    const md = await this.withAdmin((admin) => admin.metadata({ topics: [topic], forceUpdate: true }));
    const out = new Map<number, number[]>();
    md.topics.get(topic)?.partitions.forEach((p, i) => out.set(i, [...p.isr]));
    return out;
  }

  async waitInSync(topic: string, replicas: number, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        const md = await this.withAdmin((admin) => admin.metadata({ topics: [topic], forceUpdate: true }));
        const parts = md.topics.get(topic)?.partitions ?? [];
        if (parts.length > 0 && parts.every((p) => p.leader >= 0 && p.isr.length >= replicas)) return;
        last = parts.map((p, i) => `${i}:${p.leader}/[${p.isr.join(',')}]`).join(' ');
      } catch (err) {
        last = String(err);
      }
      if (Date.now() > deadline) throw new Error(`${topic}: not ${replicas} in sync after ${timeoutMs} ms (${last})`);
      await sleep(250);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    await this.closePaths();
  }
}
