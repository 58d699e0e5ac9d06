/**
 * `npm run demo`: the bridge for real on this machine. Starts Mosquitto and Kafka on loopback
 * (installing them first if needed), the bridge with the Cyberpartner badge routes
 * (examples/routes/cyberpartner.yaml), and a badge simulator publishing
 * cackalacky/badge/egress/{badge_id}/... messages. Prints live counts every second; Ctrl-C
 * stops everything it started.
 *
 * DEMO_RATE (messages/s, default 500), DEMO_BADGES (default 50).
 */
import path from 'node:path';
import mqtt from 'mqtt';
import { parse } from 'yaml';
import { readFileSync } from 'node:fs';
import { makeTempDir, repoRoot, startBridgeProcess, startKafka, startMosquitto, stopAll } from '../test/harness/index.js';

const RATE = Number(process.env.DEMO_RATE ?? 500);
const BADGES = Number(process.env.DEMO_BADGES ?? 50);
const ROUTES = path.join(repoRoot, 'examples', 'routes', 'cyberpartner.yaml');

const EVENTS = ['heartbeat', 'achievement/first_boot', 'game/button.touch', 'cp/create', 'cp/state', 'cp/inventory', 'store/buy', 'world/day/mass.locusts', 'kiosk/checkin', 'cp/death', 'deadbeef'];

async function main(): Promise<void> {
  const dir = makeTempDir('demo-');
  console.log(`starting Mosquitto and Kafka on loopback (logs and spool in ${dir}) …`);
  const [mosq, kafka] = await Promise.all([startMosquitto({ logDir: dir }), startKafka({ logDir: dir })]);
  const doc = parse(readFileSync(ROUTES, 'utf8')) as { routes: { topic: string }[] };
  const topics = [...new Set(doc.routes.map((r) => r.topic)), 'mqtt-dead-letter'];
  for (const t of topics) await kafka.createTopic(t, 3);
  console.log(`Kafka topics: ${topics.join(', ')}`);

  const bridge = await startBridgeProcess({
    logDir: dir,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_TOPIC: 'cackalacky/badge/egress/#',
      MQTT_CLIENT_ID: 'demo-bridge',
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      ROUTES_FILE: ROUTES,
    },
  });
  console.log(`bridge up: http://127.0.0.1:${bridge.httpPort}/metrics  (log: ${bridge.logFile})`);
  console.log(`read records with: kcat -b ${kafka.bootstrap} -t ingress-heartbeat -C -J -e`);

  const pub = await mqtt.connectAsync(mosq.url, { clientId: 'demo-badges' });
  let published = 0;
  const seq = new Map<number, number>();
  const timer = setInterval(() => {
    for (let i = 0; i < RATE / 10; i++) {
      const badge = Math.floor(Math.random() * BADGES);
      const event = EVENTS[Math.floor(Math.random() * EVENTS.length)]!;
      const n = (seq.get(badge) ?? 0) + 1;
      seq.set(badge, n);
      // One in 500 messages is broken JSON, to show dead-lettering.
      const body = Math.random() < 0.002 ? '{"ts": oops' : JSON.stringify({ ts: Date.now() / 1000, seq: n, heap: 100_000 + n });
      void pub.publishAsync(`cackalacky/badge/egress/badge-${String(badge).padStart(3, '0')}/${event}`, body, { qos: 1 }).then(() => published++);
    }
  }, 100);

  const started = Date.now();
  const report = setInterval(() => {
    void (async () => {
      const m = await bridge.metrics().catch(() => undefined);
      if (!m) return;
      const sum = (name: string) => [...m].filter(([k]) => k === name || k.startsWith(`${name}{`)).reduce((a, [, v]) => a + v, 0);
      const s = Math.round((Date.now() - started) / 1000);
      console.log(
        `${String(s).padStart(4)} s  published ${published}  received ${sum('mqtt_kafka_messages_received_total')}  ` +
          `written ${sum('mqtt_kafka_records_written_total')}  dead-lettered ${sum('mqtt_kafka_dead_letter_total')}  ` +
          `in flight ${sum('mqtt_kafka_in_flight_messages')}  spooled rows ${sum('mqtt_kafka_spool_rows')}`,
      );
    })();
  }, 1000);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping …');
    clearInterval(timer);
    clearInterval(report);
    await pub.endAsync().catch(() => undefined);
    await bridge.proc.stop('SIGTERM').catch(() => undefined);
    await stopAll();
    console.log(`stopped; logs in ${dir}`);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  console.log('publishing; press Ctrl-C to stop');
}

main().catch(async (err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  await stopAll().catch(() => undefined);
  process.exit(1);
});
