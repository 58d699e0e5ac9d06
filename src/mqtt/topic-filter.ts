/**
 * MQTT topic filter matching (MQTT 5 §4.7), on levels split at '/': '+' matches one level, '#'
 * the rest including the parent level, and a filter starting with a wildcard never matches a
 * topic starting with '$'. `inner` may be a topic name or itself a filter: true when every topic
 * `inner` matches, `outer` matches too.
 */
export function levelsCover(outer: readonly string[], inner: readonly string[]): boolean {
  // First-level wildcards never match '$' topics, so they cannot cover a '$' literal.
  if ((outer[0] === '+' || outer[0] === '#') && (inner[0] ?? '').startsWith('$')) return false;
  for (let i = 0; i < outer.length; i++) {
    const ol = outer[i] as string;
    if (ol === '#') return true;
    const nl = inner[i];
    if (nl === undefined) return false;
    if (nl === '#') return false;
    if (ol === '+') continue;
    if (nl === '+' || ol !== nl) return false;
  }
  return outer.length === inner.length;
}
