import { describe, expect, it } from 'vitest';
import { settingsFrom } from '../../bench/lib/settings.js';

describe('bench settings (BENCH_BRIDGE_ENV, MEM_BRIDGE_ENV, REPLAY_BRIDGE_ENV)', () => {
  it('splits space-separated K=V pairs, keeps "=" inside values, ignores tokens without "="', () => {
    expect(settingsFrom('KAFKA_WORKERS=2  NODE_OPTIONS=--x=1 stray')).toEqual({ KAFKA_WORKERS: '2', NODE_OPTIONS: '--x=1' });
    expect(settingsFrom(undefined)).toEqual({});
    expect(settingsFrom('')).toEqual({});
  });
});
