import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { kafkaLibsDir } from './kafka.js';
import { repoRoot } from './process.js';

/** What the Java producer reports when it is done. */
export interface JavaProducerResult {
  readonly sent: number;
  readonly acked: number;
  readonly failed: number;
  readonly firstError: string;
}

export interface JavaProducerOptions {
  readonly bootstrap: string;
  readonly topic: string;
  readonly badges: number;
  readonly perBadge: number;
  readonly ratePerS: number;
  /** Its stdout and stderr go to this file. */
  readonly logFile: string;
}

/**
 * Runs test/java/IdempotentProducer.java (the Java producer, enable.idempotence=true, acks=all,
 * kafka-clients from the Kafka libs the harness installed) as a single source file: `java`
 * compiles it in memory, so nothing is built on a fresh clone. Resolves with its summary line.
 */
export function runJavaProducer(opts: JavaProducerOptions): Promise<JavaProducerResult> {
  const libs = kafkaLibsDir();
  if (!fs.existsSync(libs) || !fs.readdirSync(libs).some((f) => f.startsWith('kafka-clients-'))) {
    throw new Error(`kafka-clients not found in ${libs} (scripts/install-brokers.sh installs it)`);
  }
  const source = path.join(repoRoot, 'test', 'java', 'IdempotentProducer.java');
  const out = fs.openSync(opts.logFile, 'a');
  const child = spawn(
    'java',
    ['-Xmx128m', '-XX:+UseSerialGC', '-XX:-UsePerfData', `-Dlog4j2.configurationFile=${path.join(repoRoot, 'scripts', 'kafka', 'log4j2.properties')}`, '-cp', `${libs}/*`, source, opts.bootstrap, opts.topic, String(opts.badges), String(opts.perBadge), String(opts.ratePerS)],
    { stdio: ['ignore', 'pipe', out] },
  );
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    fs.writeSync(out, d);
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => {
      fs.closeSync(out);
      const line = stdout.split('\n').find((l) => l.startsWith('{'));
      if (code !== 0 || !line) {
        reject(new Error(`Java producer exited with ${code}; see ${opts.logFile}`));
        return;
      }
      resolve(JSON.parse(line) as JavaProducerResult);
    });
  });
}
