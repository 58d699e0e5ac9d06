import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { VARS } from '../../src/config/spec.js';
import { ERROR_CODES } from '../../src/errors.js';
import { Telemetry } from '../../src/observability/telemetry.js';
import { envExample, readmeWithTables } from '../../scripts/gen-docs.js';

const root = new URL('../../', import.meta.url);
const read = (p: string) => readFileSync(new URL(p, root), 'utf8');

describe('documentation stays true', () => {
  it('.env.example lists every variable and is up to date (npm run docs)', () => {
    const text = read('.env.example');
    expect(text).toBe(envExample());
    for (const v of VARS) expect(text).toMatch(new RegExp(`^#?${v.env}=`, 'm'));
  });

  it('.env.example parses against the config schema', () => {
    const env = parseDotenv(read('.env.example'));
    const c = loadConfig({ ...env, SPOOL_PATH: join(tmpdir(), 'env-example-spool.db') });
    expect(c.mqtt.topics.length).toBeGreaterThan(0);
  });

  it('README configuration and metrics tables are up to date (npm run docs)', () => {
    const readme = read('README.md');
    expect(readme).toBe(readmeWithTables(readme));
  });

  it('every metric in the README exists, and every metric is in the README', () => {
    const readme = read('README.md');
    const documented = new Set([...readme.matchAll(/`(mqtt_kafka_[a-z0-9_]+)`/g)].map((m) => m[1]!));
    const t = new Telemetry(pino({ level: 'silent' }), { defaultMetrics: false });
    const actual = new Set(t.registry.getMetricsAsArray().map((m) => (m as unknown as { name: string }).name));
    expect([...documented].filter((m) => !actual.has(m))).toEqual([]);
    expect([...actual].filter((m) => !documented.has(m))).toEqual([]);
  });

  it('every error code is documented in the README, and every documented code exists', () => {
    const readme = read('README.md');
    const documented = new Set([...readme.matchAll(/`(BRIDGE_ERR_[A-Z_]+)`/g)].map((m) => m[1]!));
    expect([...documented].sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });
});
