import { unchanged, type Snapshot } from './depends-on.js';

interface Kept<V> {
  readonly value: V;
  readonly snapshot: Snapshot;
  /** What the entry counts against the budget (the caller's reckoning). */
  readonly cost: number;
}

/**
 * Values kept while everything they depend on still stats as their snapshot recorded
 * (depends-on.ts): least recently used first out within a byte budget, an entry taking a
 * quarter of it at most. The ref advertisement cache and the fetch cache are each one of these.
 */
export class SnapshotStore<V> {
  private readonly entries = new Map<string, Kept<V>>();
  private bytes = 0;

  constructor(readonly maxBytes: number) {}

  get maxEntryBytes(): number {
    return Math.floor(this.maxBytes / 4);
  }

  /** The value for `key` if nothing it depends on changed since; else null (and it is dropped). */
  lookup(key: string): V | null {
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    this.entries.delete(key);
    if (!unchanged(entry.snapshot)) {
      this.bytes -= entry.cost;
      return null;
    }
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Keeps `value`, evicting the least recently used beyond the budget; false when it is too large to keep. */
  store(key: string, snapshot: Snapshot, value: V, cost: number): boolean {
    if (cost > this.maxEntryBytes) return false;
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.bytes -= old.cost;
    }
    this.entries.set(key, { value, snapshot, cost });
    this.bytes += cost;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= entry.cost;
    }
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  get size(): number {
    return this.entries.size;
  }

  get storedBytes(): number {
    return this.bytes;
  }
}
