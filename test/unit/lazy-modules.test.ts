import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * What a configuration does not use is not loaded (README "Memory and CPU"): the YAML parser only
 * with a routes file, protobufjs only with a Sparkplug route. Each case runs in a fresh Node
 * process (through tsx, as the tests run the sources) and lists the CommonJS packages it loaded.
 */
function loadedPackages(body: string): string[] {
  const script = `
    import { createRequire } from 'node:module';
    await import('./src/main.ts');
    ${body}
    const req = createRequire(import.meta.url);
    const names = new Set();
    for (const f of Object.keys(req.cache)) {
      const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(f);
      if (m) names.add(m[1]);
    }
    process.stdout.write(JSON.stringify([...names]));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

describe('modules loaded only when a configuration uses them', () => {
  it('the bridge modules alone load neither yaml nor protobufjs', () => {
    const loaded = loadedPackages('');
    expect(loaded).not.toContain('yaml');
    expect(loaded).not.toContain('protobufjs');
    // Proof that the listing works: better-sqlite3 is CommonJS and always loaded.
    expect(loaded).toContain('better-sqlite3');
  }, 60_000);

  it('a routes file with a Sparkplug rule (examples/routes/unified-namespace.yaml) loads both when it is compiled (at start), before any message', () => {
    const loaded = loadedPackages(`
      const { loadRoutesFile } = await import('./src/bridge/routes/index.ts');
      loadRoutesFile('examples/routes/unified-namespace.yaml', { separator: '_', maxMessageBytes: 1000000 });`);
    expect(loaded).toContain('yaml');
    expect(loaded).toContain('protobufjs');
  }, 60_000);
});
