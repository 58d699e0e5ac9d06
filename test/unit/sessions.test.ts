import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { assignSessions, decodeMemberInfo, encodeMemberInfo, type GroupMember, type MemberInfo } from '../../src/sessions/assignor.js';
import { sessionClientId } from '../../src/sessions/source.js';
import { configProblems } from './fakes.js';

const dir = mkdtempSync(join(tmpdir(), 'sessions-'));
const base = { MQTT_BROKER: 'localhost', MQTT_TOPIC: 'a/#', KAFKA_BROKER: 'kafka', SPOOL_PATH: join(dir, 'spool.db') };

const m = (memberId: string, owned: number[] = [], healthy = true): GroupMember => ({ memberId, info: { instance: memberId, owned, healthy, sessions: 0 } });
const plain = (r: Map<string, number[]>) => Object.fromEntries(r);

describe('session assignor', () => {
  it('keeps a session with its holder (sticky), also when a member joins', () => {
    expect(plain(assignSessions([m('b', [0]), m('a')], 1))).toEqual({ a: [], b: [0] });
  });

  it("hands a departed member's sessions to the least loaded live one", () => {
    // 'c' held 2 and 3 and is gone.
    expect(plain(assignSessions([m('a', [0]), m('b', [1])], 4))).toEqual({ a: [0, 2], b: [1, 3] });
  });

  it('moves sessions off an unhealthy holder when another member is healthy', () => {
    expect(plain(assignSessions([m('a', [0], false), m('b')], 1))).toEqual({ a: [], b: [0] });
  });

  it('leaves sessions where they are when no member is healthy (the broker is down for everyone)', () => {
    expect(plain(assignSessions([m('a', [0], false), m('b', [], false)], 1))).toEqual({ a: [0], b: [] });
    // And a session nobody holds still gets an owner.
    expect(plain(assignSessions([m('a', [], false), m('b', [], false)], 1))).toEqual({ a: [0], b: [] });
  });

  it('spreads sessions over healthy members, one move at a time, never more than one apart', () => {
    const r = assignSessions([m('a', [0, 1, 2, 3, 4, 5]), m('b'), m('c')], 6);
    expect([...r.values()].map((l) => l.length)).toEqual([2, 2, 2]);
    expect(r.get('a')).toEqual([0, 1]);
  });

  it('gives one session to one member when two claim it, and ignores unknown metadata', () => {
    const r = assignSessions([m('a', [0]), m('b', [0]), { memberId: 'x', info: undefined }], 1);
    expect(r.get('a')).toEqual([0]);
    expect([...r.values()].flat()).toEqual([0]);
  });

  it('round-trips member metadata and refuses what is not its own', () => {
    const info: MemberInfo = { instance: 'pod-1', owned: [2], healthy: false, sessions: 3 };
    expect(decodeMemberInfo(encodeMemberInfo(info))).toEqual(info);
    expect(decodeMemberInfo(Buffer.from('garbage'))).toBeUndefined();
    expect(decodeMemberInfo(Buffer.alloc(0))).toBeUndefined();
  });
});

describe('session group configuration', () => {
  it('is off without BRIDGE_GROUP (today: one replica, its own session)', () => {
    expect(loadConfig(base).sessions).toBeUndefined();
    expect(configProblems({ ...base, MQTT_SESSIONS: '2' })).toEqual([expect.stringContaining('only used with BRIDGE_GROUP')]);
  });

  it('defaults: the group name as client id, the host name as instance id, one session, 6 s / 1 s', () => {
    const c = loadConfig({ ...base, BRIDGE_GROUP: 'site-a' }, { hostname: () => 'pod-1' });
    expect(c.mqtt.clientId).toBe('site-a');
    expect(c.mqtt.sharedGroup).toBeUndefined();
    expect(c.sessions).toEqual({ group: 'site-a', instanceId: 'pod-1', count: 1, topic: 'mqtt-kafka-spool.sessions.site-a', sessionTimeoutMs: 6000, heartbeatMs: 1000, releaseMs: 20000 });
  });

  it('several sessions subscribe in a shared group named after the group unless MQTT_SHARED_GROUP is set', () => {
    expect(loadConfig({ ...base, BRIDGE_GROUP: 'g', MQTT_SESSIONS: '6' }).mqtt.sharedGroup).toBe('g');
    expect(loadConfig({ ...base, BRIDGE_GROUP: 'g', MQTT_SESSIONS: '6', MQTT_SHARED_GROUP: 'x' }).mqtt.sharedGroup).toBe('x');
    expect(sessionClientId('bridge', 1, 0)).toBe('bridge');
    expect(sessionClientId('bridge', 6, 5)).toBe('bridge-5');
  });

  it('refuses a per-host client id, a bad group name and a heartbeat too slow for the session timeout', () => {
    expect(configProblems({ ...base, BRIDGE_GROUP: 'g', MQTT_CLIENT_ID: 'bridge-%h' })).toEqual([expect.stringContaining('MQTT_CLIENT_ID: with BRIDGE_GROUP')]);
    expect(configProblems({ ...base, BRIDGE_GROUP: 'a/b' })).toEqual([expect.stringContaining('BRIDGE_GROUP')]);
    expect(configProblems({ ...base, BRIDGE_GROUP: 'g', BRIDGE_GROUP_HEARTBEAT_MS: '3000' })).toEqual([expect.stringContaining('BRIDGE_GROUP_HEARTBEAT_MS')]);
  });
});
