#!/usr/bin/env node
import { unsupportedNode } from './node-version.js';

// The Node check runs before the bridge and its dependencies are loaded (a dynamic import, not a
// static one): on an unsupported Node the user gets one line and exit code 1, not a stack trace.
const problem = unsupportedNode(process.versions.node);
if (problem) {
  process.stderr.write(`mqtt-kafka-spool: ${problem}\n`);
  process.exit(1);
}
if (process.argv[2] === 'drain-on-stop') {
  const { config: loadDotenv } = await import('dotenv');
  loadDotenv({ quiet: true });
  const { drainOnStopCommand } = await import('./drain/cli.js');
  process.exit(drainOnStopCommand(process.argv.slice(3)));
}
await import('./start.js');
