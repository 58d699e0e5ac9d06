import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBadges, makeTempDir, publishBadges, startBridgeProcess, startKafka, startMosquitto, type Kafka, type Mosquitto } from '../harness/index.js';

/**
 * KAFKA_COMPRESSION end to end: for each codec the bridge writes real traffic, kcat (librdkafka,
 * an independent client) reads it back intact, and the record batches in Kafka's own log
 * segments carry that codec — reading back alone would not show that compression happened.
 */
const CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'] as const;
/** Record batch attributes, low 3 bits (Kafka's message format v2). */
const CODEC_ID: Record<(typeof CODECS)[number], number> = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 };
const BADGES = 20;
const PER_BADGE = 25;

let mosq: Mosquitto;
let kafka: Kafka;

beforeAll(async () => {
  [mosq, kafka] = await Promise.all([startMosquitto(), startKafka()]);
  for (const c of CODECS) await kafka.createTopic(`codec-${c}`, 2);
});

afterAll(async () => {
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

/** The compression codec of every record batch in the topic's log segments on disk. */
function batchCodecs(topic: string): number[] {
  const codecs: number[] = [];
  for (const dir of readdirSync(kafka.dataDir).filter((d) => d.startsWith(`${topic}-`))) {
    for (const f of readdirSync(path.join(kafka.dataDir, dir)).filter((x) => x.endsWith('.log'))) {
      const buf = readFileSync(path.join(kafka.dataDir, dir, f));
      // baseOffset int64, batchLength int32 (bytes after this field), partitionLeaderEpoch int32,
      // magic int8, crc int32, attributes int16 (offset 21).
      for (let at = 0; at + 23 <= buf.length; ) {
        const length = buf.readInt32BE(at + 8);
        if (length <= 0) break;
        expect(buf.readInt8(at + 16)).toBe(2); // magic: format v2
        codecs.push(buf.readInt16BE(at + 21) & 0x7);
        at += 12 + length;
      }
    }
  }
  return codecs;
}

describe('KAFKA_COMPRESSION', () => {
  it.each(CODECS)('%s: written by the bridge, read back intact by kcat, stored with that codec', async (codec) => {
    const dir = makeTempDir(`codec-${codec}-`);
    const b = await startBridgeProcess({
      logDir: dir,
      env: {
        MQTT_BROKER: '127.0.0.1',
        MQTT_PORT: String(mosq.port),
        MQTT_TOPIC: `codec/${codec}/#`,
        MQTT_CLIENT_ID: `codec-${codec}`,
        KAFKA_BROKER: '127.0.0.1',
        KAFKA_PORT: String(kafka.port),
        KAFKA_TOPIC: `codec-${codec}`,
        KAFKA_COMPRESSION: codec,
        SPOOL_PATH: `${dir}/spool.db`,
      },
    });
    try {
      const published = await publishBadges({ url: mosq.url, badges: BADGES, perBadge: PER_BADGE, topic: (id) => `codec/${codec}/${id}` });
      const records = await kafka.readTopic(`codec-${codec}`, { expected: published });
      const check = checkBadges(records, BADGES, PER_BADGE);
      expect(check.missing).toEqual([]);
      expect(check.outOfOrder).toEqual([]);
      expect(records.every((r) => r.headers['mqtt.topic']?.startsWith(`codec/${codec}/`))).toBe(true);
      const codecs = batchCodecs(`codec-${codec}`);
      expect(codecs.length).toBeGreaterThan(0);
      expect(new Set(codecs)).toEqual(new Set([CODEC_ID[codec]]));
    } finally {
      await b.proc.stop('SIGTERM');
    }
  });
});
