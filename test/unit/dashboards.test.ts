import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

/**
 * Project conventions for the Grafana dashboard and the Prometheus alert rules shipped in the
 * Helm chart: what they must cover, how they are laid out, how alerts are named and linked to
 * their runbook. Whether the queries and rules are right is for Prometheus itself:
 * test/integration/alerts-promtool.test.ts (promtool check rules / test rules, every alert),
 * test/integration/prometheus-live.test.ts (a real Prometheus scraping a real bridge: alerts and
 * every dashboard query) and test/integration/chart-schemas.test.ts (the rendered PrometheusRule).
 */

const root = new URL('../../', import.meta.url);
const read = (p: string) => readFileSync(new URL(p, root), 'utf8');
const DASHBOARD_PATH = 'helm/mqtt-kafka-spool/files/grafana-dashboard.json';
const ALERTS_PATH = 'helm/mqtt-kafka-spool/files/alerts.yaml';

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

  // Syntax, fields, durations and templates are promtool's job (check rules); these are ours.
  it('names each alert MqttKafkaSpool<Something> once, with a severity and a summary and description', () => {
    const groups = (file as { groups: { rules: Record<string, unknown>[] }[] }).groups;
    const names = new Set<string>();
    for (const r of groups.flatMap((g) => g.rules)) {
      const where = String(r.alert);
      expect(r.alert, where).toMatch(/^MqttKafkaSpool[A-Z][A-Za-z]+$/);
      expect(names.has(where), `duplicate alert ${where}`).toBe(false);
      names.add(where);
      expect(['critical', 'warning', 'info'], where).toContain((r.labels as Record<string, unknown>).severity);
      const annotations = r.annotations as Record<string, unknown>;
      expect(annotations.summary, where).toBeTypeOf('string');
      expect(annotations.description, where).toBeTypeOf('string');
    }
    expect(names.size).toBeGreaterThanOrEqual(9);
  });

  const rules = ((file as { groups: { rules: Rule[] }[] }).groups ?? []).flatMap((g) => g.rules);

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
