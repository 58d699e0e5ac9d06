/** The oldest Node this project runs on: Node 24 LTS (@platformatic/kafka needs 24.6 or later). */
export const MIN_NODE = { major: 24, minor: 6 } as const;

/**
 * One line saying why `version` (a `process.versions.node` string) cannot run the bridge, or
 * undefined when it can. Checked before any dependency loads: an older Node would otherwise
 * fail somewhere inside a library with a stack trace.
 */
export function unsupportedNode(version: string): string | undefined {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major > MIN_NODE.major || (major === MIN_NODE.major && minor >= MIN_NODE.minor)) return undefined;
  return (
    `Node ${version} is not supported: mqtt-kafka-spool needs Node ${MIN_NODE.major} LTS (${MIN_NODE.major}.${MIN_NODE.minor} or later). ` +
    `In a checkout, 'npm install' installs it and 'npm start' uses it; the container image ships it.`
  );
}
