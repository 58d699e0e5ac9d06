import type { StateStore } from './types.js';

/** A StateStore in memory: the Sparkplug decoder's until the bridge attaches the spool's, and the fakes' in unit tests. */
export class MemoryState implements StateStore {
  private readonly map = new Map<string, string>();
  get(key: string): string | undefined {
    return this.map.get(key);
  }
  set(key: string, value: string): void {
    this.map.set(key, value);
  }
  delete(key: string): void {
    this.map.delete(key);
  }
  list(prefix: string): [string, string][] {
    return [...this.map].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
}
