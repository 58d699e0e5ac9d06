// A scriptable MQTT broker on a loopback port, for unit tests of the MQTT source against the
// real MQTT.js client (not a test file: vitest only collects *.test.ts). It speaks enough MQTT
// 3.1.1/5 for the bridge: CONNECT/CONNACK with persistent sessions (subscriptions kept per client
// id), SUBSCRIBE, UNSUBSCRIBE, PINGREQ, PUBACK, DISCONNECT, and PUBLISH sent when a test says so.
// Every packet it reads is logged in arrival order, so tests can assert what the client wrote
// and in which order (PUBACKs before DISCONNECT, PINGREQ cadence).

import net from 'node:net';
import { createRequire } from 'node:module';
import type { Packet } from 'mqtt-packet';

const require = createRequire(import.meta.url);
const mqttPacket = require('mqtt-packet') as {
  parser(opts: { protocolVersion: number }): { on(ev: 'packet', f: (p: Packet) => void): void; on(ev: 'error', f: (e: Error) => void): void; parse(b: Buffer): number };
  generate(p: Record<string, unknown>, opts: { protocolVersion: number }): Buffer;
};

export interface Received {
  readonly conn: number;
  readonly atMs: number;
  readonly packet: Packet;
}

export class BrokerConnection {
  version = 4;
  clientId = '';
  private nextId = 1;
  constructor(
    readonly index: number,
    readonly socket: net.Socket,
  ) {}

  send(p: Record<string, unknown>): void {
    if (!this.socket.destroyed) this.socket.write(mqttPacket.generate(p, { protocolVersion: this.version }));
  }

  /** Sends a PUBLISH; returns its packet id (QoS 1). Several calls in one tick go out in one TCP segment. */
  publish(topic: string, payload: string | Buffer, qos: 0 | 1 = 1): number {
    const messageId = qos > 0 ? this.nextId++ : undefined;
    this.send({ cmd: 'publish', topic, payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload), qos, dup: false, retain: false, ...(messageId ? { messageId } : {}) });
    return messageId ?? 0;
  }
}

export class FakeBroker {
  readonly received: Received[] = [];
  readonly conns: BrokerConnection[] = [];
  /** Subscriptions of each persistent session (client id → filter → qos). */
  readonly sessions = new Map<string, Map<string, number>>();
  /** When false, PINGREQs go unanswered (a broker that stopped responding). */
  answerPings = true;
  /** Filters whose UNSUBSCRIBE the broker refuses (MQTT 5 reason code 0x87, not authorized); they stay subscribed. */
  readonly refuseUnsubscribe = new Set<string>();
  /** Called for each CONNECT after the CONNACK was written (to queue PUBLISHes right behind it, as a broker with a session does). */
  onConnect: ((c: BrokerConnection) => void) | undefined;
  private server: net.Server | undefined;
  port = 0;

  static async start(): Promise<FakeBroker> {
    const b = new FakeBroker();
    b.server = net.createServer((s) => b.accept(s));
    await new Promise<void>((r) => b.server!.listen(0, '127.0.0.1', () => r()));
    b.port = (b.server.address() as net.AddressInfo).port;
    return b;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** The latest connection. */
  get conn(): BrokerConnection {
    const c = this.conns[this.conns.length - 1];
    if (!c) throw new Error('no client connected');
    return c;
  }

  /** Received packets of one kind (optionally on one connection). */
  packets(cmd: string, conn?: number): Packet[] {
    return this.received.filter((r) => r.packet.cmd === cmd && (conn === undefined || r.conn === conn)).map((r) => r.packet);
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const conn = new BrokerConnection(this.conns.length, socket);
    this.conns.push(conn);
    let parser = mqttPacket.parser({ protocolVersion: 5 });
    let pendingVersion: number | undefined;
    const wire = (): void => {
      parser.on('packet', (p) => this.handle(conn, p, (v) => (pendingVersion = v)));
      parser.on('error', () => socket.destroy());
    };
    wire();
    socket.on('data', (buf: Buffer) => {
      parser.parse(buf);
      if (pendingVersion !== undefined) {
        // CONNECT told us the version; later packets of this connection parse with it.
        conn.version = pendingVersion;
        pendingVersion = undefined;
        parser = mqttPacket.parser({ protocolVersion: conn.version });
        wire();
      }
    });
    socket.on('error', () => undefined);
  }

  private handle(conn: BrokerConnection, p: Packet, setVersion: (v: number) => void): void {
    this.received.push({ conn: conn.index, atMs: Date.now(), packet: p });
    switch (p.cmd) {
      case 'connect': {
        conn.version = p.protocolVersion ?? 4;
        conn.clientId = p.clientId;
        setVersion(conn.version);
        const present = !p.clean && this.sessions.has(p.clientId);
        if (!present || p.clean) this.sessions.set(p.clientId, new Map());
        conn.send(conn.version === 5 ? { cmd: 'connack', sessionPresent: present, reasonCode: 0 } : { cmd: 'connack', sessionPresent: present, returnCode: 0 });
        this.onConnect?.(conn);
        break;
      }
      case 'subscribe': {
        const subs = this.sessions.get(conn.clientId)!;
        for (const s of p.subscriptions) subs.set(s.topic, s.qos);
        conn.send({ cmd: 'suback', messageId: p.messageId, granted: p.subscriptions.map((s) => s.qos) });
        break;
      }
      case 'unsubscribe': {
        const subs = this.sessions.get(conn.clientId)!;
        const codes = p.unsubscriptions.map((t) => (this.refuseUnsubscribe.has(t) ? 0x87 : subs.delete(t) ? 0 : 0x11));
        conn.send(conn.version === 5 ? { cmd: 'unsuback', messageId: p.messageId, granted: codes } : { cmd: 'unsuback', messageId: p.messageId });
        break;
      }
      case 'pingreq':
        if (this.answerPings) conn.send({ cmd: 'pingresp' });
        break;
      case 'disconnect':
        conn.socket.end();
        break;
      default:
        break;
    }
  }
}
