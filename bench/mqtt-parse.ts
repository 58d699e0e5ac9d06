/**
 * `npx tsx bench/mqtt-parse.ts`: CPU per PUBLISH of MQTT.js's packet parser (mqtt-packet over bl),
 * QoS 1, MQTT 5, 200-byte payloads and badge topics, fed in 64 KB chunks as a socket delivers
 * them. Two ways, each in its own process (three of each, alternating; five timed parses in each,
 * the median kept): bl's reads as patched (patches/bl+*.patch: an integer or a string within the
 * first buffer is read in place) and bl's own read path, restored for the comparison (every read
 * makes a Buffer slice and an offset pair). No brokers.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
type Parser = { on(e: 'packet', f: () => void): void; parse(b: Buffer): number };
const mqttPacket = require('mqtt-packet') as { generate(p: object, o: object): Buffer; parser(o: object): Parser };
type Slicer = { slice(s?: number, e?: number): Buffer };
type Reads = Record<string, unknown>;
const BufferList = require(require.resolve('bl/BufferList.js', { paths: [path.dirname(require.resolve('mqtt-packet'))] })) as { prototype: Reads };

const N = Number(process.env.PARSE_PACKETS ?? 200_000);
const opts = { protocolVersion: 5 };
const one = Array.from({ length: 500 }, (_, i) =>
  mqttPacket.generate({ cmd: 'publish', qos: 1, messageId: i + 1, topic: `bench/badge/${i}/hb`, payload: Buffer.alloc(200, 32), properties: {} }, opts),
);
const wire = Buffer.concat(Array.from({ length: Math.ceil(N / one.length) }, () => Buffer.concat(one)));
const chunks: Buffer[] = [];
for (let o = 0; o < wire.length; o += 65536) chunks.push(wire.subarray(o, o + 65536));
const packets = Math.ceil(N / one.length) * one.length;

// bl's read methods as the library ships them (BufferList.js, "readUInt8: 1" and so on).
const sizes: Record<string, number> = { readUInt8: 1, readUInt16BE: 2, readUInt32BE: 4 };
const patched: Reads = { toString: BufferList.prototype.toString };
const unpatched: Reads = {
  toString(this: Slicer, encoding?: BufferEncoding, start?: number, end?: number): string {
    return this.slice(start, end).toString(encoding);
  },
};
for (const [m, n] of Object.entries(sizes)) {
  patched[m] = BufferList.prototype[m];
  unpatched[m] = function (this: Slicer, offset = 0): number {
    return (this.slice(offset, offset + n) as unknown as Record<string, (o: number) => number>)[m]!(0);
  };
}
const use = (reads: Reads) => Object.assign(BufferList.prototype, reads);

function parseAll(): number {
  const p = mqttPacket.parser(opts);
  let n = 0;
  p.on('packet', () => n++);
  for (const c of chunks) p.parse(c);
  if (n !== packets) throw new Error(`parsed ${n} of ${packets} packets`);
  return n;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

function measure(reads: Reads): number {
  use(reads);
  for (let w = 0; w < 3; w++) parseAll();
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const c0 = process.cpuUsage();
    const n = parseAll();
    const c = process.cpuUsage(c0);
    runs.push(((c.user + c.system) * 1000) / n);
  }
  return median(runs);
}

const variant = process.env.PARSE_VARIANT;
if (variant !== undefined) {
  process.stdout.write(`${measure(variant === 'own' ? unpatched : patched)}\n`);
} else {
  const runs: Record<string, number[]> = { own: [], patched: [] };
  for (let round = 1; round <= 3; round++) {
    for (const v of ['own', 'patched'] as const) {
      const out = execFileSync(process.execPath, [...process.execArgv, process.argv[1]!], { env: { ...process.env, PARSE_VARIANT: v }, encoding: 'utf8' });
      runs[v]!.push(Number(out.trim()));
      const label = v === 'own' ? "bl's own reads (a slice per read)" : 'bl patched (reads in place)';
      process.stdout.write(`round ${round}: ${label.padEnd(36)} ${Number(out.trim()).toFixed(0)} ns per PUBLISH\n`);
    }
  }
  process.stdout.write(`median: ${median(runs.own!).toFixed(0)} → ${median(runs.patched!).toFixed(0)} ns per PUBLISH\n`);
}
