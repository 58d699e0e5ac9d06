/**
 * 32-bit FNV-1a over the UTF-16 code units of `s`. Picks the writer worker for a key
 * (hash % KAFKA_WORKERS), so one key is always served by one worker. Not Kafka's partitioner:
 * partitions are chosen by the Kafka client (murmur2, Java compatible).
 */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The worker index for a key hash. */
export function workerFor(keyHash: number, workers: number): number {
  return keyHash % workers;
}
