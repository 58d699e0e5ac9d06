import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { VARS } from '../../src/config/spec.js';

/**
 * The Helm chart (helm/mqtt-kafka-spool): `helm lint` and `helm template` with the default values
 * and with every optional feature on (test/fixtures/helm/values-full.yaml), then checks on the
 * rendered objects. helm comes from scripts/install-helm.sh (built once through the Go module
 * proxy into .cache/bin; set HELM=/path/to/helm to use another binary).
 */

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CHART = `${REPO}helm/mqtt-kafka-spool`;
const FULL_VALUES = `${REPO}test/fixtures/helm/values-full.yaml`;
const read = (p: string) => readFileSync(`${REPO}${p}`, 'utf8');

// --- minimal shapes of the rendered objects ---
interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  env?: EnvVar[];
  ports?: { name: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[] };
  };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
}
interface Volume {
  name: string;
  emptyDir?: object;
  configMap?: { name: string; items?: { key: string; path: string }[] };
  secret?: { secretName: string; items?: { key: string; path: string }[] };
}
interface PodSpec {
  enableServiceLinks?: boolean;
  terminationGracePeriodSeconds?: number;
  automountServiceAccountToken?: boolean;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number };
  containers: Container[];
  volumes?: Volume[];
}
interface StatefulSetSpec {
  replicas: number;
  serviceName: string;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: Meta; spec: PodSpec };
  volumeClaimTemplates?: {
    metadata: Meta;
    spec: { accessModes: string[]; storageClassName?: string; resources: { requests: { storage: string } } };
  }[];
}
interface RuleGroup {
  name: string;
  rules: { alert: string; expr: string; for: string; labels: Record<string, string>; annotations: Record<string, string> }[];
}

// --- running helm ---
let HELM = process.env.HELM ?? '';

function run(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(HELM, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function template(...args: string[]): { code: number; stdout: string; stderr: string } {
  return run(['template', 'bridge', CHART, '--namespace', 'iot', ...args]);
}

/**
 * NOTES.txt as `helm install` would print it. `helm install --dry-run` needs a cluster, so a copy
 * of the chart gets a template that includes NOTES.txt (every file in templates/ is a named
 * template) into a ConfigMap, which `helm template` renders.
 */
function notes(...args: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'helm-notes-'));
  try {
    cpSync(CHART, dir, { recursive: true });
    writeFileSync(
      join(dir, 'templates', 'zz-notes-test.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  NOTES.txt: {{ include "mqtt-kafka-spool/templates/NOTES.txt" . | toJson }}\n',
    );
    const r = run(['template', 'bridge', dir, '--namespace', 'iot', '--show-only', 'templates/zz-notes-test.yaml', ...args]);
    if (r.code !== 0) throw new Error(`rendering NOTES.txt failed:\n${r.stderr}`);
    return (parseYaml(r.stdout) as { data: { 'NOTES.txt': string } }).data['NOTES.txt'];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Renders and parses every document; fails the test with helm's stderr when helm fails. */
function render(...args: string[]): K8sObject[] {
  const r = template(...args);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} failed (exit ${r.code}):\n${r.stderr}`);
  const docs = parseAllDocuments(r.stdout);
  for (const d of docs) if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors[0]!.message}`);
  return docs.map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
}

function only(objs: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `exactly one ${kind}${name ? ` ${name}` : ''}`).toHaveLength(1);
  return found[0]!;
}

function statefulSet(objs: K8sObject[]): { sts: K8sObject; spec: StatefulSetSpec; pod: PodSpec; bridge: Container; env: Map<string, EnvVar> } {
  const sts = only(objs, 'StatefulSet');
  const spec = sts.spec as unknown as StatefulSetSpec;
  const pod = spec.template.spec;
  expect(pod.containers).toHaveLength(1);
  const bridge = pod.containers[0]!;
  const env = new Map((bridge.env ?? []).map((e) => [e.name, e]));
  expect(env.size, 'no duplicate env names').toBe((bridge.env ?? []).length);
  return { sts, spec, pod, bridge, env };
}

/** The volume and item a file path inside the container comes from. */
function fileSource(pod: PodSpec, bridge: Container, path: string): { volume: Volume; itemKey: string | undefined } {
  const mount = (bridge.volumeMounts ?? []).find((m) => path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
  expect(mount, `a volume is mounted over ${path}`).toBeDefined();
  const volume = (pod.volumes ?? []).find((v) => v.name === mount!.name);
  expect(volume, `volume ${mount!.name} exists`).toBeDefined();
  const rel = posix.relative(mount!.mountPath, path);
  const items = volume!.secret?.items ?? volume!.configMap?.items;
  const item = items?.find((i) => i.path === rel);
  if (items) expect(item, `${path} is an item of volume ${volume!.name}`).toBeDefined();
  return { volume: volume!, itemKey: item?.key };
}

const SECRET_VARS = VARS.filter((v) => v.secret).map((v) => v.env);
/** Variables the chart may set besides the bridge's own (VARS and their _FILE forms). */
const NON_BRIDGE_ENV = new Set(['POD_NAME', 'NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS']);
const KNOWN_ENV = new Set([...VARS.map((v) => v.env), ...SECRET_VARS.map((v) => `${v}_FILE`), ...NON_BRIDGE_ENV]);

/** Checks every chart must satisfy whatever the values. */
function checkCommon(objs: K8sObject[]): void {
  const { spec, pod, bridge, env } = statefulSet(objs);

  // Never a Secret: secrets are referenced by name only.
  expect(objs.filter((o) => o.kind === 'Secret')).toEqual([]);
  for (const name of SECRET_VARS) {
    expect(env.get(name)?.value, `${name} is never inlined`).toBeUndefined();
  }
  for (const e of env.values()) {
    if (/PASSWORD|PASSPHRASE/.test(e.name)) expect(e.name.endsWith('_FILE') || e.valueFrom !== undefined, e.name).toBe(true);
  }
  // Every variable is one the bridge knows (catches a chart/spec drift, e.g. a renamed variable).
  expect([...env.keys()].filter((k) => !KNOWN_ENV.has(k))).toEqual([]);

  // The spool: a volumeClaimTemplate (or the emptyDir fallback) mounted at SPOOL_PATH's directory.
  const spoolPath = env.get('SPOOL_PATH')?.value;
  expect(spoolPath).toMatch(/^\/.+\/[^/]+$/);
  const spoolMount = bridge.volumeMounts?.find((m) => m.mountPath === dirname(spoolPath!));
  expect(spoolMount, 'a volume is mounted at the SPOOL_PATH directory').toBeDefined();
  expect(spoolMount!.readOnly).not.toBe(true);
  expect(spec.volumeClaimTemplates?.map((t) => t.metadata.name)).toContain(spoolMount!.name);
  expect(pod.volumes?.some((v) => v.name === spoolMount!.name), 'the spool is the claim, not a pod volume').toBe(false);

  // Security: non-root uid 10001, read-only root, no capabilities, a writable /tmp.
  expect(pod.securityContext?.runAsNonRoot).toBe(true);
  expect(pod.securityContext?.runAsUser).toBe(10001);
  expect(pod.securityContext?.fsGroup, 'fsGroup makes the spool volume writable').toBe(10001);
  expect(bridge.securityContext?.runAsNonRoot).toBe(true);
  expect(bridge.securityContext?.readOnlyRootFilesystem).toBe(true);
  expect(bridge.securityContext?.allowPrivilegeEscalation).toBe(false);
  expect(bridge.securityContext?.capabilities?.drop).toContain('ALL');
  const tmp = bridge.volumeMounts?.find((m) => m.mountPath === '/tmp');
  expect(pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
  expect(pod.automountServiceAccountToken).toBe(false);

  // Probes on the bridge's HTTP port.
  const http = bridge.ports?.find((p) => p.name === 'http');
  expect(http?.containerPort).toBe(Number(env.get('HEALTH_PORT')?.value));
  expect(bridge.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' });
  expect(bridge.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' });
  expect(bridge.startupProbe?.httpGet?.path).toBe('/healthz');

  // Graceful stop: the bridge's own timeout ends before the kubelet's SIGKILL.
  const shutdownMs = Number(env.get('SHUTDOWN_TIMEOUT_MS')?.value);
  expect(shutdownMs).toBeGreaterThanOrEqual(1000);
  expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(shutdownMs / 1000);

  // Service links would inject KAFKA_PORT=tcp://... for a Service named kafka.
  expect(pod.enableServiceLinks).toBe(false);

  // Stable MQTT client id per replica: the pod name, from the downward API; or, in a session
  // group, one fixed client id for every pod and the pod name as the instance id.
  const clientId = env.get('MQTT_CLIENT_ID');
  const fromPodName = (e: EnvVar | undefined) => e?.valueFrom?.fieldRef?.fieldPath === 'metadata.name';
  const inGroup = env.has('BRIDGE_GROUP') && fromPodName(env.get('BRIDGE_INSTANCE_ID')) && (clientId?.value ?? '') !== '';
  expect(inGroup || fromPodName(clientId) || (fromPodName(env.get('POD_NAME')) && /\$\(POD_NAME\)$/.test(clientId?.value ?? ''))).toBe(true);

  // The StatefulSet's governing Service publishes not-ready pods (so they are still scraped).
  const headless = only(objs, 'Service', only(objs, 'StatefulSet').spec!.serviceName as string);
  expect(headless.spec?.clusterIP).toBe('None');
  expect(headless.spec?.publishNotReadyAddresses).toBe(true);
  expect(headless.spec?.selector).toEqual(spec.selector.matchLabels);
  const svc = objs.find((o) => o.kind === 'Service' && o.spec?.clusterIP !== 'None');
  expect((svc?.spec?.ports as { targetPort: string }[])[0]?.targetPort).toBe('http');

  const pdb = only(objs, 'PodDisruptionBudget');
  expect(pdb.spec?.selector).toEqual({ matchLabels: spec.selector.matchLabels });
  expect(pdb.spec?.minAvailable, 'a single replica must not block node drains').toBeUndefined();
}

function alertsFile(): RuleGroup[] {
  return (parseYaml(read('helm/mqtt-kafka-spool/files/alerts.yaml')) as { groups: RuleGroup[] }).groups;
}

beforeAll(() => {
  if (HELM) return;
  const r = spawnSync('bash', [`${REPO}scripts/install-helm.sh`], { encoding: 'utf8', timeout: 900_000 });
  if (r.status !== 0) throw new Error(`scripts/install-helm.sh failed (exit ${r.status}):\n${r.stderr}`);
  HELM = r.stdout.trim().split('\n').pop()!;
}, 900_000);

describe('helm lint', () => {
  it('passes with the default values', () => {
    const r = run(['lint', '--strict', CHART]);
    expect(r.stderr + r.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(r.code).toBe(0);
  });

  it('passes with every optional feature on', () => {
    const r = run(['lint', '--strict', CHART, '-f', FULL_VALUES]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});

describe('helm template with the default values', () => {
  let objs: K8sObject[];
  beforeAll(() => {
    objs = render();
  });

  it('renders the StatefulSet, Services, ServiceAccount and PDB; monitoring objects stay off', () => {
    expect(objs.map((o) => o.kind).sort()).toEqual(['PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount', 'StatefulSet']);
    for (const o of objs) expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe('iot');
  });

  it('meets the common requirements (spool claim, security, probes, shutdown, client id, no secrets)', () => {
    checkCommon(objs);
  });

  it('has one replica, a 10Gi spool claim, the SPOOL_PATH of the image, a 40 s grace period', () => {
    const { spec, pod, bridge, env } = statefulSet(objs);
    expect(spec.replicas).toBe(1);
    expect(spec.volumeClaimTemplates?.[0]?.spec.resources.requests.storage).toBe('10Gi');
    expect(spec.volumeClaimTemplates?.[0]?.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(spec.volumeClaimTemplates?.[0]?.spec.storageClassName).toBeUndefined();
    // Same path as the Dockerfile's ENV SPOOL_PATH and VOLUME.
    expect(env.get('SPOOL_PATH')?.value).toBe('/var/lib/mqtt-kafka-spool/spool.db');
    expect(read('Dockerfile')).toMatch(/SPOOL_PATH=\/var\/lib\/mqtt-kafka-spool\/spool\.db/);
    expect(pod.terminationGracePeriodSeconds).toBe(40);
    expect(env.get('SHUTDOWN_TIMEOUT_MS')?.value).toBe('30000');
    expect(env.get('MQTT_CLIENT_ID')).toEqual({ name: 'MQTT_CLIENT_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
    expect(env.has('POD_NAME')).toBe(false);
    expect(bridge.image).toBe('mqtt-kafka-spool:0.1.0');
    // Empty config values are left out (the bridge's default applies); no routes, no secrets.
    expect([...env.keys()].sort()).toEqual(['HEALTH_PORT', 'LOG_LEVEL', 'MQTT_CLIENT_ID', 'SHUTDOWN_TIMEOUT_MS', 'SPOOL_MAX_BYTES', 'SPOOL_PATH']);
    expect(env.get('SPOOL_MAX_BYTES')?.value, 'an integer, not 7.516192768e+09').toBe('7516192768');
  });

  it('NOTES.txt warns that the required settings are missing', () => {
    expect(notes()).toContain('WARNING: not set: config.MQTT_BROKER, config.MQTT_TOPIC (or routes), config.KAFKA_BROKERS');
    const full = notes('-f', FULL_VALUES);
    expect(full).not.toContain('WARNING');
    expect(full).toContain('plant1-bridge-mqtt-kafka-spool-0 ... plant1-bridge-mqtt-kafka-spool-2');
    expect(full).toContain('SHUTDOWN_TIMEOUT_MS=75000');
  });
});

describe('helm template with several replicas: a session group (sessionGroup)', () => {
  const base = ['--set', 'config.MQTT_TOPIC=sensors/#'];

  it('--set replicas=2 gives failover with no other edit: group and shared client id from the release, instance ids from pod names, soft anti-affinity, PDB', () => {
    const objs = render('--set', 'replicas=2', ...base);
    checkCommon(objs);
    const { spec, env } = statefulSet(objs);
    expect(spec.replicas).toBe(2);
    expect(env.get('BRIDGE_GROUP')?.value).toBe('bridge-mqtt-kafka-spool');
    expect(env.get('BRIDGE_INSTANCE_ID')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect(env.get('MQTT_SESSIONS')?.value).toBe('1');
    // The client id pod 0 had before: a release that ran one replica keeps its broker session.
    expect(env.get('MQTT_CLIENT_ID')?.value).toBe('bridge-mqtt-kafka-spool-0');
    // One session: nothing to share.
    expect(env.get('MQTT_SHARED_GROUP')).toBeUndefined();
    const pod = (spec.template as { spec: { affinity?: { podAntiAffinity?: { preferredDuringSchedulingIgnoredDuringExecution?: { podAffinityTerm: { topologyKey: string } }[] } } } }).spec;
    expect(pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0]?.podAffinityTerm.topologyKey).toBe('kubernetes.io/hostname');
    expect(objs.some((o) => o.kind === 'PodDisruptionBudget')).toBe(true);
  });

  it('several sessions: client ids <statefulset>-i (the pods\' former ones) in a shared group named after the StatefulSet', () => {
    const { env } = statefulSet(render('--set', 'replicas=3', '--set', 'sessionGroup.sessions=3', ...base));
    expect(env.get('MQTT_SESSIONS')?.value).toBe('3');
    expect(env.get('MQTT_CLIENT_ID')?.value).toBe('bridge-mqtt-kafka-spool');
    expect(env.get('MQTT_SHARED_GROUP')?.value).toBe('bridge-mqtt-kafka-spool');
  });

  it('replicas: 1 keeps working as before (no group, the pod name as client id, no anti-affinity)', () => {
    const { spec, env } = statefulSet(render(...base));
    expect(env.get('BRIDGE_GROUP')).toBeUndefined();
    expect(env.get('MQTT_CLIENT_ID')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect((spec.template as { spec: { affinity?: unknown } }).spec.affinity).toBeUndefined();
    // Forced on, a single replica is a group of one.
    expect(statefulSet(render('--set', 'sessionGroup.enabled=true', '--set', 'sessionGroup.name=plant1', ...base)).env.get('BRIDGE_GROUP')?.value).toBe('plant1');
  });

  it('refuses the chart-managed group variables in config', () => {
    for (const v of ['BRIDGE_GROUP', 'BRIDGE_INSTANCE_ID', 'MQTT_SESSIONS']) expect(template('--set', `config.${v}=x`).code).not.toBe(0);
  });

  it('NOTES.txt names the group and says scaling down needs no drain marker', () => {
    const n = notes('--set', 'replicas=2');
    expect(n).toContain('BRIDGE_GROUP=bridge-mqtt-kafka-spool');
    expect(n).not.toContain('drain-on-stop');
  });
});

describe('helm template with several replicas in shared mode (sessionGroup.enabled=false)', () => {
  const off = ['--set', 'sessionGroup.enabled=false'];
  const group = (...args: string[]) => statefulSet(render(...off, ...args)).env.get('MQTT_SHARED_GROUP')?.value;

  it('replicas: 3 sets MQTT_SHARED_GROUP to the StatefulSet name, from the release name', () => {
    const objs = render(...off, '--set', 'replicas=3', '--set', 'config.MQTT_TOPIC=sensors/#');
    checkCommon(objs);
    const { spec, env } = statefulSet(objs);
    expect(spec.replicas).toBe(3);
    expect(env.get('MQTT_SHARED_GROUP')?.value).toBe(only(objs, 'StatefulSet').metadata.name);
    expect(env.get('MQTT_SHARED_GROUP')?.value).toBe('bridge-mqtt-kafka-spool');
    // Filters stay plain in MQTT_TOPIC: the bridge adds $share/<group>/.
    expect(env.get('MQTT_TOPIC')?.value).toBe('sensors/#');
    // Client ids stay per replica.
    expect(env.get('MQTT_CLIENT_ID')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect(env.get('BRIDGE_GROUP')).toBeUndefined();
  });

  it('replicas: 1 keeps plain subscriptions (no MQTT_SHARED_GROUP), as before', () => {
    expect(group()).toBeUndefined();
    expect(group('--set', 'replicas=1')).toBeUndefined();
  });

  it('follows sharedSubscription: a group of its own, forced on with one replica, off', () => {
    expect(group('--set', 'replicas=3', '--set', 'sharedSubscription.group=plant1')).toBe('plant1');
    expect(group('--set', 'sharedSubscription.enabled=true')).toBe('bridge-mqtt-kafka-spool');
    expect(group('--set', 'replicas=3', '--set', 'sharedSubscription.enabled=false')).toBeUndefined();
  });

  it('leaves hand-written $share/ filters alone in auto mode (the old way keeps working)', () => {
    expect(group('-f', FULL_VALUES)).toBeUndefined();
  });

  it('NOTES.txt names the group and the drain procedure, or warns when replicas are not shared', () => {
    const shared = notes(...off, '--set', 'replicas=3');
    expect(shared).toContain('MQTT_SHARED_GROUP=bridge-mqtt-kafka-spool');
    expect(shared).toContain('drain-on-stop');
    expect(shared).not.toContain('WARNING: 3 replicas');
    expect(notes(...off, '--set', 'replicas=3', '--set', 'sharedSubscription.enabled=false')).toContain('WARNING: 3 replicas without shared subscriptions');
    expect(notes()).not.toContain('MQTT_SHARED_GROUP');
  });
});

describe('helm template with every optional feature on (test/fixtures/helm/values-full.yaml)', () => {
  let objs: K8sObject[];
  let values: Record<string, unknown>;
  beforeAll(() => {
    objs = render('-f', FULL_VALUES);
    values = parseYaml(readFileSync(FULL_VALUES, 'utf8')) as Record<string, unknown>;
  });

  it('meets the common requirements', () => {
    checkCommon(objs);
  });

  it('runs 3 replicas, each with its own 50Gi spool claim on the given class and path', () => {
    const { spec, bridge, env } = statefulSet(objs);
    expect(spec.replicas).toBe(3);
    const claim = spec.volumeClaimTemplates![0]!;
    expect(claim.spec.resources.requests.storage).toBe('50Gi');
    expect(claim.spec.storageClassName).toBe('fast-ssd');
    expect(env.get('SPOOL_PATH')?.value).toBe('/data/spool/bridge.db');
    expect(bridge.volumeMounts?.find((m) => m.name === claim.metadata.name)?.mountPath).toBe('/data/spool');
    expect((only(objs, 'StatefulSet').spec as Record<string, unknown>).persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });
    // Claim template labels must not change between chart versions (the field is immutable).
    expect(Object.keys(claim.metadata.labels ?? {})).not.toContain('helm.sh/chart');
  });

  it('derives SHUTDOWN_TIMEOUT_MS from the grace period and margin', () => {
    const { pod, env } = statefulSet(objs);
    expect(pod.terminationGracePeriodSeconds).toBe(90);
    expect(env.get('SHUTDOWN_TIMEOUT_MS')?.value).toBe(String((90 - 15) * 1000));
  });

  it('prefixes the pod name for MQTT_CLIENT_ID', () => {
    const { env } = statefulSet(objs);
    expect(env.get('POD_NAME')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect(env.get('MQTT_CLIENT_ID')?.value).toBe('plant1-$(POD_NAME)');
    // Kubernetes expands $(POD_NAME) only when it is defined earlier in the list.
    const names = statefulSet(objs).bridge.env!.map((e) => e.name);
    expect(names.indexOf('POD_NAME')).toBeLessThan(names.indexOf('MQTT_CLIENT_ID'));
  });

  it('renders config as strings, integers unmangled, empty values left out', () => {
    const { env } = statefulSet(objs);
    expect(env.get('SPOOL_MAX_BYTES')?.value).toBe('53687091200');
    expect(env.get('KAFKA_WORKERS')?.value).toBe('8');
    expect(env.get('KAFKA_AUTO_CREATE_TOPICS')?.value).toBe('false');
    expect(env.get('MQTT_TOPIC')?.value).toBe('$share/bridge/sensors/#,$share/bridge/alarms/#');
    expect(env.has('DLQ_TOPIC')).toBe(false);
    expect(env.get('NODE_OPTIONS')?.value).toBe('--max-old-space-size=768');
  });

  it('mounts the secrets by reference and passes files as *_FILE and path variables', () => {
    const { pod, bridge, env } = statefulSet(objs);
    const expectFile = (variable: string, secretName: string, key: string) => {
      const path = env.get(variable)?.value;
      expect(path, variable).toMatch(/^\//);
      const src = fileSource(pod, bridge, path!);
      expect(src.volume.secret?.secretName, variable).toBe(secretName);
      expect(src.itemKey, variable).toBe(key);
    };
    expectFile('MQTT_PASSWORD_FILE', 'mqtt-credentials', 'mqtt-password');
    expectFile('KAFKA_SASL_PASSWORD_FILE', 'kafka-credentials', 'sasl-password');
    expectFile('ROOT_CA', 'mqtt-tls', 'ca.crt');
    expectFile('MQTT_CLIENT_CERT', 'mqtt-tls', 'tls.crt');
    expectFile('MQTT_CLIENT_KEY', 'mqtt-tls', 'tls.key');
    expectFile('KAFKA_TLS_CA', 'kafka-ca', 'ca.pem');
    expectFile('NODE_EXTRA_CA_CERTS', 'corporate-ca-bundle', 'bundle.pem');
    expect(env.get('KAFKA_TLS')?.value).toBe('true');
    expect(env.get('MQTT_USERNAME')?.valueFrom?.secretKeyRef).toEqual({ name: 'mqtt-credentials', key: 'mqtt-username' });
    expect(env.get('KAFKA_SASL_USERNAME')?.value).toBe('bridge');
    for (const m of bridge.volumeMounts ?? []) {
      const v = pod.volumes?.find((x) => x.name === m.name);
      if (v?.secret) expect(m.readOnly, `secret volume ${m.name} is read-only`).toBe(true);
    }
  });

  it('mounts the routes file from the chart ConfigMap and rolls the pods when it changes', () => {
    const { sts, pod, bridge, env } = statefulSet(objs);
    const path = env.get('ROUTES_FILE')?.value;
    const src = fileSource(pod, bridge, path!);
    const cm = only(objs, 'ConfigMap', src.volume.configMap!.name);
    expect(cm.data?.[src.itemKey!]).toBe(((values.routes as { inline: string }).inline).replace(/\n$/, ''));
    expect((sts.spec as unknown as StatefulSetSpec).template.metadata.annotations?.['checksum/routes']).toMatch(/^[0-9a-f]{64}$/);
  });

  it('uses an existing routes ConfigMap as is', () => {
    const o = render('--set', 'routes.existingConfigMap=my-routes', '--set', 'routes.key=site.yaml');
    const { pod, bridge, env } = statefulSet(o);
    expect(env.get('ROUTES_FILE')?.value).toBe('/etc/mqtt-kafka-spool/routes/site.yaml');
    expect(fileSource(pod, bridge, env.get('ROUTES_FILE')!.value!).volume.configMap?.name).toBe('my-routes');
    expect(o.filter((x) => x.kind === 'ConfigMap')).toEqual([]);
  });

  it('has a ServiceMonitor that scrapes /metrics through the headless Service', () => {
    const sm = only(objs, 'ServiceMonitor');
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(sm.metadata.labels?.release).toBe('kube-prometheus-stack');
    const selector = (sm.spec?.selector as { matchLabels: Record<string, string> }).matchLabels;
    const matching = objs.filter((o) => o.kind === 'Service' && Object.entries(selector).every(([k, v]) => o.metadata.labels?.[k] === v));
    expect(matching.map((s) => s.spec?.clusterIP)).toEqual(['None']);
    expect(matching[0]!.spec?.publishNotReadyAddresses).toBe(true);
    const endpoints = sm.spec?.endpoints as { port: string; path: string; interval: string }[];
    expect(endpoints).toMatchObject([{ port: 'http', path: '/metrics', interval: '15s' }]);
  });

  it('has the dashboard ConfigMap for the Grafana sidecar, equal to files/grafana-dashboard.json', () => {
    const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-dashboard'))!;
    expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    expect(cm.metadata.namespace).toBe('monitoring');
    expect(cm.metadata.annotations?.grafana_folder).toBe('IoT');
    const [json] = Object.values(cm.data ?? {});
    expect(JSON.parse(json!)).toEqual(JSON.parse(read('helm/mqtt-kafka-spool/files/grafana-dashboard.json')));
  });

  it('applies the per-alert overrides to the PrometheusRule', () => {
    const rule = only(objs, 'PrometheusRule');
    expect(rule.metadata.labels?.release).toBe('kube-prometheus-stack');
    const rules = (rule.spec?.groups as RuleGroup[]).flatMap((g) => g.rules);
    const byName = new Map(rules.map((r) => [r.alert, r]));
    const file = new Map(alertsFile().flatMap((g) => g.rules).map((r) => [r.alert, r]));
    expect(byName.has('MqttKafkaSpoolMqttFlapping')).toBe(false);
    expect(byName.size).toBe(file.size - 1);
    const old = byName.get('MqttKafkaSpoolOldestRecordOld')!;
    expect(old.expr).toBe(file.get('MqttKafkaSpoolOldestRecordOld')!.expr.replace(/3600$/, '7200'));
    expect(old.labels.severity).toBe('critical');
    expect(byName.get('MqttKafkaSpoolKafkaDown')!.for).toBe('30m');
    for (const r of rules) {
      expect(r.labels.team, r.alert).toBe('iot');
      expect(r.annotations, r.alert).toEqual(file.get(r.alert)!.annotations);
    }
  });
});

describe('PrometheusRule with the default thresholds', () => {
  it('embeds files/alerts.yaml unchanged', () => {
    const rule = only(render('--set', 'prometheusRule.enabled=true'), 'PrometheusRule');
    expect(rule.spec?.groups).toEqual(alertsFile());
  });

  it('changes a threshold only where the expression ends in one', () => {
    const rule = only(render('--set', 'prometheusRule.enabled=true', '--set', 'prometheusRule.rules.MqttKafkaSpoolIntakePaused.threshold=0.8'), 'PrometheusRule');
    const paused = (rule.spec?.groups as RuleGroup[]).flatMap((g) => g.rules).find((r) => r.alert === 'MqttKafkaSpoolIntakePaused');
    expect(paused?.expr).toBe('avg_over_time(mqtt_kafka_intake_paused[10m]) > 0.8');
    // KafkaDown has no threshold to set: the schema refuses it.
    const r = template('--set', 'prometheusRule.enabled=true', '--set', 'prometheusRule.rules.MqttKafkaSpoolKafkaDown.threshold=1');
    expect(r.code).not.toBe(0);
  });
});

describe('values.schema.json and template checks reject bad values', () => {
  const rejected: [string, string[], RegExp][] = [
    ['a negative replica count', ['--set', 'replicas=-1'], /replicas/],
    ['a wrong type', ['--set', 'persistence.enabled=maybe'], /persistence/],
    ['a string where an integer belongs', ['--set', 'terminationGracePeriodSeconds=forty'], /terminationGracePeriodSeconds/],
    ['a misspelled top-level key', ['--set', 'replica=2'], /replica/],
    ['a misspelled nested key', ['--set', 'persistence.sise=1Gi'], /sise/],
    ['a chart-managed variable in config', ['--set', 'config.SPOOL_PATH=/tmp/x.db'], /SPOOL_PATH/],
    ['an inline password', ['--set', 'config.MQTT_PASSWORD=hunter2'], /MQTT_PASSWORD/],
    ['a lower-case variable name', ['--set', 'config.mqtt_broker=x'], /mqtt_broker/],
    ['an unknown alert override', ['--set', 'prometheusRule.rules.NoSuchAlert.for=5m'], /NoSuchAlert/],
    ['a malformed alert duration', ['--set', 'prometheusRule.rules.MqttKafkaSpoolBlocked.for=soon'], /for/],
    ['a grace period not above the margin', ['--set', 'terminationGracePeriodSeconds=10', '--set', 'shutdownMarginSeconds=10'], /terminationGracePeriodSeconds/],
    ['both inline routes and an existing ConfigMap', ['--set', 'routes.inline=x', '--set', 'routes.existingConfigMap=y'], /routes/],
    ['a variable set twice (config and tls.kafka.enabled)', ['--set', 'tls.kafka.enabled=true', '--set', 'config.KAFKA_TLS=true'], /KAFKA_TLS/],
    ['both PDB fields', ['--set', 'podDisruptionBudget.minAvailable=1'], /at '\/podDisruptionBudget': 'not' failed/],
    ['MQTT_SHARED_GROUP in config (sharedSubscription.* sets it)', ['--set', 'config.MQTT_SHARED_GROUP=g'], /invalid propertyName 'MQTT_SHARED_GROUP'/],
    ["a share name with '/'", ['--set', 'sharedSubscription.group=a/b'], /sharedSubscription/],
    ['sharedSubscription.enabled=maybe', ['--set', 'sharedSubscription.enabled=maybe'], /sharedSubscription/],
    ['a forced group over hand-written $share/ filters', ['--set', 'sharedSubscription.enabled=true', '--set', 'config.MQTT_TOPIC=$share/g/a/#'], /already has \$share\/ filters/],
  ];
  it.each(rejected)('rejects %s', (_what, args, message) => {
    const r = template(...args);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });

  it('rejects every secret variable of the bridge in config (the schema follows src/config/spec.ts)', () => {
    const schema = JSON.parse(read('helm/mqtt-kafka-spool/values.schema.json')) as {
      properties: { config: { propertyNames: { not: { enum: string[] } } } };
    };
    const forbidden = new Set(schema.properties.config.propertyNames.not.enum);
    const missing = SECRET_VARS.flatMap((v) => [v, `${v}_FILE`]).filter((v) => !forbidden.has(v));
    expect(missing).toEqual([]);
  });

  it('accepts the documented non-default values', () => {
    expect(template('-f', FULL_VALUES, '--set', 'replicas=0').code).toBe(0);
    expect(template('--set', 'persistence.enabled=false').code).toBe(0);
    expect(template('--set', 'podDisruptionBudget.maxUnavailable=null', '--set', 'podDisruptionBudget.minAvailable=1').code).toBe(0);
  });
});
