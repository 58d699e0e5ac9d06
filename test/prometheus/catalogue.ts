import pino from 'pino';
import { Telemetry } from '../../src/observability/telemetry.js';

/**
 * The bridge's metric catalogue, read from its real prom-client registry: which metric names it
 * exports and which labels each one has. Used where neither promtool nor a live Prometheus can
 * know the bridge: the series promtool tests feed the rules, and the dashboard queries a clean
 * run leaves empty.
 */

/** Labels Prometheus adds per scrape target (Prometheus itself, or the Prometheus Operator). */
export const TARGET_LABELS: ReadonlySet<string> = new Set(['job', 'instance', 'namespace', 'pod', 'service', 'container', 'endpoint']);
/** Default metrics depend on the platform (e.g. process_* on Linux only): their prefixes count as existing. */
const DEFAULT_METRIC_PREFIXES = ['process_', 'nodejs_'];
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'] as const;

export interface Catalogue {
  /** The metric as exported (histogram series resolved to their base) with its own label names, or undefined. */
  resolve(name: string): { name: string; labels: readonly string[] } | undefined;
}

export async function metricCatalogue(): Promise<Catalogue> {
  const telemetry = new Telemetry(pino({ level: 'silent' }));
  const labels = new Map<string, readonly string[]>();
  const types = new Map<string, string>();
  for (const m of await telemetry.registry.getMetricsAsJSON()) {
    const metric = telemetry.registry.getSingleMetric(m.name) as unknown as { labelNames?: readonly string[] } | undefined;
    labels.set(m.name, metric?.labelNames ?? []);
    types.set(m.name, String(m.type));
  }
  return {
    resolve(name) {
      const own = labels.get(name);
      if (own) return { name, labels: own };
      for (const suffix of HISTOGRAM_SUFFIXES) {
        if (!name.endsWith(suffix)) continue;
        const base = name.slice(0, -suffix.length);
        if (types.get(base) === 'histogram') {
          const baseLabels = labels.get(base) ?? [];
          return { name: base, labels: suffix === '_bucket' ? [...baseLabels, 'le'] : baseLabels };
        }
      }
      if (DEFAULT_METRIC_PREFIXES.some((p) => name.startsWith(p))) return { name, labels: [] };
      return undefined;
    },
  };
}

/**
 * Problems with one series written in Prometheus' series notation (`name{a="x", b="y"}`, as in
 * promtool's input_series): an unknown metric, or a label the metric does not have.
 */
export function checkSeries(cat: Catalogue, series: string): string[] {
  const m = /^\s*([A-Za-z_:][\w:]*)\s*(?:\{(.*)\})?\s*$/.exec(series);
  if (!m) return [`not a series: ${series}`];
  const r = cat.resolve(m[1]!);
  if (!r) return [`unknown metric ${m[1]}`];
  const known = new Set([...r.labels, ...TARGET_LABELS]);
  const used = [...(m[2] ?? '').matchAll(/([A-Za-z_]\w*)\s*=\s*"/g)].map((x) => x[1]!);
  return used.filter((l) => !known.has(l)).map((l) => `${m[1]} has no label ${l}`);
}
