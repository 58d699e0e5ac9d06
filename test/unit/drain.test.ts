import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { BridgeDrainResult } from '../../src/bridge/bridge.js';
import { loadConfig } from '../../src/config/load.js';
import { drainForScaleDown } from '../../src/drain/drain.js';
import { drainIntentPath, setDrainIntent } from '../../src/drain/intent.js';

const logger = pino({ level: 'silent' });

function setup(bridge: Partial<BridgeDrainResult>, opts: { rows?: number; endSessionFails?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'drain-'));
  const config = loadConfig({ MQTT_BROKER: 'localhost', MQTT_TOPIC: 'a/#', KAFKA_BROKER: 'kafka', SPOOL_PATH: join(dir, 'spool.db'), SHUTDOWN_TIMEOUT_MS: '30000' });
  setDrainIntent(config.spool.path);
  const calls: string[] = [];
  let deadline = 0;
  let closeBy = 0;
  const run = () =>
    drainForScaleDown({
      config,
      logger,
      drainBridge: async (o) => {
        calls.push('bridge');
        deadline = o.deadlineMs - Date.now();
        closeBy = o.closeByMs - Date.now();
        return { unsubscribed: true, quiet: true, spoolEmpty: true, unacked: 0, ...bridge };
      },
      endSession: async () => {
        calls.push('endSession');
        if (opts.endSessionFails) throw new Error('no CONNACK');
      },
      countSpoolRows: () => {
        calls.push('count');
        return opts.rows ?? 0;
      },
    });
  return { config, calls, run, deadline: () => deadline, closeBy: () => closeBy };
}

describe('drain for scale-down (outcome)', () => {
  it('complete: the bridge drained, then the session is ended, then the spool is checked on disk; the mark is removed', async () => {
    const s = setup({});
    const o = await s.run();
    expect(s.calls).toEqual(['bridge', 'endSession', 'count']);
    expect(o).toMatchObject({ complete: true, sessionEnded: true, spoolRows: 0 });
    expect(existsSync(drainIntentPath(s.config.spool.path))).toBe(false);
    // The bridge's phases end 10 s before SHUTDOWN_TIMEOUT_MS, leaving time for the close.
    expect(s.deadline()).toBeGreaterThan(19_000);
    expect(s.deadline()).toBeLessThanOrEqual(20_000);
    // The bridge's close must be over 7.5 s before the stop timer, leaving room to end the session.
    expect(s.closeBy()).toBeGreaterThan(21_500);
    expect(s.closeBy()).toBeLessThanOrEqual(22_500);
  });

  it('keeps the session when intake never went quiet (messages may still wait in it): incomplete, mark kept', async () => {
    const s = setup({ quiet: false });
    const o = await s.run();
    expect(s.calls).toEqual(['bridge', 'count']);
    expect(o).toMatchObject({ complete: false, sessionEnded: false });
    expect(existsSync(drainIntentPath(s.config.spool.path))).toBe(true);
  });

  it('keeps the session when the UNSUBSCRIBE failed (messages may still be routed to it)', async () => {
    const s = setup({ unsubscribed: false });
    expect(await s.run()).toMatchObject({ complete: false, sessionEnded: false });
    expect(s.calls).not.toContain('endSession');
  });

  it('keeps the session when PUBACKs were left held at the close', async () => {
    const s = setup({ unacked: 3 });
    expect(await s.run()).toMatchObject({ complete: false, sessionEnded: false });
    expect(s.calls).not.toContain('endSession');
  });

  it('is incomplete with records left in the spool (Kafka down), though the session is ended', async () => {
    const s = setup({ spoolEmpty: false }, { rows: 1234 });
    expect(await s.run()).toMatchObject({ complete: false, sessionEnded: true, spoolRows: 1234 });
    expect(existsSync(drainIntentPath(s.config.spool.path))).toBe(true);
  });

  it('is incomplete when the session could not be ended', async () => {
    const s = setup({}, { endSessionFails: true });
    expect(await s.run()).toMatchObject({ complete: false, sessionEnded: false, spoolRows: 0 });
  });
});
