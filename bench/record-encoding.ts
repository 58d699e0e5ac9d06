/**
 * `npx tsx bench/record-encoding.ts`: CPU per record of the Kafka record encoding, the library's
 * own per-record path (createRecord: a Writer, a DynamicBuffer and a Buffer per integer) against
 * the patched batch encoder (patches/@platformatic+kafka+*.patch: one Buffer per batch), with the
 * bridge's headers and 200-byte values, 500 records per batch. No brokers.
 */
import { createRecord, encodeRecordsFast, type MessageRecord } from '@platformatic/kafka';

const BATCHES = Number(process.env.ENC_BATCHES ?? 400);
const PER = 500;
const value = Buffer.alloc(200, 32);
const headers = (i: number) =>
  new Map<Buffer, Buffer>([
    [Buffer.from('mqtt.topic'), Buffer.from(`bench/badge/${i % 500}/hb`)],
    [Buffer.from('mqtt.qos'), Buffer.from('1')],
    [Buffer.from('mqtt.retain'), Buffer.from('false')],
    [Buffer.from('mqtt.dup'), Buffer.from('false')],
    [Buffer.from('mqtt.message_id'), Buffer.from(`0123456789abcdef${i}`)],
    [Buffer.from('mqtt.received_at'), Buffer.from(String(Date.now()))],
  ]);
const now = BigInt(Date.now());
const batches = Array.from({ length: BATCHES }, () => Array.from({ length: PER }, (_, i) => ({ topic: 't', key: Buffer.from(`badge-${i}`), value, headers: headers(i), timestamp: now + BigInt(i) }) as MessageRecord));

const perRecord = (ms: MessageRecord[]) => Buffer.concat(ms.flatMap((m, i) => createRecord(m, i, now).buffers));
const batch = (ms: MessageRecord[]) => encodeRecordsFast(ms, now)!;

function measure(name: string, f: (ms: MessageRecord[]) => Buffer): number {
  for (let b = 0; b < 50; b++) f(batches[b]!);
  const c0 = process.cpuUsage();
  for (const ms of batches) f(ms);
  const c = process.cpuUsage(c0);
  const us = (c.user + c.system) / (BATCHES * PER);
  process.stdout.write(`${name.padEnd(44)} ${us.toFixed(2)} µs per record\n`);
  return us;
}

if (!batch(batches[0]!).equals(perRecord(batches[0]!))) throw new Error('the two encoders disagree');
for (let round = 1; round <= 2; round++) {
  const a = measure(`round ${round}: per record (library's createRecord)`, perRecord);
  const b = measure(`round ${round}: one buffer per batch (patched)`, batch);
  process.stdout.write(`round ${round}: ratio ${(b / a).toFixed(2)}\n`);
}
