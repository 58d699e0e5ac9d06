import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBadges, makeTempDir, publishBadges, startBridgeProcess, startKafka, startMosquitto, type Kafka, type Mosquitto } from '../harness/index.js';

/**
 * IDLE_MEMORY_RELEASE_MS against the real brokers: a bridge that has been busy gives the pages
 * of its burst back once it has been quiet for the period, never while messages flow, once
 * per quiet period, and loses nothing around it. Prints one line: lost, duplicates, out of
 * order, RSS before and after, and the collection's pause.
 */
const BADGES = 50;
const QUIET_MS = 3_000;

let mosq: Mosquitto;
let kafka: Kafka;

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  await kafka.createTopic('idle-memory', 4);
}, 120_000);

afterAll(async () => {
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('idle memory release (IDLE_MEMORY_RELEASE_MS)', () => {
  it('runs when the bridge has been quiet, not while messages flow, once per quiet period; nothing lost around it', async () => {
    const dir = makeTempDir('idle-memory-');
    const b = await startBridgeProcess({
      logDir: dir,
      env: {
        MQTT_BROKER: '127.0.0.1',
        MQTT_PORT: String(mosq.port),
        MQTT_TOPIC: 'idle/#',
        MQTT_CLIENT_ID: 'idle-memory',
        KAFKA_BROKER: '127.0.0.1',
        KAFKA_PORT: String(kafka.port),
        KAFKA_TOPIC: 'idle-memory',
        IDLE_MEMORY_RELEASE_MS: String(QUIET_MS),
        LOG_LEVEL: 'debug',
      },
    });
    const releases = () => b.metric('mqtt_kafka_idle_memory_releases_total');
    try {
      await b.waitReady();
      // Start-up may have been quiet long enough for one: count from here.
      const r0 = await releases();
      // A steady stream for about 8 s (gaps far below the quiet period): no release.
      const sentA = await publishBadges({ url: mosq.url, badges: BADGES, perBadge: 80, ratePerS: 500, topic: (id) => `idle/a/${id}` });
      const rA = await releases();
      // Then a burst at full speed, which touches the whole young generation.
      const sentB = await publishBadges({ url: mosq.url, badges: BADGES, perBadge: 400, topic: (id) => `idle/b/${id}` });
      await b.waitFor('the burst written', async () => (await b.metric('mqtt_kafka_records_written_total')) >= sentA + sentB, 60_000);
      const before = rssMb(b.proc.pid);
      await b.waitFor('a release after the burst', async () => (await releases()) > rA, QUIET_MS * 4);
      const after = rssMb(b.proc.pid);
      const rAfterBurst = await releases();
      // Still quiet for two more periods: no second release (the next is 5 minutes away).
      await sleep(QUIET_MS * 2);
      const rStill = await releases();
      // Traffic again: it flows, and the next quiet period brings the next release.
      const sentC = await publishBadges({ url: mosq.url, badges: BADGES, perBadge: 40, topic: (id) => `idle/c/${id}` });
      await b.waitFor('a release after the second burst', async () => (await releases()) > rStill, QUIET_MS * 4);

      const records = await kafka.readTopic('idle-memory', { expected: sentA + sentB + sentC });
      const part = (p: string) => records.filter((r) => r.headers['mqtt.topic']?.startsWith(`idle/${p}/`));
      const checks = [checkBadges(part('a'), BADGES, 80), checkBadges(part('b'), BADGES, 400), checkBadges(part('c'), BADGES, 40)];
      const line = b.logLines().find((l) => l.msg === 'quiet: memory-reducing garbage collection ran');
      const pauseS = await b.metric('mqtt_kafka_idle_memory_release_seconds_total');
      process.stdout.write(
        `[idle-memory] lost ${checks.reduce((n, c) => n + c.missing.length, 0)}, duplicates ${checks.reduce((n, c) => n + c.duplicates, 0)}, out of order ${checks.reduce((n, c) => n + c.outOfOrder.length, 0)}; ` +
          `releases during the stream ${rA - r0}; RSS ${before.toFixed(1)} -> ${after.toFixed(1)} MB; ${(await releases()) - r0} releases, ${((pauseS * 1000) / Math.max(1, await releases())).toFixed(0)} ms each\n`,
      );
      expect(rA - r0).toBe(0);
      expect(rAfterBurst - rA).toBe(1);
      expect(rStill).toBe(rAfterBurst);
      expect(before - after).toBeGreaterThan(10);
      expect(line).toMatchObject({ level: 'debug' });
      for (const c of checks) {
        expect(c.missing).toEqual([]);
        expect(c.outOfOrder).toEqual([]);
        expect(c.duplicates).toBe(0);
      }
    } finally {
      await b.proc.stop('SIGTERM');
    }
  }, 180_000);
});
