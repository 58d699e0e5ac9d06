import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { startBridgeProcess, type BridgeProcess } from './bridge.js';
import { makeTempDir } from './process.js';

export interface ReplicaSetOptions {
  /** How many replicas (each a bridge process with its own client id and spool). */
  replicas: number;
  /** Environment shared by every replica (MQTT_BROKER, KAFKA_BROKER, MQTT_TOPIC, MQTT_SHARED_GROUP, …). */
  env: Record<string, string>;
  /** Client ids are `<clientIdPrefix><index>`, like a StatefulSet's pod names. */
  clientIdPrefix: string;
  /** Parent directory of the replicas' spool and log directories; a temp dir by default. */
  dir?: string;
  /**
   * A session group (BRIDGE_GROUP): every replica uses this one MQTT client id (the sessions
   * belong to the group) and `<clientIdPrefix><index>` as BRIDGE_INSTANCE_ID instead.
   */
  sharedClientId?: string;
  /** Extra environment for one replica (its own proxy ports, say). */
  envFor?: (index: number) => Record<string, string>;
}

/** One replica: a fixed client id and spool directory, and the bridge process of its current life (if running). */
export interface Replica {
  readonly index: number;
  readonly clientId: string;
  readonly dir: string;
  readonly spoolPath: string;
  readonly env: Record<string, string>;
  /** The current process; undefined while the replica is stopped or killed. */
  bridge: BridgeProcess | undefined;
  /** How many times it was started. */
  lives: number;
}

/** Counters read from one replica's /metrics, summed over its lives. */
export interface ReplicaCounts {
  received: number;
  written: number;
  spooled: number;
  redelivered: number;
}

const COUNTERS: Record<keyof ReplicaCounts, string> = {
  received: 'mqtt_kafka_messages_received_total',
  written: 'mqtt_kafka_records_written_total',
  spooled: 'mqtt_kafka_spool_records_spooled_total',
  redelivered: 'mqtt_kafka_mqtt_redelivered_total',
};

/**
 * Several bridges side by side, as a StatefulSet runs them: same settings, client id and spool per
 * replica (`<prefix>0`, `<prefix>1`, …), each its own process so a test can SIGKILL one and start
 * it again with the same id and spool. A poller reads every running replica's counters twice a
 * second, so what a replica had counted is kept when it is SIGKILLed (at most half a second stale).
 */
export class ReplicaSet {
  readonly replicas: Replica[];
  private readonly counts: ReplicaCounts[];
  private readonly lifeCounts: ReplicaCounts[];
  private poller: NodeJS.Timeout | undefined;

  constructor(private readonly opts: ReplicaSetOptions) {
    const dir = opts.dir ?? makeTempDir('replicas-');
    this.replicas = Array.from({ length: opts.replicas }, (_, index) => {
      const rdir = path.join(dir, `replica-${index}`);
      fs.mkdirSync(rdir, { recursive: true });
      const clientId = `${opts.clientIdPrefix}${index}`;
      const spoolPath = path.join(rdir, 'spool.db');
      const ids: Record<string, string> = opts.sharedClientId !== undefined ? { MQTT_CLIENT_ID: opts.sharedClientId, BRIDGE_INSTANCE_ID: clientId } : { MQTT_CLIENT_ID: clientId };
      return { index, clientId, dir: rdir, spoolPath, env: { ...opts.env, ...ids, ...opts.envFor?.(index), SPOOL_PATH: spoolPath }, bridge: undefined, lives: 0 };
    });
    const zero = (): ReplicaCounts => ({ received: 0, written: 0, spooled: 0, redelivered: 0 });
    this.counts = this.replicas.map(zero);
    this.lifeCounts = this.replicas.map(zero);
  }

  /** Starts every replica (in parallel) and the counter poller; resolves once all are ready. */
  async startAll(): Promise<void> {
    await Promise.all(this.replicas.map((r) => this.start(r.index)));
    this.poller ??= setInterval(() => void this.poll(), 500);
  }

  /** Starts replica `i` (same client id, same spool); resolves once it is ready (subscribed). */
  async start(i: number, waitReady = true): Promise<BridgeProcess> {
    const r = this.replicas[i]!;
    if (r.bridge?.proc.running) throw new Error(`replica ${i} is already running`);
    this.foldLife(i);
    r.lives++;
    r.bridge = await startBridgeProcess({ logDir: r.dir, env: r.env, waitReady });
    // Every life appends to the same bridge.log.
    return r.bridge;
  }

  /** SIGKILL: a crash or a lost node. Nothing of the process' state is saved. */
  async kill9(i: number): Promise<void> {
    const r = this.replicas[i]!;
    await r.bridge?.proc.kill9();
  }

  /** SIGTERM (graceful stop) and wait for the exit; returns the exit code. */
  async stop(i: number, timeoutMs = 60_000): Promise<number | null> {
    const r = this.replicas[i]!;
    if (!r.bridge) return null;
    await this.pollOne(i);
    const exit = await r.bridge.proc.stop('SIGTERM', timeoutMs);
    return exit.code;
  }

  async stopAll(): Promise<void> {
    if (this.poller) clearInterval(this.poller);
    this.poller = undefined;
    await Promise.all(this.replicas.map((r) => (r.bridge?.proc.running ? r.bridge.proc.stop('SIGTERM', 30_000).catch(() => r.bridge?.proc.kill9()) : undefined)));
  }

  /** Replicas whose process is running. */
  running(): Replica[] {
    return this.replicas.filter((r) => r.bridge?.proc.running === true);
  }

  /** A session group's MQTT session `session`: the running replicas that report it connected. */
  async holdersOf(session = 0): Promise<number[]> {
    const out: number[] = [];
    for (const r of this.running()) {
      if ((await r.bridge!.metric('mqtt_kafka_session_connected', { session: String(session) }).catch(() => 0)) === 1) out.push(r.index);
    }
    return out;
  }

  /** Waits until exactly one running replica holds session `session` connected, and it is not `not`; its index. */
  async sessionOwner(opts: { session?: number; not?: number; timeoutMs?: number } = {}): Promise<number> {
    let found = -1;
    await waitUntil(
      `one replica holding session ${opts.session ?? 0}, connected`,
      async () => {
        const h = await this.holdersOf(opts.session ?? 0);
        found = h.length === 1 && h[0] !== opts.not ? h[0]! : -1;
        return found >= 0;
      },
      opts.timeoutMs ?? 30_000,
    );
    return found;
  }

  /** Counters of replica `i`, summed over its lives (read now if it is running). */
  async counters(i: number): Promise<ReplicaCounts> {
    await this.pollOne(i);
    const a = this.counts[i]!;
    const b = this.lifeCounts[i]!;
    return { received: a.received + b.received, written: a.written + b.written, spooled: a.spooled + b.spooled, redelivered: a.redelivered + b.redelivered };
  }

  /** Unacknowledged messages and spool rows over the running replicas. */
  async backlog(): Promise<{ unacked: number; spoolRows: number }> {
    let unacked = 0;
    let spoolRows = 0;
    for (const r of this.running()) {
      unacked += await r.bridge!.metric('mqtt_kafka_unacked_messages');
      spoolRows += await r.bridge!.metric('mqtt_kafka_spool_rows');
    }
    return { unacked, spoolRows };
  }

  private async poll(): Promise<void> {
    await Promise.all(this.replicas.map((r) => this.pollOne(r.index)));
  }

  private async pollOne(i: number): Promise<void> {
    const b = this.replicas[i]!.bridge;
    if (!b?.proc.running) return;
    try {
      const m = await b.metrics();
      const life = this.lifeCounts[i]!;
      for (const [k, name] of Object.entries(COUNTERS) as [keyof ReplicaCounts, string][]) {
        let sum = 0;
        for (const [key, v] of m) if (key === name || key.startsWith(`${name}{`)) sum += v;
        life[k] = sum;
      }
    } catch {
      // The process is going away; the last reading stands.
    }
  }

  /** Adds the counts of the life that ended to the replica's total. */
  private foldLife(i: number): void {
    const a = this.counts[i]!;
    const b = this.lifeCounts[i]!;
    a.received += b.received;
    a.written += b.written;
    a.spooled += b.spooled;
    a.redelivered += b.redelivered;
    b.received = b.written = b.spooled = b.redelivered = 0;
  }
}

/** Rows in a (stopped or running) bridge's spool file, read without taking its lock; 0 if there is no file. */
export function spoolRowsOnDisk(spoolPath: string): number {
  if (!fs.existsSync(spoolPath)) return 0;
  const db = new Database(spoolPath, { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'records'").all();
    if (tables.length === 0) return 0;
    return (db.prepare('SELECT count(*) AS n FROM records').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/**
 * Mosquitto's own view of its clients ($SYS/broker/clients/…; the broker must publish them often:
 * `sys_interval 1`). `disconnected` counts persistent sessions whose client is away, so a session
 * that was ended (not just left) is not in it. Also the broker's count of stored messages.
 */
export async function mosquittoSys(url: string, timeoutMs = 5000): Promise<Record<string, number>> {
  const c = await mqtt.connectAsync(url, { clientId: `sys-probe-${process.pid}-${Date.now()}`, clean: true, reconnectPeriod: 0 });
  const out: Record<string, number> = {};
  try {
    await new Promise<void>((resolve) => {
      const want = ['$SYS/broker/clients/disconnected', '$SYS/broker/clients/connected', '$SYS/broker/clients/total', '$SYS/broker/store/messages/count'];
      const timer = setTimeout(resolve, timeoutMs);
      c.on('message', (topic, payload) => {
        out[topic.replace('$SYS/broker/', '')] = Number(payload.toString());
        if (want.every((w) => out[w.replace('$SYS/broker/', '')] !== undefined)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void c.subscribeAsync(want, { qos: 0 });
    });
  } finally {
    await c.endAsync();
  }
  return out;
}

/** Waits until `pred` holds, polling every 250 ms; throws `what` after `timeoutMs`. */
export async function waitUntil(what: string, pred: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      if (await pred()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (${String(last)})` : ''}`);
}

/** The variables every replica of a session-group test shares: badges under `<name>/badge/#` to topic `<name>`. */
export function groupEnv(name: string, mqttPort: number, kafkaBrokers: string): Record<string, string> {
  return {
    MQTT_BROKER: '127.0.0.1',
    MQTT_PORT: String(mqttPort),
    MQTT_TOPIC: `${name}/badge/#`,
    MQTT_KEEPALIVE_S: '5',
    KAFKA_BROKERS: kafkaBrokers,
    KAFKA_TOPIC: name,
    KAFKA_WORKERS: '2',
  };
}
