import { lstatSync, readdirSync, statSync, statfsSync, type Stats } from 'node:fs';
import path from 'node:path';
import type { Repository } from '../request/locate-repository.js';
import type { GitInstall } from './git-install.js';

/**
 * THE list: everything a ref advertisement (git upload-pack/receive-pack
 * `--http-backend-info-refs`, behind git http-backend) depends on, derived from what git reads
 * for it. The direct run is taken only when every item is known and understood (direct.ts);
 * the cache keeps an advertisement only while every item still stats the same (cache.ts).
 *
 * - the repository as git enters it: the entered path (its owner: git's safe.directory check)
 *   and the git directory (its entries: git-daemon-export-ok, a `.git` or `commondir` of its
 *   own; its owner and mode);
 * - HEAD, and the refs in the repository's ref storage: `files` (packed-refs and every directory
 *   and loose ref under refs/) or `reftable` (reftable/ and reftable/tables.list, which every
 *   ref update and compaction replaces);
 * - the config files git reads: the system one (as the build was configured), the global ones
 *   under HOME ($XDG_CONFIG_HOME/git/config, ~/.gitconfig), the repository's; and the
 *   GIT_CONFIG_* entries of the environment (part of the cache key);
 * - the object store's pack directory, objects/info/alternates (peeled tags, `.have`s) and the
 *   `shallow` file;
 * - the git program and git http-backend (an upgrade changes the output).
 * The environment git runs in is the rest: it is the cache key (cache.ts).
 */
export type RefStorage = 'files' | 'reftable';

export interface Dependencies {
  /** Paths stat()ed as they are (a missing one is recorded as missing). */
  readonly files: readonly string[];
  /** Paths lstat()ed: a symlink's own owner and times (git's ownership check uses lstat). */
  readonly links: readonly string[];
  /** Directories walked whole: every directory and file under them (files ref storage: refs/). */
  readonly trees: readonly string[];
}

/** The config files git reads for this environment, in git's order (system, global, repository). */
export function configFiles(
  gitDir: string,
  install: GitInstall,
  env: Readonly<Record<string, string>>,
): string[] {
  const files = [install.systemConfig];
  const home = env.HOME;
  if (home !== undefined && home !== '') {
    const xdg = env.XDG_CONFIG_HOME;
    files.push(
      xdg !== undefined && xdg !== ''
        ? path.join(xdg, 'git', 'config')
        : path.join(home, '.config', 'git', 'config'),
      path.join(home, '.gitconfig'),
    );
  }
  files.push(path.join(gitDir, 'config'));
  return files;
}

export function dependenciesOf(
  repository: Repository,
  storage: RefStorage,
  install: GitInstall,
  backend: string,
  env: Readonly<Record<string, string>>,
): Dependencies {
  const at = (...parts: string[]): string => path.join(repository.gitDir, ...parts);
  const refFiles =
    storage === 'files' ? [at('packed-refs')] : [at('reftable'), at('reftable', 'tables.list')];
  return {
    links: [repository.entered],
    files: [
      repository.gitDir,
      at('HEAD'),
      ...refFiles,
      ...configFiles(repository.gitDir, install, env),
      at('objects', 'pack'),
      at('objects', 'info', 'alternates'),
      at('shallow'),
      install.program,
      backend,
    ],
    trees: storage === 'files' ? [at('refs')] : [],
  };
}

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

/** A repository with more loose refs than this is not cached: checking them would cost as much as git. */
export const MAX_WATCHED_PATHS = 256;

/**
 * A change younger than this may share its timestamp with the next one: on a filesystem with
 * nanosecond timestamps the kernel's clock tick (<= 10 ms) is what counts, on one with whole
 * seconds a second; both with room to spare.
 */
const RACY_MS_FINE = 100;
const RACY_MS_COARSE = 2000;

/** Where the dependencies stood: paths, how each is stat'ed, and 4 numbers each. */
export interface Snapshot {
  readonly paths: readonly string[];
  /** Per path: true to lstat (not follow a symlink). */
  readonly lstat: readonly boolean[];
  /** inode, size, mtime, ctime per path; -1s for a missing one. */
  readonly stats: Float64Array;
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
 * Stats every dependency; null when the result could not show a change: a filesystem that is
 * not local, too many loose refs, or a change too recent (racy).
 */
export function takeSnapshot(deps: Dependencies, repoDir: string, now: number = Date.now()): Snapshot | null {
  if (!isLocalFilesystem(repoDir)) return null;
  const paths: string[] = [];
  const lstat: boolean[] = [];
  const values: number[] = [];
  const add = (file: string, link: boolean): 'dir' | 'other' | null => {
    paths.push(file);
    lstat.push(link);
    return record(values, file, link);
  };
  for (const file of deps.links) if (add(file, true) === null) return null;
  for (const file of deps.files) if (add(file, false) === null) return null;
  // Depth first; a directory is stat'ed before it is read, so an entry added after the read
  // changes the recorded mtime.
  const pending = [...deps.trees];
  while (pending.length > 0) {
    const at = pending.pop() as string;
    if (paths.length >= MAX_WATCHED_PATHS) return null;
    const kind = add(at, false);
    if (kind === null) return null;
    if (kind !== 'dir') continue;
    let names: string[];
    try {
      names = readdirSync(at);
    } catch {
      return null;
    }
    for (const name of names) pending.push(path.join(at, name));
  }
  const stats = Float64Array.from(values);
  return isRacy(stats, now) ? null : { paths, lstat, stats };
}

function statOf(file: string, link: boolean): Stats | undefined {
  return link ? lstatSync(file, { throwIfNoEntry: false }) : statSync(file, { throwIfNoEntry: false });
}

/** Appends a path's four numbers (-1s when it does not exist); null when stat() failed otherwise. */
function record(values: number[], file: string, link: boolean): 'dir' | 'other' | null {
  let s;
  try {
    s = statOf(file, link);
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

/** Every path still stats as recorded (ctime covers a changed owner or mode). */
export function unchanged(snapshot: Snapshot): boolean {
  const { paths, lstat, stats } = snapshot;
  for (let i = 0; i < paths.length; i++) {
    let s;
    try {
      s = statOf(paths[i] as string, lstat[i] === true);
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
