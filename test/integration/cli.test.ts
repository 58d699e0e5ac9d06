import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { makeTempDir, repoRoot } from '../harness/index.js';

/** The real entry point (its sources; `npm start` runs the same compiled, from dist/). */
function runCli(env: Record<string, string>, preload: string[] = []) {
  // tsx by path: the working directory is a temp dir (no .env), where 'tsx' would not resolve.
  const tsx = pathToFileURL(path.join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
  return spawnSync(process.execPath, [...preload, '--import', tsx, path.join(repoRoot, 'src', 'cli.ts')], {
    cwd: makeTempDir('cli-'), // no .env here
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

describe('cli', () => {
  it('refuses an unsupported Node with exit code 1 and one line, before loading anything else', () => {
    // The real entry point, with process.versions.node made to read 20.20.2 before it runs.
    const fakeNode20 = `data:text/javascript,Object.defineProperty(process.versions,'node',{value:'20.20.2'})`;
    const r = runCli({ MQTT_BROKER: '127.0.0.1' }, ['--import', fakeNode20]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringContaining('Node 20.20.2 is not supported: mqtt-kafka-spool needs Node 24 LTS')]);
    expect(r.stderr).not.toContain('invalid configuration'); // stopped before the configuration was read
  });

  it('stops at start with exit code 2 and one message naming every problem, connecting nothing', () => {
    const r = runCli({ MQTT_PORT: 'abc', KAFKA_WORKERS: '0', SPOOL_FULL_POLICY: 'panic' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('invalid configuration');
    for (const v of ['MQTT_BROKER', 'MQTT_TOPIC', 'KAFKA_BROKER', 'MQTT_PORT', 'KAFKA_WORKERS', 'SPOOL_FULL_POLICY']) expect(r.stderr).toContain(v);
    expect(r.stdout).not.toContain('connected');
  });

  it('stops with exit code 2 on an invalid routes file, naming file, rule and field', () => {
    const dir = makeTempDir('cli-routes-');
    const routes = path.join(dir, 'routes.yaml');
    writeFileSync(routes, 'routes:\n  - match: a/{x}\n    topic: "t-{nope}"\n');
    const r = runCli({ MQTT_BROKER: '127.0.0.1', MQTT_PORT: '1', KAFKA_BROKER: '127.0.0.1:1', ROUTES_FILE: routes, SPOOL_PATH: path.join(dir, 'spool.db'), HEALTH_PORT: '0' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/routes\.yaml: routes\[0\].*topic/);
  });
});
