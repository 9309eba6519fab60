import { readdirSync, statSync, statfsSync } from 'node:fs';
import path from 'node:path';

/**
 * Ref advertisements (`info/refs?service=git-upload-pack`) kept while the repository's refs
 * stay as they were, so that a fleet polling for changes costs a few stat() calls a request
 * instead of a `git upload-pack`.
 *
 * An entry is the exact bytes git gave for one repository and one environment, with a
 * snapshot of everything that could change them, taken *before* git ran: HEAD, packed-refs,
 * every directory and loose ref under refs/, the config files, the object store's pack
 * directory and alternates, and the git binary. An entry is served only while every one of
 * those still has the same inode, size, mtime and ctime. git replaces a ref by renaming a
 * lock file over it, which changes the directory's mtime as well as the file's inode.
 *
 * Two things make a stat equal while the content changed, and neither is cached: a snapshot
 * taken within the filesystem's timestamp granularity of a change (racy-git: a second write
 * in the same tick keeps the mtime), and filesystems whose stat() may answer from an
 * attribute cache (NFS, CIFS, FUSE, cluster filesystems); only local ones are trusted.
 */

/** statfs f_type of filesystems whose stat() is always current (linux/magic.h). */
const LOCAL_FILESYSTEMS: ReadonlySet<number> = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x794c7630, // overlayfs
  0x2fc12fc1, // zfs
  0xf2f52010, // f2fs
  0x52654973, // reiserfs
  0x3153464a, // jfs
  0xca451a4e, // bcachefs
]);

/** In the repository: what git reads for a ref advertisement, besides refs/. */
const REPO_FILES = ['HEAD', 'packed-refs', 'config', 'shallow', 'objects/info/alternates', 'objects/pack'];

/** A repository with more loose refs than this is not cached: checking them would cost as much as git. */
export const MAX_WATCHED_PATHS = 256;

/**
 * A change younger than this may share its timestamp with the next one: on a filesystem with
 * nanosecond timestamps the kernel's clock tick (<= 10 ms) is what counts, on one with whole
 * seconds a second; both with room to spare.
 */
const RACY_MS_FINE = 100;
const RACY_MS_COARSE = 2000;

/** Per-request variables that git upload-pack does not read: not part of an entry's key. */
const PER_REQUEST = new Set([
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
  'GIT_COMMITTER_NAME',
  'GIT_COMMITTER_EMAIL',
]);

/** Where the files stood before git ran: paths, and 4 numbers each (inode, size, mtime, ctime). */
export interface RefSnapshot {
  readonly paths: readonly string[];
  readonly stats: Float64Array;
}

interface Entry {
  readonly snapshot: RefSnapshot;
  readonly body: Buffer;
  /** What the entry counts against the budget: the body, the snapshot, and the key. */
  readonly cost: number;
}

/** Per entry, beyond what is counted: the Map slot, the objects, their headers. */
const ENTRY_OVERHEAD_BYTES = 256;

function costOf(key: string, snapshot: RefSnapshot, body: Buffer): number {
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
export function refCacheKey(repoDir: string, env: Readonly<Record<string, string>>): string {
  const names = Object.keys(env)
    .filter((name) => !PER_REQUEST.has(name) && !name.startsWith('HTTP_'))
    .sort();
  let key = repoDir;
  for (const name of names) key += `\0${name}=${env[name] ?? ''}`;
  return key;
}

/** Whether stat() on this directory's filesystem is always current (see LOCAL_FILESYSTEMS). */
export function isLocalFilesystem(dir: string): boolean {
  try {
    return LOCAL_FILESYSTEMS.has(statfsSync(dir).type);
  } catch {
    return false;
  }
}

/**
 * Stats everything the advertisement depends on; null when it cannot be trusted to show a
 * change: a filesystem that is not local, too many loose refs, or a change too recent.
 */
export function takeSnapshot(
  repoDir: string,
  extraFiles: readonly string[],
  now: number = Date.now(),
): RefSnapshot | null {
  if (!isLocalFilesystem(repoDir)) return null;
  const paths = [...REPO_FILES.map((file) => path.join(repoDir, file)), ...extraFiles];
  const values: number[] = [];
  for (const file of paths) {
    if (!record(values, file)) return null;
  }
  // refs/, depth first; a directory is stat'ed before it is read, so an entry added after the
  // read changes the recorded mtime.
  const pending = [path.join(repoDir, 'refs')];
  while (pending.length > 0) {
    const at = pending.pop() as string;
    if (paths.length >= MAX_WATCHED_PATHS) return null;
    paths.push(at);
    const isDir = record(values, at);
    if (isDir === null) return null;
    if (isDir !== 'dir') continue;
    let names: string[];
    try {
      names = readdirSync(at);
    } catch {
      return null;
    }
    for (const name of names) pending.push(path.join(at, name));
  }
  const stats = Float64Array.from(values);
  return isRacy(stats, now) ? null : { paths, stats };
}

/** Appends a path's four numbers (-1s when it does not exist); null when stat() failed otherwise. */
function record(values: number[], file: string): 'dir' | 'other' | null {
  let s;
  try {
    s = statSync(file, { throwIfNoEntry: false });
  } catch {
    return null;
  }
  if (s === undefined) {
    values.push(-1, -1, -1, -1);
    return 'other';
  }
  values.push(s.ino, s.size, s.mtimeMs, s.ctimeMs);
  return s.isDirectory() ? 'dir' : 'other';
}

/**
 * Whether a change could still go unseen: any time within the racy window of `now`. The
 * window is a second's worth when no ctime has a fraction (a filesystem with whole seconds).
 */
function isRacy(stats: Float64Array, now: number): boolean {
  let fine = false;
  let latest = -Infinity;
  for (let i = 0; i < stats.length; i += 4) {
    const mtime = stats[i + 2] as number;
    const ctime = stats[i + 3] as number;
    if (ctime < 0) continue;
    if (ctime % 1000 !== 0) fine = true;
    latest = Math.max(latest, mtime, ctime);
  }
  return latest > now - (fine ? RACY_MS_FINE : RACY_MS_COARSE);
}

/** Every path still stats as recorded. */
function unchanged(snapshot: RefSnapshot): boolean {
  const { paths, stats } = snapshot;
  for (let i = 0; i < paths.length; i++) {
    let s;
    try {
      s = statSync(paths[i] as string, { throwIfNoEntry: false });
    } catch {
      return false;
    }
    const at = i * 4;
    if (s === undefined) {
      if (stats[at] !== -1) return false;
    } else if (
      s.ino !== stats[at] ||
      s.size !== stats[at + 1] ||
      s.mtimeMs !== stats[at + 2] ||
      s.ctimeMs !== stats[at + 3]
    ) {
      return false;
    }
  }
  return true;
}

/**
 * The advertisements, least recently used first out, within a byte budget that counts each
 * entry's body, snapshot and key (an entry may take a quarter of it at most).
 */
export class RefAdvertisementCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  hits = 0;

  constructor(readonly maxBytes: number) {}

  get maxEntryBytes(): number {
    return Math.floor(this.maxBytes / 4);
  }

  /** The advertisement for `key` if nothing it depends on changed since; else null (and it is dropped). */
  lookup(key: string): Buffer | null {
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    this.entries.delete(key);
    if (!unchanged(entry.snapshot)) {
      this.bytes -= entry.cost;
      return null;
    }
    this.entries.set(key, entry);
    this.hits++;
    return entry.body;
  }

  /** One request's use of the cache: a look-up, then maybe the run that fills it. */
  use(repoDir: string, env: Readonly<Record<string, string>>, dependsOn: readonly string[]): CacheUse {
    return new CacheUse(this, refCacheKey(repoDir, env), repoDir, dependsOn);
  }

  store(key: string, snapshot: RefSnapshot, body: Buffer): void {
    const cost = costOf(key, snapshot, body);
    if (cost > this.maxEntryBytes) return;
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.bytes -= old.cost;
    }
    this.entries.set(key, { snapshot, body, cost });
    this.bytes += cost;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= entry.cost;
    }
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

/** A request's look-up, and the capture of git's output when it missed. */
export class CacheUse {
  private snapshot: RefSnapshot | null = null;
  private chunks: Buffer[] = [];
  private length = 0;

  constructor(
    private readonly cache: RefAdvertisementCache,
    readonly key: string,
    private readonly repoDir: string,
    private readonly dependsOn: readonly string[],
  ) {}

  lookup(): Buffer | null {
    return this.cache.lookup(this.key);
  }

  /**
   * Right before git runs: the snapshot, and a tap for the response body when what git says
   * may be kept (undefined when it may not).
   */
  start(): ((bytes: Buffer) => void) | undefined {
    this.snapshot = takeSnapshot(this.repoDir, this.dependsOn);
    return this.snapshot === null ? undefined : this.tap;
  }

  private readonly tap = (bytes: Buffer): void => {
    if (this.snapshot === null) return;
    this.length += bytes.length;
    if (this.length > this.cache.maxEntryBytes) {
      this.snapshot = null; // too large to keep: stop copying
      this.chunks = [];
    } else this.chunks.push(Buffer.from(bytes));
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
