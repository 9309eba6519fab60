import { takeSnapshot, type Dependencies, type Snapshot } from '../advertisement/depends-on.js';
import { SnapshotStore } from '../advertisement/snapshot-store.js';
import type { CgiHead } from '../request/cgi-headers.js';
import type { BodyTap } from '../request/backend-output.js';

/**
 * Answers to fetches (`POST .../git-upload-pack`) kept while nothing they depend on changed,
 * and identical fetches in flight served by one run of git. For a fleet that fetches the same
 * new commits with the same haves, git runs once instead of once per client.
 *
 * An entry is the exact head and bytes git http-backend gave for one request body, in one
 * repository and one environment (fetch-key.ts), with a snapshot of everything git reads for
 * it (fetch-key.ts: the ref advertisement's list, depends-on.ts, plus the loose objects' and
 * object info directories) taken *before* git ran. It is served only while every one of those
 * still stats the same, by the rules of the ref advertisement cache (advertisement/cache.ts):
 * local filesystems, no racy timestamps.
 *
 * Only a complete answer is kept: status 200, git exited 0, every byte sent. What git sent is
 * what a later identical request gets; git's own answer to it could differ only where git
 * itself is not deterministic (progress timing, threaded delta search), as two runs of git do.
 */
export interface FetchAnswer {
  readonly head: CgiHead;
  readonly body: Buffer;
}

/** Per entry, beyond what is counted: the Map slot, the objects, their headers. */
const ENTRY_OVERHEAD_BYTES = 512;

function costOf(key: string, snapshot: Snapshot, answer: FetchAnswer): number {
  let strings = key.length;
  for (const path of snapshot.paths) strings += path.length;
  for (const [name, value] of answer.head.headers) strings += name.length + value.length;
  return answer.body.length + snapshot.stats.byteLength + 2 * strings + ENTRY_OVERHEAD_BYTES;
}

/** What the status page shows of the cache itself (the hits are counted per request, in ServerStats). */
export interface FetchCacheFigures {
  readonly entries: number;
  readonly bytes: number;
}

/**
 * The answers, least recently used first out, within a byte budget (an entry may take a
 * quarter of it at most), and the runs in flight by key.
 */
export class FetchResponseCache {
  private readonly kept: SnapshotStore<FetchAnswer>;
  /** Runs in flight: each resolves with whether it stored its answer. */
  private readonly running = new Map<string, Promise<boolean>>();

  constructor(readonly maxBytes: number) {
    this.kept = new SnapshotStore(maxBytes);
  }

  get maxEntryBytes(): number {
    return this.kept.maxEntryBytes;
  }

  /** The answer for `key` if nothing it depends on changed since; else null (and it is dropped). */
  lookup(key: string): FetchAnswer | null {
    return this.kept.lookup(key);
  }

  /** An identical fetch being run by git now: resolves with whether its answer was kept. */
  inFlight(key: string): Promise<boolean> | undefined {
    return this.running.get(key);
  }

  /**
   * A run of git for `key`, announced to identical requests. Call `start()` right before git
   * runs (the snapshot), `tap` with every body byte, and `finish()` once, whatever happened.
   */
  capture(key: string, repoDir: string, dependsOn: Dependencies): FetchCapture {
    let settle: (stored: boolean) => void = () => {};
    const done = new Promise<boolean>((resolve) => {
      settle = resolve;
    });
    this.running.set(key, done);
    return new FetchCapture(this, key, repoDir, dependsOn, (stored) => {
      if (this.running.get(key) === done) this.running.delete(key);
      settle(stored); // a promise resolves once: later calls do nothing
    });
  }

  /** @internal FetchCapture's: keeps an answer, evicting the least recently used beyond the budget. */
  store(key: string, snapshot: Snapshot, answer: FetchAnswer): boolean {
    return this.kept.store(key, snapshot, answer, costOf(key, snapshot, answer));
  }

  clear(): void {
    this.kept.clear();
  }

  figures(): FetchCacheFigures {
    return { entries: this.kept.size, bytes: this.kept.storedBytes };
  }
}

/** One run of git whose answer may be kept. */
export class FetchCapture {
  private snapshot: Snapshot | null = null;
  private chunks: Buffer[] = [];
  private length = 0;
  private finished = false;

  constructor(
    private readonly cache: FetchResponseCache,
    private readonly key: string,
    private readonly repoDir: string,
    private readonly dependsOn: Dependencies,
    private readonly settle: (stored: boolean) => void,
  ) {}

  /** Right before git runs: the snapshot; false when what git says cannot be kept. */
  start(): boolean {
    this.snapshot = takeSnapshot(this.dependsOn, this.repoDir);
    return this.snapshot !== null;
  }

  /** Sees every body byte sent (they may be reused after the call). */
  readonly tap: BodyTap = (bytes) => {
    if (this.snapshot === null) return false;
    this.length += bytes.length;
    if (this.length > this.cache.maxEntryBytes) {
      this.snapshot = null; // too large to keep: stop copying
      this.chunks = [];
      // Identical requests waiting for this answer run git themselves now, not once it ends:
      // their packs come from the pack cache, shared as it is written.
      this.settle(false);
      return false;
    }
    this.chunks.push(Buffer.from(bytes));
    return true;
  };

  /**
   * After the run (idempotent): keeps the answer when `head` is git's 200 and it was complete,
   * and wakes the identical requests that waited.
   */
  finish(head: CgiHead | null, complete: boolean): void {
    if (this.finished) return;
    this.finished = true;
    let stored = false;
    // (`settle` may have run already, when the answer grew too large; it resolves once.)
    if (complete && head !== null && head.status === 200 && this.snapshot !== null) {
      const answer = {
        head: { status: head.status, headers: head.headers, rest: Buffer.alloc(0) },
        body: Buffer.concat(this.chunks, this.length),
      };
      stored = this.cache.store(this.key, this.snapshot, answer);
    }
    this.snapshot = null;
    this.chunks = [];
    this.settle(stored);
  }
}
