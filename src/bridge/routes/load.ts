import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { ConfigError } from '../../errors.js';
import type { RoutesOptions, RoutesTransform } from './compile.js';
import { compileRoutes } from './compile.js';

/**
 * Reads, parses and compiles a routes file (YAML; JSON works too, being YAML). Throws
 * ConfigError with code BRIDGE_ERR_ROUTES when the file cannot be read, is not valid YAML
 * (every syntax error with line:column), or fails validation (every problem, each naming
 * the file, rule index and name, and field).
 */
export function loadRoutesFile(path: string, opts: RoutesOptions): RoutesTransform {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new ConfigError([`${path}: cannot read the routes file (${typeof code === 'string' ? code : String(err)})`], 'BRIDGE_ERR_ROUTES');
  }
  return compileRoutes(parseRoutesYaml(text, path), path, { ...opts, baseDir: opts.baseDir ?? dirname(resolve(path)) });
}

/**
 * Parses routes YAML. Merge keys (`<<: *anchor`) are enabled so that rules can share an
 * enrich block; duplicate keys are errors (a silently overridden field is a routing bug).
 */
export function parseRoutesYaml(text: string, source: string): unknown {
  // Loaded here, not at start: a bridge without a routes file does not pay for the YAML parser.
  const { parseDocument } = createRequire(import.meta.url)('yaml') as typeof Yaml;
  const doc = parseDocument(text, { merge: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const where = pos ? `${source}:${pos.line}:${pos.col}` : source;
      // The message ends in " at line L, column C:" and a code frame; the position is already in front.
      const first = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      return `${where}: YAML: ${first || e.code}`;
    });
    throw new ConfigError(problems, 'BRIDGE_ERR_ROUTES');
  }
  try {
    // maxAliasCount bounds "billion laughs" alias expansion.
    return doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    throw new ConfigError([`${source}: YAML: ${err instanceof Error ? err.message : String(err)}`], 'BRIDGE_ERR_ROUTES');
  }
}
