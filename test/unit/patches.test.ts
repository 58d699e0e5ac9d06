import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
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

  it('@platformatic/kafka compiles an option validator on its first use, not at import, and still rejects bad options', () => {
    // Counts Ajv compilations (the library's Ajv2020 instance shares this prototype) across the
    // import, a client that validates nothing (strict is off by default), and clients that do.
    const script = `
      const { Ajv2020 } = await import('ajv/dist/2020.js');
      let n = 0; const compile = Ajv2020.prototype.compile;
      Ajv2020.prototype.compile = function (...a) { n++; return compile.apply(this, a); };
      const k = await import('@platformatic/kafka');
      const out = { atImport: n };
      await new k.Producer({ clientId: 'a', bootstrapBrokers: ['127.0.0.1:1'] }).close();
      out.afterDefaultProducer = n;
      try { new k.Producer({ clientId: 'a', bootstrapBrokers: ['127.0.0.1:1'], strict: true, retries: 'no' }); } catch (e) { out.strict = e.message; }
      try { new k.Consumer({ clientId: 'a', bootstrapBrokers: ['127.0.0.1:1'], groupId: 7 }); } catch (e) { out.group = e.message; }
      out.afterValidation = n;
      process.stdout.write(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as { atImport: number; afterDefaultProducer: number; strict?: string; group?: string; afterValidation: number };
    expect(out.atImport).toBe(0);
    expect(out.afterDefaultProducer).toBe(0);
    expect(out.strict).toMatch(/\/options\/retries must be number/);
    expect(out.group).toMatch(/\/options\/groupId must be string/);
    expect(out.afterValidation).toBeGreaterThan(0);
  });

  it('bl reads in place within its first buffer and the same as before across buffers: MQTT packets split at every byte parse alike', () => {
    const require = createRequire(import.meta.url);
    type Parsed = Record<string, unknown>;
    const mqttPacket = require('mqtt-packet') as {
      generate(p: object, o: object): Buffer;
      parser(o: object): { on(e: 'packet', f: (p: Parsed) => void): void; on(e: 'error', f: (err: Error) => void): void; parse(b: Buffer): number };
    };
    const BufferList = require(require.resolve('bl/BufferList.js', { paths: [path.dirname(require.resolve('mqtt-packet'))] })) as new (b?: Buffer | Buffer[]) => {
      readUInt8(o?: number): number;
      readUInt16BE(o?: number): number;
      readUInt32BE(o?: number): number;
      toString(enc?: BufferEncoding, s?: number, e?: number): string;
      consume(n: number): unknown;
    };
    // Reads that stay in the first buffer, that cross into the next, and that run past the end.
    const bl = new BufferList([Buffer.from([1, 2, 3]), Buffer.from([4, 5, 6, 7])]);
    expect([bl.readUInt8(0), bl.readUInt8(2), bl.readUInt8(3), bl.readUInt16BE(1), bl.readUInt16BE(2), bl.readUInt32BE(0), bl.readUInt32BE(3)]).toEqual([1, 3, 4, 0x0203, 0x0304, 0x01020304, 0x04050607]);
    expect(() => bl.readUInt32BE(4)).toThrow(RangeError);
    expect([bl.toString('hex', 0, 2), bl.toString('hex', 1, 5), bl.toString('hex'), bl.toString('hex', 5)]).toEqual(['0102', '02030405', '01020304050607', '0607']);
    bl.consume(2);
    expect([bl.readUInt8(0), bl.readUInt16BE(0), bl.toString('hex', 0, 1)]).toEqual([3, 0x0304, '03']);

    const opts = { protocolVersion: 5 };
    const packets = [
      { cmd: 'publish', qos: 1, messageId: 513, topic: 'badges/hall-1/ü/position', payload: Buffer.from('{"x":1}'), properties: { userProperties: { site: 'a', 'k-ü': ['1', '2'] }, contentType: 'application/json' } },
      { cmd: 'publish', qos: 0, topic: 'a', payload: Buffer.alloc(300, 7), properties: {} },
      { cmd: 'publish', qos: 1, messageId: 65535, topic: 't/'.repeat(90), payload: Buffer.alloc(0), properties: { messageExpiryInterval: 70000 } },
      { cmd: 'puback', messageId: 1, reasonCode: 0 },
      { cmd: 'pingresp' },
    ];
    const wire = Buffer.concat(packets.map((p) => mqttPacket.generate(p, opts)));
    const parse = (chunks: Buffer[]) => {
      const p = mqttPacket.parser(opts);
      const out: Parsed[] = [];
      p.on('packet', (x) => out.push({ ...x }));
      p.on('error', (err) => out.push({ error: err.message }));
      for (const c of chunks) p.parse(c);
      return out;
    };
    const whole = parse([wire]);
    expect(whole.map((p) => p.cmd)).toEqual(['publish', 'publish', 'publish', 'puback', 'pingresp']);
    expect(whole[0]).toMatchObject({ topic: 'badges/hall-1/ü/position', messageId: 513, properties: { userProperties: { site: 'a', 'k-ü': ['1', '2'] } } });
    for (let a = 1; a < wire.length; a++) {
      expect(parse([wire.subarray(0, a), wire.subarray(a)]), `split at ${a}`).toEqual(whole);
    }
    // Three pieces, and a byte at a time.
    for (let a = 1; a < wire.length; a += 7) expect(parse([wire.subarray(0, a), wire.subarray(a, a + 3), wire.subarray(a + 3)]), `split at ${a}, ${a + 3}`).toEqual(whole);
    expect(parse([...wire].map((b) => Buffer.from([b])))).toEqual(whole);
  });
});
