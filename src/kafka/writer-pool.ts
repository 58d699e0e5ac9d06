import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { describeError } from '../errors.js';
import { FaultReporter } from '../observability/fault-reporter.js';
import type { Spool } from '../spool/types.js';
import { workerFor } from './hash.js';
import { classifyKafkaError, refusedForGood } from './errors.js';
import type { KafkaProducerClient, Pending, WriteErrorKind } from './types.js';

/** What the writers report; implemented by src/observability. */
export interface WriterTelemetry {
  written(records: number, bytes: number, latencyMs: number, path: 'direct' | 'replay'): void;
  writeError(kind: WriteErrorKind, path: 'direct' | 'replay'): void;
  workersSpooling(count: number, total: number): void;
}

export interface WriterPoolDeps {
  readonly logger: Logger;
  readonly telemetry: WriterTelemetry;
  readonly createClient: (name: string) => KafkaProducerClient;
  readonly spool: Spool;
  /** These entries are acknowledged by Kafka (acks=all): settle them. */
  readonly onWritten: (entries: readonly Pending[]) => void;
  /** Kafka refused these single records for good (too large): dead-letter them. */
  readonly onRejected: (entries: readonly Pending[], kind: WriteErrorKind) => void;
  /** Kafka write failures, shared with the replayer so an outage is one fault (default: the pool's own). */
  readonly kafkaFault?: FaultReporter;
  /** A batch whose delivery was in doubt has been resolved (its spooled rows deleted, or released for replay). */
  readonly onInDoubtResolved?: () => void;
}

/**
 * The one "Kafka writes fail" fault of a bridge: the writer pool's workers and the replayer
 * report into it (each as its own source), so an outage logs one line when it starts, a
 * summary a minute while it lasts and one line once every worker and the replayer write again.
 */
export function kafkaWriteFault(logger: Logger, opts: { settleMs?: number } = {}): FaultReporter {
  return new FaultReporter({
    settleMs: opts.settleMs,
    logger: logger.child({ component: 'kafka' }),
    fault: 'kafka_write',
    level: 'warn',
    startMsg: 'Kafka writes failing; records go to the spool and are replayed when Kafka is back',
    summaryMsg: 'Kafka writes still failing; records go to the spool',
    endMsg: 'Kafka writable again',
  });
}

export type WritePath = 'direct' | 'spooling';

const OK = Symbol('ok');
const IN_DOUBT = Symbol('in doubt');

/**
 * The topic-hash writer pool. A record goes to worker hash(key) % N. Each worker has one
 * produce request in flight and sends everything that queued meanwhile as one batch, so
 * per-key order holds and throughput comes from batching.
 *
 * When a worker's write fails it switches to the spooling path: the failed batch, then its
 * queue, then every later record go to the spool in that order, so a key's records are never
 * both pending in memory and spooled, and never overtake each other. The replayer switches
 * workers back once the spool is empty.
 *
 * A write that Kafka has not answered within KAFKA_WRITE_TIMEOUT_MS is in doubt: it may have
 * been written. It is not abandoned: the producer that sent it keeps retrying it with the same
 * producer id, epoch and sequences (so Kafka writes it once, KIP-98) until it succeeds, fails
 * for good, or KAFKA_DELIVERY_TIMEOUT_MS passes. Meanwhile the batch is spooled marked in doubt
 * (durable, so its messages are PUBACKed without waiting), followed by the queue and later
 * records as above; the spool does not replay in-doubt rows, nor anything behind them. When the
 * delivery succeeds its rows are deleted; when it fails the mark is dropped and replay sends them.
 *
 * The workers take turns (KAFKA_LINGER_MS, see Turns): while one worker's request is out,
 * another waits up to the linger time, or until it has a full batch, before it sends its own.
 */
export class WriterPool {
  private readonly workers: Worker[];
  private readonly fault: FaultReporter;
  private readonly turns: Turns;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly config: Config['kafka'],
    private readonly deps: WriterPoolDeps,
    /** Start on the spooling path (the spool holds records from an earlier run). */
    startSpooling: boolean,
  ) {
    this.fault = deps.kafkaFault ?? kafkaWriteFault(deps.logger);
    this.turns = new Turns(config.workers > 1 ? config.lingerMs : 0);
    this.workers = Array.from({ length: config.workers }, (_, i) => new Worker(i, config, deps, this.fault, this.turns, startSpooling ? 'spooling' : 'direct', () => this.reportPath()));
    this.reportPath();
  }

  /** Sets every worker's producer up ahead of its first write (in the background; never fails). */
  connect(): void {
    for (const w of this.workers) w.connect();
  }

  submit(entry: Pending): void {
    this.workers[workerFor(entry.keyHash, this.workers.length)]!.submit(entry);
  }

  /** Records waiting in worker queues (not yet in a produce request). */
  get queued(): number {
    let n = 0;
    for (const w of this.workers) n += w.queued;
    return n;
  }

  get spoolingWorkers(): number {
    return this.workers.filter((w) => w.path === 'spooling').length;
  }

  /** True when the last direct write of every direct worker succeeded. */
  get lastWriteOk(): boolean {
    return this.workers.every((w) => w.lastWriteOk);
  }

  /**
   * Called by the replayer when the spool is empty: back to Kafka directly. `first`: records the
   * spool held back without storing them, in order; they are submitted before anything else, so
   * they keep their place ahead of later records of their keys.
   */
  switchAllToDirect(first: readonly Pending[] = []): void {
    let changed = 0;
    for (const w of this.workers) {
      if (w.toDirect()) changed++;
      // Kafka took everything the spool held: no worker's failure is current any more.
      this.fault.ok(w.source);
    }
    for (const e of first) this.submit(e);
    if (changed > 0) {
      this.deps.logger.child({ component: 'writer' }).info({ workers: changed, heldRecords: first.length }, 'spool drained; writing to Kafka directly again');
      this.reportPath();
    }
  }

  private reportPath(): void {
    this.deps.telemetry.workersSpooling(this.spoolingWorkers, this.workers.length);
  }

  /**
   * Drains the queues: direct workers finish writing what they hold until `deadlineMs`; what is
   * still queued then goes to the spool. Idempotent.
   */
  close(deadlineMs: number): Promise<void> {
    this.closing ??= (async () => {
      // No more waiting for turns: every worker sends what it holds now.
      this.turns.stopLingering();
      await Promise.all(this.workers.map((w) => w.drain(deadlineMs)));
      await Promise.all(this.workers.map((w) => w.close()));
    })();
    return this.closing;
  }
}

/**
 * Turn-taking between the workers (KAFKA_LINGER_MS). A worker may send when no other worker's
 * request is in flight; otherwise it waits until the last one comes back (the waiter that
 * started waiting first goes next), until its queue holds a full batch, or until it has
 * waited `lingerMs`, whichever comes first. With Kafka close by, requests come back well
 * within the linger time and the workers send one after the other: each request carries what
 * its worker gathered meanwhile, so the pool makes about as many requests as one worker would
 * (fewer, larger requests cost less CPU in the bridge and in Kafka). With Kafka far away the
 * waits run out and the requests overlap, one per worker, as without turns. A worker's own
 * records are still sent in order with at most one request in flight, so per-key order is
 * untouched; turns only decide when a batch leaves.
 */
class Turns {
  private inFlight = 0;
  private readonly waiting: Worker[] = [];
  private lingering: boolean;

  constructor(private readonly lingerMs: number) {
    this.lingering = lingerMs > 0;
  }

  /** Starts a turn at once if the worker may send now; false: call wait(). */
  tryStart(): boolean {
    if (this.lingering && this.inFlight > 0) return false;
    this.inFlight++;
    return true;
  }

  /** Resolves when `w` may send (its turn has started). */
  wait(w: Worker): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiting.push(w);
      w.turnWaiter = { resolve, timer: setTimeout(() => this.grant(w), this.lingerMs) };
    });
  }

  /** Starts `w`'s turn now (its wait ran out, or it holds a full batch). */
  grant(w: Worker): void {
    const waiter = w.turnWaiter;
    if (!waiter) return;
    w.turnWaiter = undefined;
    clearTimeout(waiter.timer);
    const i = this.waiting.indexOf(w);
    if (i >= 0) this.waiting.splice(i, 1);
    this.inFlight++;
    waiter.resolve();
  }

  /** A turn is over (its request came back, or was given up for the spool). */
  end(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.waiting.length > 0) this.grant(this.waiting[0]!);
  }

  /** At shutdown: every waiting worker sends now, and later ones do not wait. */
  stopLingering(): void {
    this.lingering = false;
    while (this.waiting.length > 0) this.grant(this.waiting[0]!);
  }
}

class Worker {
  private queue: Pending[] = [];
  private head = 0;
  /** Bytes of the records queued (not yet taken into a batch). */
  private queuedBytes = 0;
  /** Set while the worker waits for its turn (see Turns). */
  turnWaiter: { resolve: () => void; timer: NodeJS.Timeout } | undefined;
  private running: Promise<void> | undefined;
  private readonly client: KafkaProducerClient;
  private readonly log: Logger;
  /** Set at the shutdown deadline with a request still out: its late outcome is ignored. */
  private abandoned = false;
  /** The delivery of a batch spooled in doubt, while its producer is still resolving it. */
  private delivering: Promise<void> | undefined;
  lastWriteOk = true;

  constructor(
    readonly index: number,
    private readonly config: Config['kafka'],
    private readonly deps: WriterPoolDeps,
    private readonly fault: FaultReporter,
    private readonly turns: Turns,
    public path: WritePath,
    private readonly onPathChange: () => void,
  ) {
    this.client = deps.createClient(`worker-${index}`);
    this.log = deps.logger.child({ component: 'writer', worker: index });
  }

  /** This worker's name as a fault source. */
  get source(): string {
    return `worker-${this.index}`;
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  connect(): void {
    void this.client.connect();
  }

  submit(entry: Pending): void {
    if (this.path === 'spooling') {
      this.appendToSpool([entry]);
      return;
    }
    this.queue.push(entry);
    this.queuedBytes += entry.bytes;
    // A full batch does not wait for its turn.
    if (this.turnWaiter && (this.queued >= this.config.batchMaxMessages || this.queuedBytes >= this.config.batchMaxBytes)) this.turns.grant(this);
    this.running ??= this.run();
  }

  toDirect(): boolean {
    // Its in-doubt batch is still in the spool (or held by it): later records go behind it.
    if (this.path === 'direct' || this.delivering) return false;
    this.path = 'direct';
    this.lastWriteOk = true;
    return true;
  }

  private takeBatch(): Pending[] {
    const max = this.config.batchMaxMessages;
    const maxBytes = this.config.batchMaxBytes;
    let bytes = 0;
    let end = this.head;
    while (end < this.queue.length && end - this.head < max) {
      const b = this.queue[end]!.bytes;
      if (end > this.head && bytes + b > maxBytes) break;
      bytes += b;
      end++;
    }
    const batch = this.queue.slice(this.head, end);
    this.head = end;
    this.queuedBytes -= bytes;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 10_000) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  private async run(): Promise<void> {
    try {
      while (this.queued > 0 && this.path === 'direct') {
        if (!this.turns.tryStart()) await this.turns.wait(this);
        let unsent: Pending[] = [];
        try {
          // Nothing left after the wait (given up at the shutdown deadline): no empty request.
          if (this.queued > 0) unsent = await this.write(this.takeBatch());
        } finally {
          this.turns.end();
        }
        // A batch left in doubt switched the worker to spooling: the queue goes behind it.
        if (unsent.length > 0 || (this.path as WritePath) === 'spooling') this.spoolFrom(unsent);
      }
    } finally {
      this.running = undefined;
    }
  }

  /** Writes `batch`; returns the entries (a suffix, in order) that could not be written. */
  private async write(batch: Pending[]): Promise<Pending[]> {
    const t0 = performance.now();
    const delivery = this.client.send(batch.map((e) => e.record));
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      delivery.then(
        (): typeof OK => OK,
        (err: unknown) => ({ err }),
      ),
      new Promise<typeof IN_DOUBT>((r) => (timer = setTimeout(() => r(IN_DOUBT), this.config.writeTimeoutMs))),
    ]);
    clearTimeout(timer);
    if (outcome === IN_DOUBT) {
      this.inDoubt(batch, delivery, t0);
      return [];
    }
    if (outcome !== OK) {
      const err = outcome.err;
      const kind = classifyKafkaError(err);
      this.deps.telemetry.writeError(kind, 'direct');
      if (refusedForGood(kind)) return this.writeSplit(batch, err, kind);
      this.lastWriteOk = false;
      this.fault.fail(err, {
        source: this.source,
        msg: 'Kafka write failed; spooling records until replay succeeds',
        fields: { worker: this.index, kind, records: batch.length + this.queued },
      });
      return batch;
    }
    const bytes = batchBytes(batch);
    this.lastWriteOk = true;
    this.fault.ok(this.source);
    this.deps.telemetry.written(batch.length, bytes, performance.now() - t0, 'direct');
    this.deps.onWritten(batch);
    return [];
  }

  /**
   * Kafka has not answered `batch` within KAFKA_WRITE_TIMEOUT_MS. Its producer keeps at it
   * (same sequences); the batch goes to the spool marked in doubt, and the worker switches to the
   * spooling path (run() spools the queue behind it). The delivery's outcome then deletes the rows (Kafka has them)
   * or releases them for replay.
   */
  private inDoubt(batch: Pending[], delivery: Promise<void>, t0: number): void {
    this.lastWriteOk = false;
    this.deps.telemetry.writeError('timeout', 'direct');
    this.fault.fail(new Error(`no acknowledgement within KAFKA_WRITE_TIMEOUT_MS (${this.config.writeTimeoutMs} ms)`), {
      source: this.source,
      msg: 'Kafka has not acknowledged a write in time; spooling records while the producer keeps retrying that batch (it is not replayed meanwhile)',
      fields: { worker: this.index, kind: 'timeout', records: batch.length + this.queued, deliveryTimeoutMs: this.config.deliveryTimeoutMs },
    });
    let token: number | undefined;
    if (!this.abandoned) {
      try {
        token = this.deps.spool.appendInDoubt(batch);
      } catch (err) {
        this.log.info({ records: batch.length, err: describeError(err) }, 'records left unacknowledged at shutdown');
      }
    }
    // The caller (run) spools what follows it, in order.
    if (this.path !== 'spooling') {
      this.path = 'spooling';
      this.onPathChange();
    }
    const resolved = (delivered: boolean): Pending[] => {
      this.delivering = undefined;
      if (token === undefined) return [];
      try {
        return this.deps.spool.resolveInDoubt(token, delivered);
      } catch (err) {
        this.log.debug({ err: describeError(err) }, 'in-doubt batch resolved after the spool closed');
        return [];
      }
    };
    this.delivering = delivery.then(
      () => {
        this.deps.telemetry.written(batch.length, batchBytes(batch), performance.now() - t0, 'direct');
        // Entries the spool had not committed yet were never acknowledged: Kafka has them now.
        const unsettled = resolved(true);
        if (unsettled.length > 0) this.deps.onWritten(unsettled);
        this.log.info({ records: batch.length, ms: Math.round(performance.now() - t0) }, 'Kafka acknowledged the batch that was in doubt; its spooled copy is deleted');
        this.deps.onInDoubtResolved?.();
      },
      (err: unknown) => {
        const kind = classifyKafkaError(err);
        this.deps.telemetry.writeError(kind, 'direct');
        resolved(false);
        this.log.warn(
          { err: describeError(err), kind, records: batch.length, ms: Math.round(performance.now() - t0) },
          'the batch that was in doubt was not delivered (failed for good or KAFKA_DELIVERY_TIMEOUT_MS passed); replay sends its spooled copy from a new producer (a duplicate if the first attempt had been written)',
        );
        this.deps.onInDoubtResolved?.();
      },
    );
  }

  /** Kafka refused the batch for good (too large, invalid): halve it until single records remain; those are rejected. */
  private async writeSplit(batch: Pending[], err: unknown, kind: WriteErrorKind): Promise<Pending[]> {
    if (batch.length === 1) {
      // Per record, so not at warn: the dead letter that follows is logged once with its context.
      this.log.debug({ err: describeError(err), kind, topic: batch[0]!.record.topic, messageId: batch[0]!.id }, 'Kafka refused a record for good; dead-lettering it');
      this.deps.onRejected(batch, kind);
      return [];
    }
    const mid = batch.length >> 1;
    const first = await this.write(batch.slice(0, mid));
    // Not written, or left in doubt (the worker then spools): the second half goes behind it.
    if (first.length > 0 || this.path === 'spooling') return first.concat(batch.slice(mid));
    return this.write(batch.slice(mid));
  }

  /** Switches to the spooling path: `unsent`, then the queue, then later records, in order. */
  private spoolFrom(unsent: Pending[]): void {
    if (this.abandoned) return;
    const rest = this.queue.slice(this.head);
    this.queue = [];
    this.queuedBytes = 0;
    this.head = 0;
    if (this.path !== 'spooling') {
      this.path = 'spooling';
      this.onPathChange();
    }
    this.appendToSpool(unsent.concat(rest));
  }

  private appendToSpool(entries: Pending[]): void {
    try {
      this.deps.spool.append(entries);
    } catch (err) {
      // Only after shutdown closed the spool: these were never acknowledged, the broker redelivers them.
      this.log.info({ records: entries.length, err: describeError(err) }, 'records left unacknowledged at shutdown');
    }
  }

  async drain(deadlineMs: number): Promise<void> {
    const remaining = deadlineMs - Date.now();
    if (this.running && remaining > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.running, new Promise((r) => (timer = setTimeout(r, remaining)))]);
      clearTimeout(timer);
    }
    if (this.delivering && deadlineMs - Date.now() > 0) {
      // Its batch is durable in the spool; its outcome decides whether the rows go or stay.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.delivering, new Promise((r) => (timer = setTimeout(r, deadlineMs - Date.now())))]);
      clearTimeout(timer);
    }
    if (this.running) {
      // A produce request is still out. Spooling the queue now would put later records of its
      // keys ahead of it if it then failed, so the worker gives up instead: none of this is
      // acknowledged, and the broker redelivers it all, in order, to the next session.
      this.abandoned = true;
      this.log.warn({ records: this.queued }, 'shutdown deadline: a Kafka write is still pending; leaving its records and those queued behind it unacknowledged');
      this.queue = [];
      this.queuedBytes = 0;
      this.head = 0;
      return;
    }
    // Whatever is still queued is made durable in the spool (and acknowledged from there).
    if (this.queued > 0) {
      this.log.info({ records: this.queued }, 'shutdown: spooling records still queued');
      const rest = this.queue.slice(this.head);
      this.queue = [];
      this.queuedBytes = 0;
      this.head = 0;
      this.appendToSpool(rest);
    }
  }

  async close(): Promise<void> {
    await this.client.close().catch(() => undefined);
  }
}

/** The records' bytes (an indexed loop: once per batch, for-of would allocate per record until optimized). */
function batchBytes(batch: readonly Pending[]): number {
  let bytes = 0;
  for (let i = 0; i < batch.length; i++) bytes += batch[i]!.bytes;
  return bytes;
}
