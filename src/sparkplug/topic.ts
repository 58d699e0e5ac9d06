/**
 * Sparkplug B topics (specification 3.0, chapter 4):
 *
 *     spBv1.0/<group_id>/<NBIRTH|NDEATH|NDATA|NCMD>/<edge_node_id>
 *     spBv1.0/<group_id>/<DBIRTH|DDEATH|DDATA|DCMD>/<edge_node_id>/<device_id>
 *     spBv1.0/STATE/<sparkplug_host_id>                      (JSON, from host applications)
 */

/** The Sparkplug B topic namespace (first topic level). */
export const NAMESPACE = 'spBv1.0';

export type NodeMessageType = 'NBIRTH' | 'NDEATH' | 'NDATA' | 'NCMD';
export type DeviceMessageType = 'DBIRTH' | 'DDEATH' | 'DDATA' | 'DCMD';
/** Every message type; a bounded set, used as a metric label. */
export type MessageType = NodeMessageType | DeviceMessageType | 'STATE';
export const MESSAGE_TYPES: readonly MessageType[] = ['NBIRTH', 'NDEATH', 'NDATA', 'NCMD', 'DBIRTH', 'DDEATH', 'DDATA', 'DCMD', 'STATE'];

const NODE_TYPES = new Set<string>(['NBIRTH', 'NDEATH', 'NDATA', 'NCMD']);
const DEVICE_TYPES = new Set<string>(['DBIRTH', 'DDEATH', 'DDATA', 'DCMD']);

/** A parsed edge node or device topic. */
export interface EdgeTopic {
  readonly kind: 'edge';
  readonly group: string;
  readonly type: NodeMessageType | DeviceMessageType;
  readonly edgeNode: string;
  /** null for node-level messages (N*). */
  readonly device: string | null;
}

/** A parsed STATE topic. */
export interface StateTopic {
  readonly kind: 'state';
  readonly type: 'STATE';
  readonly hostId: string;
}

/** Parses a Sparkplug B topic; returns a short reason (no topic content) when it is not one. */
export function parseSparkplugTopic(topic: string): EdgeTopic | StateTopic | string {
  const levels = topic.split('/');
  if (levels[0] !== NAMESPACE) return `topic does not start with ${NAMESPACE}/`;
  if (levels[1] === 'STATE') {
    if (levels.length !== 3 || (levels[2] as string).length === 0) return 'STATE topic must be spBv1.0/STATE/<host_id>';
    return { kind: 'state', type: 'STATE', hostId: levels[2] as string };
  }
  const [, group, type, edgeNode, device] = levels as [string, string | undefined, string | undefined, string | undefined, string | undefined];
  if (type === undefined || !(NODE_TYPES.has(type) || DEVICE_TYPES.has(type))) {
    return 'third topic level is not a Sparkplug message type (NBIRTH, NDEATH, NDATA, NCMD, DBIRTH, DDEATH, DDATA, DCMD)';
  }
  const isDevice = DEVICE_TYPES.has(type);
  if (levels.length !== (isDevice ? 5 : 4)) return `${type} topic must have ${isDevice ? 5 : 4} levels`;
  if (!group || !edgeNode || (isDevice && !device)) return `${type} topic has an empty group, edge node or device id`;
  return { kind: 'edge', group, type: type as EdgeTopic['type'], edgeNode, device: isDevice ? (device as string) : null };
}
