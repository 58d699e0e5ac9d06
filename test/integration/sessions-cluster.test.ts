import { readFileSync } from 'node:fs';
import { FindCoordinatorKeyTypes } from '@platformatic/kafka';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBadges,
  publishBadges,
  groupEnv,
  ReplicaSet,
  startKafkaCluster,
  startMosquitto,
  waitUntil,
  type KafkaCluster,
  type Mosquitto,
  type ReadRecord,
} from '../harness/index.js';

/**
 * A session group (BRIDGE_GROUP) on a real 3-node KRaft cluster, one Mosquitto: 2 replicas
 * share 1 MQTT session while the broker that is the group's coordinator (FindCoordinator for
 * BRIDGE_GROUP) is SIGKILLed mid-stream, so the coordinator moves to another node (a new
 * leader of the group's __consumer_offsets partition). 500 badges with per-badge sequence
 * numbers, QoS 1, read back by kcat. Asserted: 0 lost. Counted and printed: duplicates, out of
 * order, MQTT connections that wrote records (1 = the session never moved) and the broker's
 * session takeovers (Mosquitto's log).
 */
const BADGES = 500;
const PER = 80;
const RATE = 2000;

let mosq: Mosquitto;
let cluster: KafkaCluster;
const sets: ReplicaSet[] = [];

beforeAll(async () => {
  [mosq, cluster] = await Promise.all([startMosquitto(), startKafkaCluster({ nodes: 3, extraProps: { 'group.initial.rebalance.delay.ms': '0' } })]);
}, 180_000);

afterAll(async () => {
  for (const s of sets) await s.stopAll().catch(() => undefined);
  await Promise.all([mosq?.stop(), cluster?.stop()]);
});

async function coordinatorOf(group: string): Promise<number> {
  const found = await cluster.withAdmin((admin) => admin.findCoordinator({ keyType: FindCoordinatorKeyTypes.GROUP, keys: [group] }));
  return found[0]!.nodeId;
}

const writerOf = (r: ReadRecord) => (r.headers['mqtt.message_id'] ?? '').split('-')[0]!;

describe('session group on a 3-node Kafka cluster', () => {
  it('SIGKILL of the group coordinator broker mid-stream (2 replicas, 1 session, 40,000 @ 2,000/s): 0 lost; takeovers counted', async () => {
    const name = 'grp-coord';
    await cluster.createTopic(name, 6, { replicationFactor: 3, configs: { 'min.insync.replicas': '2' } });
    await cluster.waitInSync(name, 3);
    const set = new ReplicaSet({
      replicas: 2,
      clientIdPrefix: `${name}-`,
      sharedClientId: `${name}-bridge`,
      env: {
        ...groupEnv(name, mosq.port, cluster.bootstrap),
        KAFKA_WRITE_TIMEOUT_MS: '5000',
        KAFKA_CONNECT_TIMEOUT_MS: '2000',
        SPOOL_REPLAY_INTERVAL_MS: '1000',
        BRIDGE_GROUP: name,
        BRIDGE_SESSION_RELEASE_MS: '8000',
      },
    });
    sets.push(set);
    await set.startAll();
    const first = await set.sessionOwner();
    const coordinator = await coordinatorOf(name);
    const log0 = readFileSync(mosq.logFile).length;
    let killedAt = 0;
    const t0 = Date.now();
    await publishBadges({
      url: mosq.url,
      badges: BADGES,
      perBadge: PER,
      ratePerS: RATE,
      topic: (id) => `${name}/badge/${id}/hb`,
      onProgress: (n) => {
        if (n === 12_000) {
          killedAt = Date.now();
          void cluster.node(coordinator).kill9();
        }
      },
    });
    const total = BADGES * PER;
    // Until everything is in Kafka and both replicas are idle.
    await waitUntil(
      `${name}: ${total} records and the replicas idle`,
      async () => {
        const n = Object.values(await cluster.endOffsets(name)).reduce((a, b) => a + b, 0);
        const b = await set.backlog();
        return n >= total && b.unacked === 0 && b.spoolRows === 0;
      },
      90_000,
    );
    const after = await set.sessionOwner();
    const newCoordinator = await coordinatorOf(name);
    const records = await cluster.readTopic(name, { expected: total, timeoutMs: 90_000 });
    const c = checkBadges(records, BADGES, PER);
    const writers = new Set(records.map(writerOf));
    const writersAfter = new Set(records.filter((r) => r.timestamp >= killedAt).map(writerOf));
    const brokerTakeovers = readFileSync(mosq.logFile, 'utf8')
      .slice(log0)
      .split('\n')
      .filter((l) => l.includes(`Client ${name}-bridge already connected, closing old connection`)).length;
    const spooled = (await set.counters(0)).spooled + (await set.counters(1)).spooled;
    console.log(
      `[sessions-cluster] coordinator SIGKILL: ${total} published, ${c.distinct} distinct in Kafka (${records.length} records); lost ${c.missing.length}, duplicates ${c.duplicates}, out of order ${c.orderViolations} (${c.outOfOrder.length} badges); ` +
        `coordinator node ${coordinator} -> ${newCoordinator}; owner #${first} -> #${after}; MQTT connections that wrote ${writers.size} (after the kill ${writersAfter.size}); broker takeovers ${brokerTakeovers}; spooled ${spooled}; seconds ${Math.round((Date.now() - t0) / 1000)}`,
    );
    expect(c.splitPartitions).toEqual([]);
    expect(newCoordinator).not.toBe(coordinator);
    expect(c.missing.length).toBe(0);
  }, 180_000);
});
