import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileRoutes } from '../../src/bridge/routes/index.js';
import type { InboundMessage } from '../../src/mqtt/types.js';
import { DataType as T, encodePayload, metric } from '../harness/sparkplug.js';

/** docs/routes.md shows a Sparkplug record: it must be exactly what the bridge writes. */

const msg = (topic: string, payload: Buffer): InboundMessage => ({ seq: 1, id: 't:1', topic, payload, qos: 1, retain: false, dup: false, receivedAtMs: 0 });

describe('sparkplug: the record format in docs/routes.md', () => {
  it('the example record is what the bridge writes for that DDATA', () => {
    const doc = readFileSync(new URL('../../docs/routes.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('### `format: sparkplug`'));
    const example = JSON.parse(/```json\n([\s\S]*?)```/.exec(section)![1]!) as unknown;
    const t = compileRoutes({ routes: [{ name: 'spb', match: 'spBv1.0/#', topic: 'sparkplug', format: 'sparkplug' }] }, 'inline', { separator: '_', maxMessageBytes: 1_000_000 });
    t.apply(msg('spBv1.0/plant1/DBIRTH/edge7/press1', encodePayload({ seq: '41', metrics: [metric({ name: 'Inputs/Pressure', alias: 3, datatype: T.Double }, 0), metric({ name: 'Counters/total', alias: 4, datatype: T.UInt64 }, 0)] })));
    const data = encodePayload({
      timestamp: '1718906646000',
      seq: '42',
      metrics: [
        { alias: '3', timestamp: '1718906645999', double_value: 187.25, properties: { keys: ['engUnit'], values: [{ type: T.String, string_value: 'bar' }] } },
        { alias: '4', timestamp: '1718906645999', long_value: '18446744073709551615' },
      ],
    });
    const r = t.apply(msg('spBv1.0/plant1/DDATA/edge7/press1', data));
    if (r.kind !== 'record') throw new Error(JSON.stringify(r));
    expect(JSON.parse(r.value.toString())).toEqual(example);
    expect(r.key).toBe('plant1/edge7/press1');
    expect(r.headers).toEqual({ 'sparkplug.message_type': 'DDATA', 'sparkplug.group': 'plant1', 'sparkplug.edge_node': 'edge7', 'sparkplug.device': 'press1' });
  });
});
