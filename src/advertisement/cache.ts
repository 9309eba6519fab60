import { takeSnapshot, type Dependencies, type Snapshot } from './depends-on.js';
import { SnapshotStore } from './snapshot-store.js';
import type { BodyTap } from '../request/backend-output.js';

/**
 * Ref advertisements (`info/refs?service=git-upload-pack`) kept while nothing they depend on
 * changed, so that a fleet polling for changes costs a few stat() calls a request instead of a
 * `git upload-pack`.
 *
 * An entry is the exact bytes git gave for one repository and one environment, with a
 * snapshot of the dependencies (depends-on.ts: the repository directory, HEAD, the ref
 * storage, the config files, the packs, the git binary...), taken *before* git ran. An entry
 * is served only while every one of those still has the same inode, size, mtime and ctime. git
 * replaces a ref by renaming a lock file over it (files) or replaces reftable/tables.list
 * (reftable): either changes an inode and a directory's mtime.
 *
 * Two things make a stat equal while the content changed, and neither is cached: a snapshot
 * taken within the filesystem's timestamp granularity of a change (racy-git: a second write
 * in the same tick keeps the mtime), and filesystems whose stat() may answer from an
 * attribute cache (NFS, CIFS, FUSE, cluster filesystems); only local ones are trusted.
 */

/**
 * Per-request variables that git upload-pack does not read: not part of an entry's key (nor of
 * the fetch cache's, fetch-cache/fetch-key.ts).
 */
export const PER_REQUEST_VARIABLES: ReadonlySet<string> = new Set([
  'REMOTE_ADDR',
  'REMOTE_PORT',
  'REMOTE_HOST',
  'REQUEST_URI',
  'SERVER_NAME',
  'SERVER_PORT',
  'SERVER_ADDR',
  'SERVER_PROTOCOL',
  'HTTPS',
  'GIT_FCGI_REQUEST_ID',
  'GIT_FCGI_PACK_TOKEN',
  'GIT_COMMITTER_NAME',
  'GIT_COMMITTER_EMAIL',
]);

/** Per entry, beyond what is counted: the Map slot, the objects, their headers. */
const ENTRY_OVERHEAD_BYTES = 256;

function costOf(key: string, snapshot: Snapshot, body: Buffer): number {
  let strings = key.length;
  for (const path of snapshot.paths) strings += path.length;
  // Strings as UTF-16 at worst.
  return body.length + snapshot.stats.byteLength + 2 * strings + ENTRY_OVERHEAD_BYTES;
}

/**
 * The key of an advertisement: the repository and the environment git ran in, without what
 * differs from one request to the next (addresses, request id, HTTP headers; the protocol
 * version is in GIT_PROTOCOL, a user's hidden refs in GIT_CONFIG_*).
 */
export function refCacheKey(scope: string, env: Readonly<Record<string, string>>): string {
  const names = Object.keys(env)
    .filter((name) => !PER_REQUEST_VARIABLES.has(name) && !name.startsWith('HTTP_'))
    .sort();
  let key = scope;
  for (const name of names) key += `\0${name}=${env[name] ?? ''}`;
  return key;
}

/**
 * The advertisements, least recently used first out, within a byte budget that counts each
 * entry's body, snapshot and key (an entry may take a quarter of it at most).
 */
export class RefAdvertisementCache {
  private readonly kept: SnapshotStore<Buffer>;
  hits = 0;

  constructor(readonly maxBytes: number) {
    this.kept = new SnapshotStore(maxBytes);
  }

  get maxEntryBytes(): number {
    return this.kept.maxEntryBytes;
  }

  /** The advertisement for `key` if nothing it depends on changed since; else null (and it is dropped). */
  lookup(key: string): Buffer | null {
    const body = this.kept.lookup(key);
    if (body !== null) this.hits++;
    return body;
  }

  /** One request's use of the cache: a look-up, then maybe the run that fills it. */
  use(key: string, repoDir: string, dependsOn: Dependencies): CacheUse {
    return new CacheUse(this, key, repoDir, dependsOn);
  }

  store(key: string, snapshot: Snapshot, body: Buffer): void {
    this.kept.store(key, snapshot, body, costOf(key, snapshot, body));
  }

  clear(): void {
    this.kept.clear();
  }

  get size(): number {
    return this.kept.size;
  }

  get storedBytes(): number {
    return this.kept.storedBytes;
  }
}

/** A request's look-up, and the capture of git's output when it missed. */
export class CacheUse {
  private snapshot: Snapshot | null = null;
  private chunks: Buffer[] = [];
  private length = 0;

  constructor(
    private readonly cache: RefAdvertisementCache,
    readonly key: string,
    private readonly repoDir: string,
    private readonly dependsOn: Dependencies,
  ) {}

  lookup(): Buffer | null {
    return this.cache.lookup(this.key);
  }

  /**
   * Right before git runs: the snapshot, and a tap for the response body when what git says
   * may be kept (undefined when it may not).
   */
  start(): BodyTap | undefined {
    this.snapshot = takeSnapshot(this.dependsOn, this.repoDir);
    return this.snapshot === null ? undefined : this.tap;
  }

  private readonly tap: BodyTap = (bytes) => {
    if (this.snapshot === null) return false;
    this.length += bytes.length;
    if (this.length > this.cache.maxEntryBytes) {
      this.snapshot = null; // too large to keep: stop copying
      this.chunks = [];
      return false;
    }
    this.chunks.push(Buffer.from(bytes));
    return true;
  };

  /** After the run: keeps the body if git answered in full. */
  finish(complete: boolean): void {
    if (complete && this.snapshot !== null) {
      this.cache.store(this.key, this.snapshot, Buffer.concat(this.chunks, this.length));
    }
    this.snapshot = null;
    this.chunks = [];
  }
}
