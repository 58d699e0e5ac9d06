/**
 * `npx tsx bench/import-cost.ts`: resident memory of a Node process that has only imported one
 * dependency (each in a fresh process, after two GCs), then all of them: the fixed cost the
 * bridge pays before any traffic. Deltas overlap (V8's own structures grow once), so they add up
 * to more than "all".
 */
import { spawnSync } from 'node:child_process';

const MODULES = ['@platformatic/kafka', 'mqtt', 'fastify', 'prom-client', 'better-sqlite3', 'pino', 'zod', 'yaml'];

function rss(imports: string[]): { rss: number; heap: number } {
  const script = `${imports.map((m) => `await import(${JSON.stringify(m)});`).join('')}
    globalThis.gc(); await new Promise((r) => setTimeout(r, 300)); globalThis.gc();
    const m = process.memoryUsage(); process.stdout.write(JSON.stringify({ rss: m.rss, heap: m.heapUsed }));`;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const v = JSON.parse(r.stdout) as { rss: number; heap: number };
  return { rss: v.rss / 1048576, heap: v.heap / 1048576 };
}

const base = rss([]);
process.stdout.write(`Node ${process.version}, nothing imported: RSS ${base.rss.toFixed(1)} MB, heap used ${base.heap.toFixed(1)} MB\n`);
for (const m of MODULES) {
  const v = rss([m]);
  process.stdout.write(`  + ${m.padEnd(22)} RSS +${(v.rss - base.rss).toFixed(1).padStart(5)} MB, heap used +${(v.heap - base.heap).toFixed(1)} MB\n`);
}
const all = rss(MODULES);
process.stdout.write(`all of them: RSS ${all.rss.toFixed(1)} MB, heap used ${all.heap.toFixed(1)} MB\n`);
