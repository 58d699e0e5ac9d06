import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import { promtoolPath } from '../harness/prometheus.js';

/**
 * The rendered Helm chart validated strictly against Kubernetes' own API schemas, offline:
 * kubeconform -strict (no unknown field anywhere, no duplicate key, no kind without a schema) with
 * the JSON schemas of Kubernetes 1.37 generated from the OpenAPI spec in the k8s.io/kubernetes
 * module, and of the Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) from the operator's
 * module (scripts/install-kubeconform.sh builds and caches all of it under .cache/). Then the
 * rendered PrometheusRule, with the per-alert overrides applied, goes through `promtool check
 * rules`: the schema only knows it is a list of strings, Prometheus knows whether they are PromQL.
 * Broken copies of the rendered manifests show that the validation fails where it must.
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CHART = `${REPO}helm/mqtt-kafka-spool`;
const FULL_VALUES = `${REPO}test/fixtures/helm/values-full.yaml`;

let HELM = process.env.HELM ?? '';
let KUBECONFORM = '';
let KUBERNETES_VERSION = '';
const SCHEMA_LOCATIONS: string[] = [];
const scratch = mkdtempSync(join(tmpdir(), 'mqks-chart-schemas-'));

function sh(cmd: string, args: string[], input?: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 120_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!HELM) {
    const r = sh('bash', [`${REPO}scripts/install-helm.sh`]);
    if (r.code !== 0) throw new Error(`scripts/install-helm.sh failed (exit ${r.code}):\n${r.stderr}`);
    HELM = r.stdout.trim().split('\n').pop()!;
  }
  const r = sh('bash', [`${REPO}scripts/install-kubeconform.sh`]);
  if (r.code !== 0) throw new Error(`scripts/install-kubeconform.sh failed (exit ${r.code}):\n${r.stderr}`);
  for (const line of r.stdout.trim().split('\n')) {
    const [key, ...rest] = line.split('=');
    const value = rest.join('=');
    if (key === 'kubeconform') KUBECONFORM = value;
    if (key === 'kubernetes_version') KUBERNETES_VERSION = value;
    if (key === 'schema_location') SCHEMA_LOCATIONS.push(value);
  }
  expect(KUBECONFORM && KUBERNETES_VERSION && SCHEMA_LOCATIONS.length === 2, r.stdout).toBeTruthy();
}, 900_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function template(...args: string[]): string {
  const r = sh(HELM, ['template', 'bridge', CHART, '--namespace', 'iot', ...args]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} failed (exit ${r.code}):\n${r.stderr}`);
  return r.stdout;
}

interface Validated {
  kind: string;
  name: string;
  status: 'statusValid' | 'statusInvalid' | 'statusError' | 'statusSkipped' | 'statusEmpty';
  msg: string;
}

/** kubeconform -strict on a stream of manifests; one entry per resource. */
function kubeconform(manifests: string): { code: number; resources: Validated[] } {
  const args = ['-strict', '-output', 'json', '-verbose', '-kubernetes-version', KUBERNETES_VERSION, ...SCHEMA_LOCATIONS.flatMap((l) => ['-schema-location', l]), '-'];
  const r = sh(KUBECONFORM, args, manifests);
  const out = JSON.parse(r.stdout) as { resources: Validated[] };
  return { code: r.code, resources: out.resources };
}

function expectValid(manifests: string, kinds: string[]): void {
  const r = kubeconform(manifests);
  const bad = r.resources.filter((x) => x.status !== 'statusValid').map((x) => `${x.kind} ${x.name}: ${x.status} ${x.msg}`);
  expect(bad).toEqual([]);
  expect(r.resources.map((x) => x.kind).sort()).toEqual([...kinds].sort());
  expect(r.code).toBe(0);
}

describe('kubeconform -strict, Kubernetes 1.37 and Prometheus Operator schemas', () => {
  it('accepts the chart rendered with the default values', () => {
    expectValid(template(), ['PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount', 'StatefulSet']);
  });

  it('accepts the chart rendered with every optional feature on (ServiceMonitor, PrometheusRule, ConfigMaps)', () => {
    expectValid(template('-f', FULL_VALUES), [
      'ConfigMap',
      'ConfigMap',
      'PodDisruptionBudget',
      'PrometheusRule',
      'Service',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
      'StatefulSet',
    ]);
  });

  it.each([
    ['the spool on an emptyDir', ['--set', 'persistence.enabled=false']],
    ['a PDB with minAvailable', ['--set', 'podDisruptionBudget.maxUnavailable=null', '--set', 'podDisruptionBudget.minAvailable=1']],
    ['an existing routes ConfigMap and no replicas', ['-f', FULL_VALUES, '--set', 'routes.inline=null', '--set', 'routes.existingConfigMap=my-routes', '--set', 'replicas=0']],
  ])('accepts the chart rendered with %s', (_what, args) => {
    const r = kubeconform(template(...args));
    expect(r.resources.filter((x) => x.status !== 'statusValid').map((x) => `${x.kind}: ${x.msg}`)).toEqual([]);
    expect(r.code).toBe(0);
  });

  // Broken copies of the full rendering: each must be refused, naming the field.
  const broken: [string, (s: string) => string, string, RegExp][] = [
    ['a misspelled container field', (s) => s.replace('imagePullPolicy:', 'imagePullPolcy:'), 'StatefulSet', /imagePullPolcy.*not allowed/],
    ['a string where the API wants an integer', (s) => s.replace(/terminationGracePeriodSeconds: \d+/, 'terminationGracePeriodSeconds: "90"'), 'StatefulSet', /terminationGracePeriodSeconds.*got string, want (null or )?integer/],
    ['a field at the wrong level', (s) => s.replace(/^spec:\n  replicas: 3\n/m, 'spec:\n  replicas: 3\n  enableServiceLinks: false\n'), 'StatefulSet', /enableServiceLinks.*not allowed/],
    ['a misspelled ServiceMonitor endpoint field', (s) => s.replace('interval: 15s', 'intervall: 15s'), 'ServiceMonitor', /intervall.*not allowed/],
    ['a PrometheusRule duration Prometheus would not take', (s) => s.replace('for: 30m', 'for: 30 minutes'), 'PrometheusRule', /for.*does not match pattern/],
    ['an API version this Kubernetes does not serve', (s) => s.replace('apiVersion: policy/v1', 'apiVersion: policy/v1beta1'), 'PodDisruptionBudget', /could not find schema/],
  ];
  it.each(broken)('refuses %s', (_what, change, kind, message) => {
    const good = template('-f', FULL_VALUES);
    const bad = change(good);
    expect(bad, 'the change applies').not.toBe(good);
    const r = kubeconform(bad);
    const refused = r.resources.filter((x) => x.status !== 'statusValid');
    expect(refused.map((x) => x.kind)).toEqual([kind]);
    expect(refused[0]!.msg).toMatch(message);
    expect(r.code).not.toBe(0);
  });

  it('refuses a duplicated key (which YAML parsers would silently resolve)', () => {
    const r = kubeconform('apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  name: b\n');
    expect(r.resources[0]!.status).toBe('statusError');
    expect(r.resources[0]!.msg).toMatch(/already set/);
  });
});

describe('the rendered PrometheusRule is valid for Prometheus (promtool check rules)', () => {
  function checkRendered(...args: (string | ((spec: string) => string))[]): { code: number; out: string } {
    const mutate = args.find((a) => typeof a === 'function') ?? ((spec: string) => spec);
    const helmArgs = args.filter((a): a is string => typeof a === 'string');
    const docs = parseAllDocuments(template('--show-only', 'templates/prometheusrule.yaml', '--set', 'prometheusRule.enabled=true', ...helmArgs));
    const rule = docs.map((d) => d.toJS() as { kind: string; spec: unknown }).find((o) => o?.kind === 'PrometheusRule')!;
    const path = join(scratch, `rules-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(path, mutate(stringifyYaml(rule.spec)));
    const r = sh(promtoolPath(), ['check', 'rules', path]);
    return { code: r.code, out: r.stdout + r.stderr };
  }

  it('with the defaults, and with every documented override (thresholds, for, severity, disabled alerts, extra labels)', () => {
    for (const args of [
      [],
      ['-f', FULL_VALUES],
      [
        '--set', 'prometheusRule.rules.MqttKafkaSpoolGrowing.threshold=100',
        '--set', 'prometheusRule.rules.MqttKafkaSpoolOldestRecordOld.threshold=7200',
        '--set', 'prometheusRule.rules.MqttKafkaSpoolMqttFlapping.threshold=10',
        '--set', 'prometheusRule.rules.MqttKafkaSpoolIntakePaused.threshold=0.8',
        '--set', 'prometheusRule.rules.MqttKafkaSpoolKafkaDown.for=1h',
        '--set', 'prometheusRule.rules.MqttKafkaSpoolBlocked.severity=warning',
        '--set', 'prometheusRule.additionalRuleLabels.team=iot',
      ],
    ]) {
      const r = checkRendered(...args);
      expect(r.out, args.join(' ')).toMatch(/SUCCESS: \d+ rules found/);
      expect(r.code, r.out).toBe(0);
    }
  });

  it('fails when the rendered expressions are not PromQL (the check can fail)', () => {
    const r = checkRendered((spec) => spec.replace('mqtt_kafka_spool_blocked == 1', 'mqtt_kafka_spool_blocked == = 1'));
    expect(r.out).toMatch(/parse error/);
    expect(r.code).not.toBe(0);
  });
});
