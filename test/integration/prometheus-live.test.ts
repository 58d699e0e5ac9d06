import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import {
  makeTempDir,
  startBridgeProcess,
  startKafka,
  startMosquitto,
  startPrometheus,
  type ActiveAlert,
  type BridgeProcess,
  type Kafka,
  type Mosquitto,
  type Prometheus,
  type RangeSeries,
} from '../harness/index.js';
import { metricCatalogue, type Catalogue } from '../prometheus/catalogue.js';

/**
 * A real Prometheus (Debian package, test/harness/prometheus.ts) scrapes a real bridge every
 * second while MQTT traffic flows and Kafka goes away and comes back. Prometheus loads the chart's
 * own rule file, helm/mqtt-kafka-spool/files/alerts.yaml, after one mechanical change: every `for:`
 * duration is divided by 60 (minutes become seconds: KafkaDown's 10m is 10s here), so that the
 * outage fits in CI. Expressions, labels, annotations and range windows are loaded as they are.
 *
 * The outage runs until Prometheus itself reports MqttKafkaSpoolKafkaDown firing, Kafka then
 * comes back and the scenario ends once Prometheus reports the alert inactive and the spool
 * drained; the tests then ask Prometheus' HTTP API what it evaluated:
 * - the alert went pending, then firing, then resolved (its ALERTS series over the run);
 * - every rule evaluated without error against the real metrics, no critical alert fired, and
 *   MqttKafkaSpoolDeadLetters fired for the dead letters the run sends on purpose;
 * - every query of every panel of the Grafana dashboard, with its template variables resolved the
 *   way Grafana does, parses and returns data (with the labels its legend uses), or is listed in
 *   EXPECTED_EMPTY with the reason a clean run leaves it empty.
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ALERTS = `${REPO}helm/mqtt-kafka-spool/files/alerts.yaml`;
const DASHBOARD = `${REPO}helm/mqtt-kafka-spool/files/grafana-dashboard.json`;
const KAFKA_DOWN = 'MqttKafkaSpoolKafkaDown';
/** Scrape and rule evaluation interval of the test's Prometheus, in seconds. */
const INTERVAL_S = 1;

/**
 * Dashboard queries a clean run leaves empty, by `panel title/refId`, with the reason. The test
 * still runs them (they must parse), checks that they are empty (so this list cannot go stale),
 * that the bridge exports the metric (Prometheus has its metadata from the scrape) and that the
 * labels of the legend are labels of that metric.
 */
const EXPECTED_EMPTY: Record<string, { metric: string; reason: string }> = {
  'Dropped records/A': {
    metric: 'mqtt_kafka_dropped_total',
    reason:
      'nothing is dropped in a clean run: the spool stays far below SPOOL_MAX_BYTES and SPOOL_MAX_AGE_MS is off (the "Dropped (range)" stat still answers 0 through its `or vector(0)`)',
  },
};

const ROUTES = `
unmatched: dead_letter
routes:
  - name: badges
    match: cackalacky/badge/egress/{badge_id}/cp/{event}
    topic: prom-badges
    key: "{badge_id}"
  - name: lobby
    match: lib/server/lobby
    topic: prom-lobby
    key: "{payload.game_token}"
    format: json
    filter:
      message: { equals: Cleaning Game Records }
`;

/** Prometheus duration in milliseconds. */
function durationMs(d: string): number {
  const units: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3, y: 31536000e3 };
  let ms = 0;
  for (const m of d.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)) ms += Number(m[1]) * units[m[2]!]!;
  return ms;
}

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
}

/** alerts.yaml with every `for:` divided by 60 (the only change), written to `dir`. */
function scaledRules(dir: string): { path: string; rules: Rule[] } {
  const file = parseYaml(readFileSync(ALERTS, 'utf8')) as { groups: { rules: Rule[] }[] };
  for (const r of file.groups.flatMap((g) => g.rules)) {
    if (r.for === undefined) continue;
    const ms = Math.round(durationMs(r.for) / 60);
    r.for = ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
  }
  const path = join(dir, 'alerts-for-scaled.yaml');
  writeFileSync(path, stringifyYaml(file));
  return { path, rules: file.groups.flatMap((g) => g.rules) };
}

/** MQTT traffic until stopped: badges at ~100 msg/s; each second one lobby record the route filters out and one message no route matches. */
function startTraffic(url: string): { stop(): Promise<number> } {
  let stopping = false;
  let sent = 0;
  const done = (async () => {
    const client = await mqtt.connectAsync(url, { clientId: `prom-live-pub-${process.pid}`, clean: true, reconnectPeriod: 500 });
    try {
      for (let i = 0; !stopping; i++) {
        const badge = `badge-${String(i % 20).padStart(2, '0')}`;
        await client.publishAsync(`cackalacky/badge/egress/${badge}/cp/heartbeat`, JSON.stringify({ badge_id: badge, seq: i, ts: Date.now() / 1000 }), { qos: 1 });
        sent++;
        if (i % 100 === 0) {
          await client.publishAsync('lib/server/lobby', JSON.stringify({ message: 'Player joined', game_token: `g-${i}` }), { qos: 1 });
          await client.publishAsync(`site/unrouted/${i % 3}`, 'no route for this', { qos: 1 });
          sent += 2;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      await client.endAsync();
    }
  })();
  return {
    async stop() {
      stopping = true;
      await done;
      return sent;
    },
  };
}

const nowS = (): number => Date.now() / 1000;

let mosq: Mosquitto;
let kafka: Kafka;
let bridge: BridgeProcess;
let prom: Prometheus;
let rules: Rule[];
const run = { startS: 0, kafkaStoppedS: 0, kafkaStartedS: 0, resolvedS: 0, endS: 0 };
let firingAlert: ActiveAlert | undefined;

beforeAll(async () => {
  const dir = makeTempDir('prom-live-');
  [mosq, kafka] = await Promise.all([startMosquitto({ logDir: dir }), startKafka({ logDir: dir })]);
  for (const t of ['prom-badges', 'prom-lobby', 'mqtt-dead-letter']) await kafka.createTopic(t, 2);
  writeFileSync(join(dir, 'routes.yaml'), ROUTES);
  bridge = await startBridgeProcess({
    logDir: dir,
    env: {
      MQTT_BROKER: '127.0.0.1',
      MQTT_PORT: String(mosq.port),
      MQTT_CLIENT_ID: 'prom-live',
      // Set, so that messages no route matches arrive too (subscriptions derived from the routes would not cover them).
      MQTT_TOPIC: 'cackalacky/badge/#,lib/server/lobby,site/#',
      ROUTES_FILE: join(dir, 'routes.yaml'),
      KAFKA_BROKER: '127.0.0.1',
      KAFKA_PORT: String(kafka.port),
      KAFKA_WRITE_TIMEOUT_MS: '3000',
      KAFKA_CONNECT_TIMEOUT_MS: '2000',
      SPOOL_REPLAY_INTERVAL_MS: '2000',
    },
  });
  const scaled = scaledRules(dir);
  rules = scaled.rules;
  prom = await startPrometheus({ targets: [`127.0.0.1:${bridge.httpPort}`], ruleFiles: [scaled.path], intervalS: INTERVAL_S, logDir: dir });
  run.startS = nowS();

  const traffic = startTraffic(mosq.url);
  try {
    const kafkaDownState = async () => (await prom.rules()).find((r) => r.name === KAFKA_DOWN)?.state;
    // Normal operation first, seen by Prometheus: records written, a dead letter, a skipped message.
    await prom.waitFor(
      'Prometheus to see records written, dead-lettered and skipped',
      async () => {
        const missing: string[] = [];
        for (const q of ['rate(mqtt_kafka_records_written_total{path="direct"}[4s]) > 0', 'mqtt_kafka_dead_letter_total', 'mqtt_kafka_skipped_total']) {
          if ((await prom.query(q)).length === 0) missing.push(q);
        }
        // Thrown, so the timeout message says what is missing.
        if (missing.length > 0) throw new Error(`nothing yet for ${missing.join(', ')}`);
        return true;
      },
      60_000,
    );
    expect(await kafkaDownState()).toBe('inactive');

    run.kafkaStoppedS = nowS();
    await kafka.stop();
    await prom.waitFor(
      `${KAFKA_DOWN} firing`,
      async () => {
        firingAlert = (await prom.alerts()).find((a) => a.labels.alertname === KAFKA_DOWN && a.state === 'firing');
        return firingAlert !== undefined;
      },
      120_000,
    );

    run.kafkaStartedS = nowS();
    await kafka.start();
    await prom.waitFor(
      `${KAFKA_DOWN} resolved and the spool drained`,
      async () =>
        (await kafkaDownState()) === 'inactive' &&
        (await prom.query('mqtt_kafka_spool_rows == 0 and mqtt_kafka_kafka_up == 1')).length > 0,
      120_000,
    );
    run.resolvedS = nowS();
    // A few more evaluations after the recovery, so the range queries below see it.
    await prom.waitFor('3 s of samples after the recovery', async () => Number((await prom.query('timestamp(mqtt_kafka_ready)'))[0]?.value[1] ?? 0) > run.resolvedS + 3);
  } finally {
    await traffic.stop();
  }
  run.endS = nowS();
}, 600_000);

afterAll(async () => {
  await prom?.stop();
  await bridge?.proc.stop('SIGTERM');
  await Promise.all([mosq?.stop(), kafka?.stop()]);
});

/** The [timestamp, value] points of the series matching `labels`. */
const points = (series: RangeSeries[], labels: Record<string, string>): number[] =>
  series.filter((s) => Object.entries(labels).every(([k, v]) => s.metric[k] === v)).flatMap((s) => s.values.map(([t]) => t));

describe('alerts evaluated by a real Prometheus during a Kafka outage', () => {
  it(`${KAFKA_DOWN} goes pending, then firing, and resolves once Kafka is back`, async () => {
    const alerts = await prom.queryRange(`ALERTS{alertname="${KAFKA_DOWN}"}`, run.startS, run.endS, INTERVAL_S);
    const pending = points(alerts, { alertstate: 'pending' });
    const firing = points(alerts, { alertstate: 'firing' });
    expect(pending.length, 'pending samples').toBeGreaterThan(0);
    expect(firing.length, 'firing samples').toBeGreaterThan(0);
    // Not before the outage; pending first, for the rule's (scaled) `for:`, then firing. (Only the
    // first episode is compared: a scrape missed on a loaded machine may reset and restart it.)
    expect(Math.min(...pending)).toBeGreaterThanOrEqual(Math.floor(run.kafkaStoppedS));
    const firstFiring = Math.min(...firing);
    const forS = durationMs(rules.find((r) => r.alert === KAFKA_DOWN)!.for!) / 1000;
    expect(pending.filter((t) => t < firstFiring).length, 'pending evaluations before it fired').toBeGreaterThan(0);
    expect(firstFiring - Math.min(...pending)).toBeGreaterThanOrEqual(forS - INTERVAL_S);
    // Resolved: no sample after Kafka came back and the spool drained, none at the end.
    expect(Math.max(...firing)).toBeLessThan(run.resolvedS);
    expect(await prom.query(`ALERTS{alertname="${KAFKA_DOWN}"}`, run.endS)).toEqual([]);

    // What Alertmanager would have received while it fired.
    expect(firingAlert?.labels).toEqual({ alertname: KAFKA_DOWN, severity: 'warning', job: prom.job, instance: `127.0.0.1:${bridge.httpPort}` });
    expect(firingAlert?.annotations.summary).toBe(`${prom.job}/127.0.0.1:${bridge.httpPort} cannot write to Kafka`);
    expect(firingAlert?.annotations.description).toContain('docs/operations.md#mqttkafkaspoolkafkadown');
  });

  it('loads every rule of alerts.yaml, evaluates each without error against the real metrics, and fires no critical alert', async () => {
    const loaded = await prom.rules();
    expect(loaded.map((r) => r.name).sort()).toEqual(rules.map((r) => r.alert).sort());
    expect(loaded.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
    const fired = await prom.queryRange('count by (alertname, alertstate) (ALERTS)', run.startS, run.endS, INTERVAL_S);
    console.log(`alerts seen during the run: ${fired.map((s) => `${s.metric.alertname} ${s.metric.alertstate}`).join(', ')}`);
    expect(await prom.queryRange('ALERTS{severity="critical"}', run.startS, run.endS, INTERVAL_S)).toEqual([]);
  });

  it('fires MqttKafkaSpoolDeadLetters for the messages no route matches, with their reason', async () => {
    const series = await prom.queryRange('ALERTS{alertname="MqttKafkaSpoolDeadLetters", alertstate="firing"}', run.startS, run.endS, INTERVAL_S);
    expect(series.map((s) => s.metric.reason)).toEqual(['unmatched']);
  });
});

interface Target {
  refId: string;
  expr?: string;
  legendFormat?: string;
  instant?: boolean;
}
interface Panel {
  type: string;
  title?: string;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}

describe('the Grafana dashboard against the same Prometheus', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  const allPanels = (ps: readonly Panel[]): Panel[] => ps.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);

  /**
   * Grafana's template variables, resolved as Grafana does: a `label_values(selector, label)`
   * query variable asks Prometheus for the label's values on the series matching the selector
   * (variables inside it substituted first); the test picks the bridge's value.
   */
  async function variables(): Promise<Map<string, string>> {
    const vars = new Map<string, string>();
    for (const v of dashboard.templating.list) {
      if (v.type === 'datasource') continue;
      const query = typeof v.query === 'string' ? v.query : (v.query as { query: string }).query;
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(query.trim());
      if (!m) throw new Error(`variable ${v.name}: not a label_values() query: ${query}`);
      const values = await prom.api<string[]>(`label/${m[2]}/values`, { 'match[]': substitute(m[1]!, vars) });
      const want = { job: prom.job, instance: `127.0.0.1:${bridge.httpPort}` }[v.name];
      expect(values, `values of variable ${v.name}`).toContain(want);
      vars.set(v.name, want!);
    }
    return vars;
  }

  /**
   * The query Grafana sends. $__rate_interval is max($__interval + scrape interval, 4 × scrape
   * interval): 4s with the 1 s scrape interval and 1 s step used here. $__range is the run's length.
   */
  function substitute(expr: string, vars: Map<string, string>): string {
    let out = expr.replaceAll('$__rate_interval', `${4 * INTERVAL_S}s`).replaceAll('$__range', `${Math.round(run.endS - run.startS)}s`);
    for (const [name, value] of vars) out = out.replaceAll(`$${name}`, value).replaceAll(`\${${name}}`, value);
    if (out.includes('$')) throw new Error(`unresolved variable in ${out}`);
    return out;
  }

  /** Problems of one panel query, run the way Grafana runs it (instant or over the run's range). */
  async function checkTarget(where: string, t: Target, vars: Map<string, string>, cat: Catalogue): Promise<string[]> {
    const problems: string[] = [];
    const expr = substitute(t.expr!, vars);
    let series: { metric: Record<string, string>; values: string[] }[];
    try {
      series = t.instant
        ? (await prom.query(expr, run.endS)).map((s) => ({ metric: s.metric, values: [s.value[1]] }))
        : (await prom.queryRange(expr, run.startS, run.endS, INTERVAL_S)).map((s) => ({ metric: s.metric, values: s.values.map(([, v]) => v) }));
    } catch (err) {
      return [`${where}: ${(err as Error).message}`];
    }
    const legendLabels = [...(t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
    const expected = EXPECTED_EMPTY[where];
    if (expected) {
      if (series.length > 0) problems.push(`${where}: listed as expected empty but returned ${series.length} series; take it off EXPECTED_EMPTY`);
      if (!expr.includes(expected.metric)) problems.push(`${where}: does not query ${expected.metric}`);
      const metadata = await prom.api<Record<string, unknown[]>>('metadata', { metric: expected.metric });
      if (!metadata[expected.metric]) problems.push(`${where}: Prometheus has no metadata for ${expected.metric}: the bridge does not export it`);
      const own = cat.resolve(expected.metric)?.labels ?? [];
      for (const l of legendLabels) if (!own.includes(l)) problems.push(`${where}: legend label ${l} is not a label of ${expected.metric}`);
      return problems;
    }
    if (series.length === 0) return [`${where}: no data (${expr})`];
    if (!series.some((s) => s.values.some((v) => Number.isFinite(Number(v))))) problems.push(`${where}: only NaN/Inf values (${expr})`);
    for (const l of legendLabels) {
      const missing = series.filter((s) => !s.metric[l]);
      if (missing.length > 0) problems.push(`${where}: legend uses {{${l}}} but ${missing.length} of ${series.length} series have no ${l} label`);
    }
    return problems;
  }

  const queryPanels = allPanels(dashboard.panels).filter((p) => p.type !== 'row');

  it('every panel query parses and returns data with the labels its legend uses, or is expected empty for a stated reason', async () => {
    const vars = await variables();
    const cat = await metricCatalogue();
    const problems: string[] = [];
    const targets = queryPanels.flatMap((p) => (p.targets ?? []).filter((t) => t.expr).map((t) => ({ where: `${p.title}/${t.refId}`, t })));
    for (const { where, t } of targets) problems.push(...(await checkTarget(where, t, vars, cat)));
    for (const key of Object.keys(EXPECTED_EMPTY)) if (!targets.some((x) => x.where === key)) problems.push(`EXPECTED_EMPTY lists ${key}, which is no panel query`);
    expect(problems).toEqual([]);
    expect(targets.length).toBeGreaterThan(20);
  });

  it('the same check fails on broken copies of panel queries', async () => {
    const vars = await variables();
    const cat = await metricCatalogue();
    const target = (title: string, refId = 'A'): Target => ({ ...queryPanels.find((p) => p.title === title)!.targets!.find((t) => t.refId === refId)! });
    const broken: [string, Target, RegExp][] = [
      ['a renamed metric', { ...target('Spool rows'), expr: target('Spool rows').expr!.replace('mqtt_kafka_spool_rows', 'mqtt_kafka_spool_row') }, /no data/],
      ['a misspelled label in a selector', { ...target('Bytes written to Kafka'), expr: target('Bytes written to Kafka').expr!.replace('job=~', 'jobs=~') }, /no data/],
      ['a legend label the query does not keep', { ...target('Bytes written to Kafka'), expr: target('Bytes written to Kafka').expr!.replace('sum by (path)', 'sum') }, /legend uses \{\{path\}\}/],
      ['a syntax error', { ...target('Bytes written to Kafka'), expr: target('Bytes written to Kafka').expr!.replace('sum by (path) (', 'sum by (path (') }, /bad_data.*parse error/],
      ['an instant stat that cannot be a number', { ...target('Ready'), expr: 'min(mqtt_kafka_ready{job=~"$job", instance=~"$instance"}) / 0 * 0' }, /only NaN/],
    ];
    for (const [what, t, message] of broken) {
      const problems = await checkTarget(what, t, vars, cat);
      expect(problems.join('\n'), what).toMatch(message);
    }
    // A query listed as expected empty that returns data.
    const listed = Object.keys(EXPECTED_EMPTY)[0]!;
    const [title, refId] = listed.split('/') as [string, string];
    const problems = await checkTarget(listed, { ...target(title, refId), expr: 'mqtt_kafka_dropped_total or mqtt_kafka_ready' }, vars, cat);
    expect(problems.join('\n')).toMatch(/take it off EXPECTED_EMPTY/);
  });
});
