import { readFileSync } from 'node:fs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Telemetry } from '../../src/observability/telemetry.js';

/**
 * The Grafana dashboard and the Prometheus alert rules shipped in the Helm chart only query
 * metrics (and labels) the bridge really exports: a renamed metric fails here, not silently on a
 * dashboard panel or, worse, in an alert that can never fire.
 */

const root = new URL('../../', import.meta.url);
const read = (p: string) => readFileSync(new URL(p, root), 'utf8');
const DASHBOARD_PATH = 'helm/mqtt-kafka-spool/files/grafana-dashboard.json';
const ALERTS_PATH = 'helm/mqtt-kafka-spool/files/alerts.yaml';

/** Labels Prometheus adds per scrape target (Prometheus itself, or the Prometheus Operator). */
const TARGET_LABELS = new Set(['job', 'instance', 'namespace', 'pod', 'service', 'container', 'endpoint']);
/** Default metrics depend on the platform (e.g. process_* on Linux only): their prefixes count as existing. */
const DEFAULT_METRIC_PREFIXES = ['process_', 'nodejs_'];
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'] as const;

interface Catalogue {
  /** Metric name -> its own label names. */
  readonly labels: ReadonlyMap<string, readonly string[]>;
  readonly types: ReadonlyMap<string, string>;
}

async function catalogue(): Promise<Catalogue> {
  const telemetry = new Telemetry(pino({ level: 'silent' }));
  const labels = new Map<string, readonly string[]>();
  const types = new Map<string, string>();
  for (const m of await telemetry.registry.getMetricsAsJSON()) {
    const metric = telemetry.registry.getSingleMetric(m.name) as unknown as { labelNames?: readonly string[] } | undefined;
    labels.set(m.name, metric?.labelNames ?? []);
    types.set(m.name, String(m.type));
  }
  return { labels, types };
}

/** A metric as written in a query, resolved to the registry's name (histogram series to the base). */
function resolve(cat: Catalogue, name: string): { name: string; labels: readonly string[] } | undefined {
  const own = cat.labels.get(name);
  if (own) return { name, labels: own };
  for (const suffix of HISTOGRAM_SUFFIXES) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const type = cat.types.get(base);
    if (type === 'histogram' || type === 'summary') {
      const baseLabels = cat.labels.get(base) ?? [];
      return { name: base, labels: suffix === '_bucket' ? [...baseLabels, 'le'] : baseLabels };
    }
  }
  if (DEFAULT_METRIC_PREFIXES.some((p) => name.startsWith(p))) return { name, labels: [] };
  return undefined;
}

// --- a small PromQL scanner: enough to find metric names and the label names used with them ---

const AGGREGATIONS = ['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio'];
const KEYWORDS = new Set([...AGGREGATIONS, 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'atan2', 'inf', 'nan']);
const LABEL_LIST_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

interface Scanned {
  /** Metric names, each with the label names of its selector ({a="x"}). */
  readonly metrics: { name: string; selectorLabels: string[] }[];
  /** Label names in by/without/on/ignoring/group_* lists. */
  readonly groupingLabels: string[];
}

function scanPromQL(expr: string): Scanned {
  const metrics: Scanned['metrics'] = [];
  const groupingLabels: string[] = [];
  const tokens = expr.match(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|\{[^}]*\}|\[[^\]]*\]|\d[\w.]*|[A-Za-z_:][\w:]*|\S/g) ?? [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const next = tokens[i + 1];
    if (!/^[A-Za-z_:]/.test(t)) continue;
    if (LABEL_LIST_KEYWORDS.has(t) && next === '(') {
      let j = i + 2;
      for (; j < tokens.length && tokens[j] !== ')'; j++) if (/^[A-Za-z_]/.test(tokens[j]!)) groupingLabels.push(tokens[j]!);
      i = j;
      continue;
    }
    if (KEYWORDS.has(t) || next === '(') continue; // keyword, or a function / aggregation name
    const selectorLabels = next?.startsWith('{') ? [...next.matchAll(/([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((m) => m[1]!) : [];
    metrics.push({ name: t, selectorLabels });
  }
  return { metrics, groupingLabels };
}

interface Problem {
  where: string;
  problem: string;
}

/** Checks one query's metrics and labels; `extraLabels` are labels used by its legend or annotations. */
function checkQuery(cat: Catalogue, where: string, expr: string, extraLabels: readonly string[] = []): Problem[] {
  const problems: Problem[] = [];
  const scanned = scanPromQL(expr);
  if (scanned.metrics.length === 0) problems.push({ where, problem: `no metric found in ${expr}` });
  const available = new Set(TARGET_LABELS);
  for (const m of scanned.metrics) {
    const r = resolve(cat, m.name);
    if (!r) {
      problems.push({ where, problem: `unknown metric ${m.name}` });
      continue;
    }
    const known = new Set([...r.labels, ...TARGET_LABELS]);
    for (const l of r.labels) available.add(l);
    for (const l of m.selectorLabels) if (!known.has(l)) problems.push({ where, problem: `${m.name} has no label ${l}` });
  }
  for (const l of scanned.groupingLabels) if (!available.has(l)) problems.push({ where, problem: `grouping label ${l} is on none of the metrics` });
  for (const l of extraLabels) if (!available.has(l)) problems.push({ where, problem: `label ${l} (legend/annotation) is on none of the metrics` });
  return problems;
}

interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; legendFormat?: string; datasource?: { uid?: string } }[];
  gridPos?: { h: number; w: number; x: number; y: number };
  panels?: Panel[];
}

function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

describe('Grafana dashboard (files/grafana-dashboard.json)', () => {
  const dashboard = JSON.parse(read(DASHBOARD_PATH)) as {
    uid: string;
    title: string;
    panels: Panel[];
    templating: { list: { name: string; type: string; query: unknown; definition?: string }[] };
  };
  const panels = allPanels(dashboard.panels);
  const queryPanels = panels.filter((p) => p.type !== 'row');

  it('every metric and label it queries exists in the bridge registry', async () => {
    const cat = await catalogue();
    const problems: Problem[] = [];
    let queries = 0;
    for (const p of queryPanels) {
      for (const t of p.targets ?? []) {
        if (!t.expr) continue;
        queries++;
        const legend = [...(t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!);
        problems.push(...checkQuery(cat, `panel "${p.title}"`, t.expr, legend));
      }
    }
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      const q = typeof v.query === 'string' ? v.query : (v.query as { query: string }).query;
      const m = /label_values\(\s*([A-Za-z_:][\w:]*)/.exec(q);
      if (m && !resolve(cat, m[1]!)) problems.push({ where: `variable ${v.name}`, problem: `unknown metric ${m[1]}` });
    }
    expect(problems).toEqual([]);
    expect(queries).toBeGreaterThan(20);
  });

  it('covers the operator questions: throughput, lag, spool, losses, latency, connections, replay', () => {
    const exprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')).join('\n');
    for (const m of [
      'mqtt_kafka_messages_received_total',
      'mqtt_kafka_records_written_total',
      'mqtt_kafka_spool_rows',
      'mqtt_kafka_spool_bytes',
      'mqtt_kafka_spool_oldest_age_seconds',
      'mqtt_kafka_write_errors_total',
      'mqtt_kafka_dropped_total',
      'mqtt_kafka_dead_letter_total',
      'mqtt_kafka_end_to_end_latency_seconds_bucket',
      'mqtt_kafka_produce_latency_seconds_bucket',
      'mqtt_kafka_mqtt_connected',
      'mqtt_kafka_kafka_up',
      'mqtt_kafka_in_flight_messages',
      'mqtt_kafka_unacked_messages',
      'mqtt_kafka_spool_replay_runs_total',
    ]) {
      expect(exprs, m).toContain(m);
    }
    // The lag panel: received minus written.
    expect(exprs).toMatch(/mqtt_kafka_messages_received_total[^\n]*-[^\n]*mqtt_kafka_records_written_total/);
    expect(exprs).toMatch(/histogram_quantile\(0\.99,/);
    expect(exprs).toMatch(/histogram_quantile\(0\.5,/);
  });

  it('is importable on its own: datasource variable, every query on it, unique ids, laid out', () => {
    expect(dashboard.uid).toBe('mqtt-kafka-spool');
    expect(dashboard.title).toBeTruthy();
    const ds = dashboard.templating.list.find((v) => v.type === 'datasource');
    expect(ds?.name).toBe('datasource');
    expect(ds?.query).toBe('prometheus');
    // No __inputs: Grafana's import prompts for them, and the sidecar cannot fill them in.
    expect(Object.keys(dashboard)).not.toContain('__inputs');
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of queryPanels) {
      expect(p.datasource?.uid, `panel "${p.title}"`).toBe('${datasource}');
      for (const t of p.targets ?? []) expect(t.datasource?.uid ?? '${datasource}', `panel "${p.title}"`).toBe('${datasource}');
      expect(p.gridPos, `panel "${p.title}"`).toBeDefined();
      expect(p.gridPos!.x + p.gridPos!.w, `panel "${p.title}" fits the 24-column grid`).toBeLessThanOrEqual(24);
    }
  });
});

describe('Prometheus alert rules (files/alerts.yaml)', () => {
  const text = read(ALERTS_PATH);
  const file = parseYaml(text) as unknown;

  interface Rule {
    alert: string;
    expr: string;
    for: string;
    labels: { severity: string } & Record<string, string>;
    annotations: { summary: string; description?: string } & Record<string, string>;
  }

  it('parses as Prometheus rule groups of alerting rules', () => {
    expect(file).toBeTypeOf('object');
    const groups = (file as { groups?: unknown }).groups;
    expect(Array.isArray(groups)).toBe(true);
    expect(Object.keys(file as object)).toEqual(['groups']);
    const names = new Set<string>();
    for (const g of groups as { name?: unknown; rules?: unknown }[]) {
      expect(g.name).toBeTypeOf('string');
      expect(Array.isArray(g.rules) && g.rules.length > 0).toBe(true);
      for (const r of g.rules as Record<string, unknown>[]) {
        const where = String(r.alert);
        expect(Object.keys(r).every((k) => ['alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations'].includes(k)), where).toBe(true);
        expect(r.alert, where).toMatch(/^MqttKafkaSpool[A-Z][A-Za-z]+$/);
        expect(names.has(where), `duplicate alert ${where}`).toBe(false);
        names.add(where);
        expect(r.expr, where).toBeTypeOf('string');
        expect((r.expr as string).trim().length, where).toBeGreaterThan(0);
        expect(r.for, where).toMatch(/^(0|([0-9]+(ms|s|m|h|d|w|y))+)$/);
        const labels = r.labels as Record<string, unknown>;
        expect(['critical', 'warning', 'info'], where).toContain(labels.severity);
        for (const v of Object.values(labels)) expect(v, where).toBeTypeOf('string');
        const annotations = r.annotations as Record<string, unknown>;
        expect(annotations.summary, where).toBeTypeOf('string');
        expect((annotations.summary as string).length, where).toBeGreaterThan(0);
        expect(annotations.description, where).toBeTypeOf('string');
      }
    }
    expect(names.size).toBeGreaterThanOrEqual(9);
  });

  const rules = ((file as { groups: { rules: Rule[] }[] }).groups ?? []).flatMap((g) => g.rules);

  it('every metric and label the rules use exists in the bridge registry', async () => {
    const cat = await catalogue();
    const problems: Problem[] = [];
    for (const r of rules) {
      const annotationLabels = Object.values(r.annotations).flatMap((a) => [...a.matchAll(/\$labels\.(\w+)/g)].map((m) => m[1]!));
      problems.push(...checkQuery(cat, r.alert, r.expr, annotationLabels));
    }
    expect(problems).toEqual([]);
  });

  it('covers the failure modes the runbook describes', () => {
    const byMetric = (m: string) => rules.filter((r) => r.expr.includes(m)).map((r) => r.alert);
    expect(byMetric('mqtt_kafka_spool_rows').length).toBeGreaterThan(0); // spool growing
    expect(byMetric('mqtt_kafka_spool_oldest_age_seconds').length).toBeGreaterThan(0);
    expect(byMetric('mqtt_kafka_dropped_total').length).toBeGreaterThan(0);
    expect(byMetric('mqtt_kafka_dead_letter_total').length).toBeGreaterThan(0);
    expect(byMetric('mqtt_kafka_mqtt_connected').length).toBeGreaterThan(0);
    expect(byMetric('mqtt_kafka_kafka_up').length).toBeGreaterThan(0);
    expect(byMetric('mqtt_kafka_ready').length).toBeGreaterThan(0);
    expect(byMetric('mqtt_kafka_intake_paused').length).toBeGreaterThan(0);
    expect(byMetric('mqtt_kafka_spool_blocked').length).toBeGreaterThan(0);
    // Losses page someone.
    expect(rules.find((r) => r.expr.includes('mqtt_kafka_dropped_total'))?.labels.severity).toBe('critical');
  });

  it('each alert links to its runbook section in docs/operations.md', () => {
    const docs = read('docs/operations.md');
    // GitHub heading anchors: lower-case, punctuation removed, spaces to dashes.
    const anchors = new Set(
      [...docs.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) =>
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    for (const r of rules) {
      const anchor = r.alert.toLowerCase();
      expect(r.annotations.description, r.alert).toContain(`docs/operations.md#${anchor}`);
      expect(anchors.has(anchor), `docs/operations.md has a heading for ${r.alert}`).toBe(true);
    }
  });
});

describe('the PromQL scanner used above', () => {
  it('finds metrics and labels, skipping functions, keywords, durations and strings', () => {
    const s = scanPromQL(
      'histogram_quantile(0.99, sum by (le, path) (rate(mqtt_kafka_produce_latency_seconds_bucket{job=~"$job", path="direct"}[$__rate_interval]))) > 0 and x offset 10m or vector(0)',
    );
    expect(s.metrics).toEqual([
      { name: 'mqtt_kafka_produce_latency_seconds_bucket', selectorLabels: ['job', 'path'] },
      { name: 'x', selectorLabels: [] },
    ]);
    expect(s.groupingLabels).toEqual(['le', 'path']);
  });
});
