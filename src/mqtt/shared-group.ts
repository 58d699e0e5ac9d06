/**
 * Shared subscriptions (MQTT 5 §4.8.2; Mosquitto also offers them to 3.1.1 clients). With
 * MQTT_SHARED_GROUP set, every filter is subscribed as `$share/<group>/<filter>`: the broker
 * hands each message to one member of the group instead of to every subscriber, so replicas
 * split the stream. Client ids and spools stay per replica; a member's unacknowledged messages
 * wait for that member's session (they are not handed to another member).
 *
 * Which member gets a message is the broker's choice: Mosquitto takes turns (round robin), so
 * two messages of one key may go to different replicas and reach Kafka out of order; EMQX's
 * `hash_topic` / `hash_clientid` strategies keep one topic on one member. docs/operations.md
 * has the measurements.
 */

export const SHARE_PREFIX = '$share/';

/** Why `group` cannot be a ShareName (it must not be empty nor contain '/', '+' or '#'), or undefined. */
export function sharedGroupProblem(group: string): string | undefined {
  if (group.length === 0) return 'is empty';
  if (/[/+#]/.test(group)) return "must not contain '/', '+' or '#' (MQTT 5 §4.8.2)";
  if (/\s/.test(group)) return 'must not contain white space';
  if (Buffer.byteLength(group) > 256) return 'is longer than 256 bytes';
  return undefined;
}

/** True for a filter already written as `$share/<group>/<filter>`. */
export function isSharedFilter(filter: string): boolean {
  return filter.startsWith(SHARE_PREFIX);
}

/**
 * The filters to subscribe to: unchanged without a group, else each as `$share/<group>/<filter>`.
 * A filter that is already shared is an error with a group (it would be shared twice); the
 * caller has checked that earlier for MQTT_TOPIC, this catches filters derived from routes.
 */
export function applySharedGroup(filters: readonly string[], group: string | undefined): string[] {
  if (group === undefined) return [...filters];
  const problem = sharedGroupProblem(group);
  if (problem) throw new Error(`MQTT_SHARED_GROUP '${group}' ${problem}`);
  return filters.map((f) => {
    if (isSharedFilter(f)) throw new Error(`topic filter '${f}' is already a shared subscription; with MQTT_SHARED_GROUP set, give plain filters`);
    return `${SHARE_PREFIX}${group}/${f}`;
  });
}
