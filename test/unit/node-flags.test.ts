import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

/** The Node flags the image runs the bridge with: NODE_OPTIONS, then those in CMD. */
function imageFlags(): string[] {
  const df = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
  const opts = /NODE_OPTIONS="([^"]*)"/.exec(df)?.[1] ?? '';
  const cmd = /^CMD \[(.*)\]\s*$/m.exec(df)?.[1] ?? '';
  return [...opts.split(' ').filter(Boolean), ...[...cmd.matchAll(/"(--[^"]+)"/g)].map((m) => m[1]!)];
}

function scriptFlags(name: string): string[] {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const words = pkg.scripts[name]!.split(' ');
  expect(words[0]).toBe('node');
  return words.filter((w) => w.startsWith('--') && w !== '--import');
}

describe('Node flags: npm start runs what the image runs', () => {
  it('the image sets the heap sizes and the GC flag', () => {
    expect(imageFlags()).toEqual(expect.arrayContaining(['--max-old-space-size=160', '--max-semi-space-size=16', '--min-semi-space-size=16', '--no-allocation-site-pretenuring']));
  });

  it.each(['start', 'start:dev'])('npm run %s passes the same flags as the image', (script) => {
    expect(scriptFlags(script).sort()).toEqual(imageFlags().sort());
  });
});
