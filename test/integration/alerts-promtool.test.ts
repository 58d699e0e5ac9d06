import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { promtoolPath } from '../harness/prometheus.js';
import { checkSeries, metricCatalogue } from '../prometheus/catalogue.js';

/**
 * The alert rules shipped in the chart (helm/mqtt-kafka-spool/files/alerts.yaml), checked by
 * Prometheus' own tool: `promtool check rules` (syntax, PromQL, durations, templates) and
 * `promtool test rules test/prometheus/alerts.test.yaml` (each alert fires for the series that
 * should fire it, only once its `for:` has passed, and stays quiet for one that should not).
 * Then the tests are shown to bite: every alert's rule is broken on purpose in a copy (never
 * fires, always fires, `for:` ignored) and promtool must fail on each copy. promtool comes from the
 * Debian package `prometheus` (scripts/install-prometheus.sh, run here if it is missing).
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ALERTS = `${REPO}helm/mqtt-kafka-spool/files/alerts.yaml`;
const TESTS = `${REPO}test/prometheus/alerts.test.yaml`;

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: { exp_labels?: Record<string, string>; exp_annotations?: Record<string, string> }[];
}
interface TestGroup {
  name: string;
  interval?: string;
  input_series: { series: string; values: string }[];
  alert_rule_test?: AlertTest[];
}
interface TestFile {
  rule_files: string[];
  evaluation_interval?: string;
  tests: TestGroup[];
}

let PROMTOOL = '';
const scratch = mkdtempSync(join(tmpdir(), 'mqks-promtool-'));

beforeAll(() => {
  PROMTOOL = promtoolPath();
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function promtool(...args: string[]): { code: number; out: string } {
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, out: r.stdout + r.stderr };
}

const rulesFile = (): RuleFile => parseYaml(readFileSync(ALERTS, 'utf8')) as RuleFile;
const testFile = (): TestFile => parseYaml(readFileSync(TESTS, 'utf8')) as TestFile;
const allRules = (f: RuleFile): Rule[] => f.groups.flatMap((g) => g.rules);

/** Prometheus duration (e.g. 1h30m) in milliseconds. */
function durationMs(d: string): number {
  const units: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3, y: 31536000e3 };
  let ms = 0;
  for (const m of d.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)) ms += Number(m[1]) * units[m[2]!]!;
  return ms;
}

let copies = 0;
/**
 * Writes `rules` and the promtool tests of `alert` (all tests when undefined) to a scratch dir,
 * the tests' rule_files pointing at that copy, and runs promtool test rules on them.
 */
function testRulesCopy(rules: RuleFile, alert?: string): { code: number; out: string } {
  const dir = join(scratch, String(copies++));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'alerts.yaml'), stringifyYaml(rules));
  const tests = testFile();
  tests.rule_files = ['alerts.yaml'];
  if (alert) tests.tests = tests.tests.filter((g) => (g.alert_rule_test ?? []).some((t) => t.alertname === alert));
  writeFileSync(join(dir, 'alerts.test.yaml'), stringifyYaml(tests));
  return promtool('test', 'rules', join(dir, 'alerts.test.yaml'));
}

function withRule(alert: string, change: (r: Rule) => void): RuleFile {
  const f = rulesFile();
  const rule = allRules(f).find((r) => r.alert === alert);
  if (!rule) throw new Error(`no alert ${alert}`);
  change(rule);
  return f;
}

describe('promtool check rules', () => {
  it('accepts files/alerts.yaml', () => {
    const r = promtool('check', 'rules', ALERTS);
    expect(r.out).toContain(`SUCCESS: ${allRules(rulesFile()).length} rules found`);
    expect(r.code).toBe(0);
  });

  const broken: [string, (r: Rule) => void, RegExp][] = [
    ['an expression that does not parse', (r) => (r.expr = r.expr.replace(/\)/, '')), /parse error/],
    ['a misspelled field', (r) => Object.assign(r, { fore: '5m' }), /fore/],
    ['a duration that is not one', (r) => (r.for = '10 minutes'), /not a valid duration/],
    ['an annotation template that does not parse', (r) => (r.annotations!.summary = '{{ $labels.job }'), /template/],
  ];
  it.each(broken)('rejects a copy with %s', (_what, change, message) => {
    const path = join(scratch, `broken-${copies++}.yaml`);
    // The first rule whose expression has a parenthesis, so every change above applies.
    const f = rulesFile();
    change(allRules(f).find((r) => r.expr.includes(')'))!);
    writeFileSync(path, stringifyYaml(f));
    const r = promtool('check', 'rules', path);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(message);
  });
});

describe('promtool test rules (test/prometheus/alerts.test.yaml)', () => {
  it('passes on files/alerts.yaml', () => {
    const r = promtool('test', 'rules', TESTS);
    expect(r.out, r.out).toContain('SUCCESS');
    expect(r.code, r.out).toBe(0);
  });

  it('tests every alert: one test fires it, another keeps it quiet, and a `for:` alert is still quiet one evaluation before its duration ends', () => {
    const tests = testFile();
    expect(tests.rule_files).toEqual(['../../helm/mqtt-kafka-spool/files/alerts.yaml']);
    const problems: string[] = [];
    for (const rule of allRules(rulesFile())) {
      const cases = tests.tests.flatMap((g) => (g.alert_rule_test ?? []).filter((t) => t.alertname === rule.alert).map((t) => ({ g, t })));
      const fires = cases.filter(({ t }) => (t.exp_alerts ?? []).length > 0);
      const quietGroups = new Set(cases.filter(({ t }) => (t.exp_alerts ?? []).length === 0).map(({ g }) => g));
      if (fires.length === 0) problems.push(`${rule.alert}: no test where it fires`);
      if (![...quietGroups].some((g) => !fires.some((f) => f.g === g))) problems.push(`${rule.alert}: no test group where it never fires`);
      // Just before: the same group evaluated one interval earlier expects nothing.
      const justBefore = fires.some(({ g, t }) =>
        (g.alert_rule_test ?? []).some(
          (o) => o.alertname === rule.alert && (o.exp_alerts ?? []).length === 0 && durationMs(t.eval_time) - durationMs(o.eval_time) === durationMs(g.interval ?? tests.evaluation_interval ?? '1m'),
        ),
      );
      if (!justBefore) problems.push(`${rule.alert}: no evaluation one interval before a firing one that expects it quiet`);
      for (const { t } of fires) {
        for (const a of t.exp_alerts ?? []) {
          if (a.exp_labels?.severity !== rule.labels?.severity) problems.push(`${rule.alert}: a test expects severity ${a.exp_labels?.severity}`);
          if (Object.keys(a.exp_annotations ?? {}).sort().join() !== Object.keys(rule.annotations ?? {}).sort().join()) problems.push(`${rule.alert}: a test does not state every annotation`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('feeds only series the bridge exports (metric and label names from its registry)', async () => {
    const cat = await metricCatalogue();
    const problems = testFile().tests.flatMap((g) => g.input_series.flatMap((s) => checkSeries(cat, s.series).map((p) => `${g.name}: ${p}`)));
    expect(problems).toEqual([]);
    // The check itself: a renamed metric and a misspelled label are caught.
    expect(checkSeries(cat, 'mqtt_kafka_spool_row{job="x"}')).toEqual(['unknown metric mqtt_kafka_spool_row']);
    expect(checkSeries(cat, 'mqtt_kafka_dropped_total{reasons="spool_full_oldest"}')).toEqual(['mqtt_kafka_dropped_total has no label reasons']);
    expect(checkSeries(cat, 'mqtt_kafka_produce_latency_seconds_bucket{path="direct", le="0.1"}')).toEqual([]);
  });

  it('passes on a copy made the way the broken copies below are made (the control)', () => {
    const r = testRulesCopy(rulesFile());
    expect(r.code, r.out).toBe(0);
  });

  // Each alert, broken three ways in a copy; promtool must fail on every copy.
  const mutations: [string, (r: Rule) => void, (r: Rule) => boolean][] = [
    ['never fires', (r) => (r.expr = `(${r.expr}) and on() (vector(0) > 1)`), () => true],
    ['also fires when it should not', (r) => (r.expr = `(${r.expr}) or vector(1)`), () => true],
    ['ignores its for: duration', (r) => (r.for = '0s'), (r) => durationMs(r.for ?? '0s') > 0],
  ];
  const cases = allRules(rulesFile()).flatMap((rule) => mutations.filter(([, , applies]) => applies(rule)).map(([what, change]) => [rule.alert, what, change] as const));
  it.each(cases)('fails when %s %s', (alert, _what, change) => {
    const r = testRulesCopy(withRule(alert, change), alert);
    expect(r.out).toContain('FAILED');
    expect(r.code).not.toBe(0);
  });
});
