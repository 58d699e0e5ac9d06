import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { applySharedGroup, sharedGroupProblem } from '../../src/mqtt/shared-group.js';
import { planSubscriptions, RemovedFilterMatcher } from '../../src/mqtt/subscriptions.js';
import { configProblems } from './fakes.js';

const dir = mkdtempSync(join(tmpdir(), 'share-'));
const base = { MQTT_BROKER: 'localhost', MQTT_TOPIC: 'a/#,b/+/c', KAFKA_BROKER: 'kafka', SPOOL_PATH: join(dir, 'spool.db') };

const problems = configProblems;

describe('MQTT_SHARED_GROUP', () => {
  it('is unset by default: plain subscriptions, as before', () => {
    const c = loadConfig(base);
    expect(c.mqtt.sharedGroup).toBeUndefined();
    expect(applySharedGroup(c.mqtt.topics, c.mqtt.sharedGroup)).toEqual(['a/#', 'b/+/c']);
  });

  it('prefixes every filter with $share/<group>/', () => {
    const c = loadConfig({ ...base, MQTT_SHARED_GROUP: 'prod-bridge' });
    expect(c.mqtt.sharedGroup).toBe('prod-bridge');
    expect(c.mqtt.topics).toEqual(['a/#', 'b/+/c']);
    expect(applySharedGroup(c.mqtt.topics, c.mqtt.sharedGroup)).toEqual(['$share/prod-bridge/a/#', '$share/prod-bridge/b/+/c']);
  });

  it.each(['a/b', 'a+', 'a#', 'a b'])("refuses the group name '%s' at start", (group) => {
    expect(sharedGroupProblem(group)).toBeDefined();
    expect(problems({ ...base, MQTT_SHARED_GROUP: group }).filter((p) => p.startsWith('MQTT_SHARED_GROUP:'))).toHaveLength(1);
  });

  it('refuses a filter that is already shared when a group is set (it would be shared twice)', () => {
    const p = problems({ ...base, MQTT_TOPIC: '$share/g/a/#,b/#', MQTT_SHARED_GROUP: 'x' });
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^MQTT_TOPIC: '\$share\/g\/a\/#' is already a shared subscription/);
    expect(() => applySharedGroup(['$share/g/a/#'], 'x')).toThrow(/already a shared subscription/);
  });

  it('still accepts a hand-written $share/ filter without a group (the old way)', () => {
    const c = loadConfig({ ...base, MQTT_TOPIC: '$share/g/a/#' });
    expect(applySharedGroup(c.mqtt.topics, c.mqtt.sharedGroup)).toEqual(['$share/g/a/#']);
  });

  it('switching a replica with a persistent session to shared mode unsubscribes the plain filter; what was queued under it is written as usual', () => {
    const shared = applySharedGroup(['a/#'], 'g');
    const plan = planSubscriptions({ filters: { 'a/#': 1 }, removed: [] }, shared, true);
    expect(plan.unsubscribe).toEqual(['a/#']);
    expect(plan.added).toEqual(['$share/g/a/#']);
    const matcher = new RemovedFilterMatcher(shared);
    matcher.set(plan.removed);
    // Its topics match the shared filter too: not a removed filter's message, no policy applies.
    expect(matcher.match('a/b/c')).toBeUndefined();
    // And back: the shared filter is unsubscribed.
    expect(planSubscriptions({ filters: { '$share/g/a/#': 1 }, removed: [] }, ['a/#'], true).unsubscribe).toEqual(['$share/g/a/#']);
  });
});
