import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

/** patches/<name>+<version>.patch → the installed package must be exactly that version, patched. */
describe('patches/ (patch-package, applied on npm ci)', () => {
  const patches = readdirSync(path.join(root, 'patches')).filter((f) => f.endsWith('.patch'));

  it.each(patches)('%s matches the installed version (pinned by package-lock.json)', (file) => {
    const m = /^(.+)\+(\d+\.\d+\.\d+)\.patch$/.exec(file)!;
    const name = m[1]!.replace('+', '/');
    const installed = JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string };
    expect(installed.version, `${name} was upgraded: re-make or drop ${file}`).toBe(m[2]);
    // Every file the patch touches carries its change.
    const text = readFileSync(path.join(root, 'patches', file), 'utf8');
    const hunks = [...text.matchAll(/^\+\+\+ b\/(\S+)\n(?:.*\n)*?\+(?!\+\+)(.+)$/gm)];
    expect(hunks.length).toBeGreaterThan(0);
    for (const [, target, added] of hunks) {
      expect(readFileSync(path.join(root, target!), 'utf8'), `${target} is not patched`).toContain(added!.trim());
    }
  });

  it('mqtt-packet still logs through debug when DEBUG names it, and stays silent otherwise', () => {
    const script = "const p = require('mqtt-packet').parser(); p.on('packet', () => {}); p.parse(Buffer.from([0xc0, 0]))";
    const run = (env: Record<string, string>) => spawnSync(process.execPath, ['-e', script], { cwd: root, env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8' });
    expect(run({ DEBUG: 'mqtt-packet:parser' }).stderr).toMatch(/mqtt-packet:parser parse: current state/);
    expect(run({}).stderr).toBe('');
  });
});
