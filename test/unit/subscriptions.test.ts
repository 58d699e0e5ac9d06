import { describe, expect, it } from 'vitest';
import { loadRemembered, planSubscriptions, RemovedFilterMatcher, saveRemembered, subscriptionsKey, topicMatches } from '../../src/mqtt/subscriptions.js';
import { MemoryState } from './fakes.js';

describe('topic filter matching (MQTT 5 §4.7)', () => {
  it.each([
    ['acc/a/#', 'acc/a/x', true],
    ['acc/a/#', 'acc/a', true], // '#' includes the parent level
    ['acc/a/#', 'acc/ab/x', false],
    ['acc/+/x', 'acc/a/x', true],
    ['acc/+/x', 'acc/a/y', false],
    ['acc/+', 'acc/a/x', false],
    ['+/+', 'acc/a', true],
    ['#', 'anything/at/all', true],
    ['#', '$SYS/broker/uptime', false], // wildcards at the start never match '$' topics
    ['+/broker/uptime', '$SYS/broker/uptime', false],
    ['$SYS/#', '$SYS/broker/uptime', true],
    ['$share/group/acc/a/#', 'acc/a/x', true], // a shared subscription's filter
    ['acc/a', 'acc/a', true],
    ['acc/a', 'acc/a/', false],
    ['acc//x', 'acc//x', true],
  ])('%s matches %s: %s', (filter, topic, want) => {
    expect(topicMatches(filter, topic)).toBe(want);
  });
});

describe('planSubscriptions', () => {
  it('with a present session unsubscribes remembered filters that are no longer configured', () => {
    const plan = planSubscriptions({ filters: { 'acc/a/#': 1, 'acc/c/#': 1 }, removed: [] }, ['acc/b/#', 'acc/c/#'], true);
    expect(plan).toEqual({ unsubscribe: ['acc/a/#'], added: ['acc/b/#'], removed: ['acc/a/#'] });
  });

  it('keeps earlier removals (their backlog may still arrive) unless configured again', () => {
    const plan = planSubscriptions({ filters: { 'acc/b/#': 1 }, removed: ['acc/a/#', 'old/#'] }, ['acc/b/#', 'old/#'], true);
    expect(plan).toEqual({ unsubscribe: [], added: ['old/#'], removed: ['acc/a/#'] });
  });

  it('without a session there is nothing to unsubscribe and no backlog to recognise', () => {
    expect(planSubscriptions({ filters: { 'acc/a/#': 1 }, removed: ['x/#'] }, ['acc/b/#'], false)).toEqual({ unsubscribe: [], added: ['acc/b/#'], removed: [] });
  });

  it('with nothing remembered unsubscribes nothing (it cannot know what an earlier run subscribed)', () => {
    expect(planSubscriptions(undefined, ['acc/b/#'], true)).toEqual({ unsubscribe: [], added: ['acc/b/#'], removed: [] });
  });
});

describe('RemovedFilterMatcher', () => {
  it('names the removed filter a topic came through, unless a configured filter matches it too', () => {
    const m = new RemovedFilterMatcher(['acc/b/#', 'acc/+/keep']);
    expect(m.active).toBe(false);
    expect(m.match('acc/a/x')).toBeUndefined();
    m.set(['acc/a/#']);
    expect(m.active).toBe(true);
    expect(m.match('acc/a/x')).toBe('acc/a/#');
    expect(m.match('acc/a/keep')).toBeUndefined();
    expect(m.match('acc/b/x')).toBeUndefined();
    expect(m.match('other')).toBeUndefined();
  });
});

describe('remembered subscriptions in the state store', () => {
  it('round-trips per client id, keeps at most 100 removed filters, and treats a corrupt value as nothing', () => {
    const s = new MemoryState();
    expect(loadRemembered(s, 'c1')).toBeUndefined();
    const removed = Array.from({ length: 120 }, (_, i) => `old/${i}/#`);
    saveRemembered(s, 'c1', { filters: { 'a/#': 1 }, removed });
    expect(loadRemembered(s, 'c1')).toEqual({ filters: { 'a/#': 1 }, removed: removed.slice(-100) });
    expect(loadRemembered(s, 'c2')).toBeUndefined();
    s.set(subscriptionsKey('c1'), '{not json');
    expect(loadRemembered(s, 'c1')).toBeUndefined();
  });
});
