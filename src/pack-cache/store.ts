/** One cached pack as the store accounts for it (the file itself is the generation's business). */
export interface StoreEntry {
  readonly key: string;
  /** Bytes on disk, as reserved. */
  bytes: number;
  /** Readers attached, the generation counting as one while it runs. */
  users: number;
  /** Whether the pack is complete (a finished generation). */
  complete: boolean;
  readonly createdMs: number;
  lastUsedMs: number;
  /** Whether a lookup can still find it (false once evicted, expired or given up). */
  indexed: boolean;
}

export interface StoreOptions {
  readonly budgetBytes: number;
  readonly maxAgeMs: number;
  /** Called once per entry when it leaves for good (its bytes freed): delete its file. */
  readonly onRemove: (entry: StoreEntry) => void;
}

/**
 * The cache's index and disk budget, without I/O: entries by key, least recently used first,
 * and the bytes they hold. An entry in use (being generated or read) is never removed; one
 * evicted or expired while in use only stops being found, and leaves when its last user does.
 */
export class PackStore {
  /** Insertion order is use order: a hit moves its entry to the end. */
  private readonly index = new Map<string, StoreEntry>();
  /** Every entry holding bytes, found or not. */
  private readonly held = new Set<StoreEntry>();
  private totalBytes = 0;

  constructor(private readonly options: StoreOptions) {}

  get bytes(): number {
    return this.totalBytes;
  }

  get entries(): number {
    return this.held.size;
  }

  /** A usable entry for the key (touched), or null. */
  lookup(key: string, nowMs: number): StoreEntry | null {
    const entry = this.index.get(key);
    if (entry === undefined) return null;
    if (this.expired(entry, nowMs)) {
      this.unindex(entry);
      return null;
    }
    entry.lastUsedMs = nowMs;
    this.index.delete(key);
    this.index.set(key, entry);
    return entry;
  }

  /** A new entry, in use by its generation; replaces nothing (look up first). */
  create(key: string, nowMs: number): StoreEntry {
    const entry: StoreEntry = {
      key,
      bytes: 0,
      users: 1,
      complete: false,
      createdMs: nowMs,
      lastUsedMs: nowMs,
      indexed: true,
    };
    const old = this.index.get(key);
    if (old !== undefined) this.unindex(old);
    this.index.set(key, entry);
    this.held.add(entry);
    return entry;
  }

  /**
   * Room for `bytes` more of `entry`: evicts unused entries, least recently used first, until
   * it fits the budget. False when it cannot fit (then nothing was evicted for it).
   */
  reserve(entry: StoreEntry, bytes: number, nowMs: number): boolean {
    const budget = this.options.budgetBytes;
    if (this.totalBytes + bytes > budget) {
      let freeable = 0;
      for (const other of this.held) if (other.users === 0 && other !== entry) freeable += other.bytes;
      if (this.totalBytes - freeable + bytes > budget) return false;
      this.sweep(nowMs);
      for (const other of [...this.index.values(), ...this.held]) {
        if (this.totalBytes + bytes <= budget) break;
        if (other.users === 0 && other !== entry && this.held.has(other)) this.remove(other);
      }
    }
    entry.bytes += bytes;
    this.totalBytes += bytes;
    return true;
  }

  /** A user (reader or generation) leaves; an entry no longer found leaves with its last user. */
  release(entry: StoreEntry, nowMs: number): void {
    entry.users--;
    entry.lastUsedMs = Math.max(entry.lastUsedMs, nowMs);
    if (entry.users <= 0 && (!entry.indexed || !entry.complete)) this.remove(entry);
  }

  /** Stops finding the entry (a failed or uncacheable generation); it leaves with its last user. */
  drop(entry: StoreEntry): void {
    this.unindex(entry);
    if (entry.users <= 0) this.remove(entry);
  }

  /** Removes every unused entry older than max_age. */
  sweep(nowMs: number): void {
    for (const entry of [...this.index.values()]) {
      if (this.expired(entry, nowMs)) this.unindex(entry);
    }
  }

  /** Every entry leaves (at stop). */
  clear(): void {
    for (const entry of [...this.held]) this.remove(entry);
  }

  private expired(entry: StoreEntry, nowMs: number): boolean {
    return nowMs - entry.createdMs >= this.options.maxAgeMs;
  }

  private unindex(entry: StoreEntry): void {
    if (this.index.get(entry.key) === entry) this.index.delete(entry.key);
    entry.indexed = false;
    if (entry.users <= 0) this.remove(entry);
  }

  private remove(entry: StoreEntry): void {
    if (this.index.get(entry.key) === entry) this.index.delete(entry.key);
    entry.indexed = false;
    if (!this.held.delete(entry)) return;
    this.totalBytes -= entry.bytes;
    this.options.onRemove(entry);
  }
}
