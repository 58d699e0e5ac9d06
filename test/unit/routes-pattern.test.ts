import { describe, expect, it } from 'vitest';
import { compileRoutes } from '../../src/bridge/routes/index.js';
import { filterCovers, subscriptionsFor } from '../../src/bridge/routes/pattern.js';
import type { InboundMessage } from '../../src/mqtt/types.js';

const opts = { separator: '_', maxMessageBytes: 1_000_000 } as const;
const msg = (topic: string, payload = 'x'): InboundMessage => ({
  seq: 1, id: 'inst-1', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false, receivedAtMs: 0,
});

/** Which rule (by name) a topic lands on, or the unmatched action's result kind. */
function routeOf(matches: string[], topic: string): string {
  const t = compileRoutes(
    { unmatched: 'skip', routes: matches.map((m, i) => ({ name: `r${i}`, match: m, topic: 'out', key: null })) },
    'inline',
    opts,
  );
  return t.apply(msg(topic)).route;
}

describe('match patterns', () => {
  it.each([
    ['a/b', 'a/b', true],
    ['a/b', 'a/b/c', false],
    ['a/b', 'a', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/', true], // '+' matches an empty level, as in MQTT
    ['a/+', 'a/b/c', false],
    ['a/{x}', 'a/b', true],
    ['a/#', 'a', true], // '#' includes the parent level (MQTT 4.7.1.2)
    ['a/#', 'a/b/c/d', true],
    ['a/#', 'ab', false],
    ['#', 'anything/at/all', true],
    ['#', '/', true],
    ['#', '$SYS/broker/uptime', false], // wildcards at level 1 never match '$' topics
    ['+/x', '$SYS/x', false],
    ['{x}/y', '$SYS/y', false],
    ['$SYS/#', '$SYS/broker', true],
    ['/a', '/a', true],
    ['a//b', 'a//b', true],
    ['a/+/b', 'a//b', true],
    ['A/b', 'a/b', false], // case-sensitive
  ])('%s ~ %s -> %s', (pattern, topic, expected) => {
    expect(routeOf([pattern], topic) === 'r0').toBe(expected);
  });

  it('first matching rule wins', () => {
    expect(routeOf(['a/b', 'a/+', '#'], 'a/b')).toBe('r0');
    expect(routeOf(['a/b', 'a/+', '#'], 'a/c')).toBe('r1');
    expect(routeOf(['a/b', 'a/+', '#'], 'z')).toBe('r2');
    expect(routeOf(['#', 'a/b'], 'a/b')).toBe('r0');
  });

  it('captures named levels for templates', () => {
    const t = compileRoutes(
      { routes: [{ match: 'site/{site}/+/{tag}/#', topic: 'out-{site}-{tag}', key: '{tag}@{site}' }] },
      'inline',
      opts,
    );
    const r = t.apply(msg('site/s1/skip/t9/more/levels'));
    expect(r).toMatchObject({ kind: 'record', topic: 'out-s1-t9', key: 't9@s1' });
  });
});

describe('subscriptions', () => {
  it('replaces {name} with + and deduplicates', () => {
    const t = compileRoutes(
      {
        routes: [
          { name: 'a', match: 'x/{id}/create' },
          { name: 'b', match: 'x/+/create' },
          { name: 'c', match: 'y/{id}' },
        ],
      },
      'inline',
      opts,
    );
    expect(t.subscriptions).toEqual(['x/+/create', 'y/+']);
  });

  it('drops filters another filter covers (brokers may deliver one copy per subscription)', () => {
    expect(subscriptionsFor(['a/+/b', 'a/#', 'c/d', 'c/+'])).toEqual(['a/#', 'c/+']);
    expect(subscriptionsFor(['#', '$SYS/#'])).toEqual(['#', '$SYS/#']);
    expect(subscriptionsFor(['a/b', 'a/b'])).toEqual(['a/b']);
  });

  it.each([
    ['#', 'a/b', true],
    ['a/#', 'a', true],
    ['a/#', 'a/#', true],
    ['a/+', 'a/#', false],
    ['+/+', 'a/b', true],
    ['+/+', 'a/b/c', false],
    ['a/b', 'a/+', false],
    ['+', '$SYS', false],
    ['#', '$SYS/x', false],
  ])('filterCovers(%s, %s) = %s', (outer, inner, expected) => {
    expect(filterCovers(outer, inner)).toBe(expected);
  });
});
