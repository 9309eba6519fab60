import { mkdtempSync, readdirSync, rmSync, statSync, statfsSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GitFcgiError } from '../errors.js';

/** Names of the cache's files: nothing else in the directory is touched. */
export const PACK_FILE = /^pack-[0-9a-f]{16,64}$/;

/** Below this much free space at start the cache stays off: it must never be what fills a disk. */
export const MIN_FREE_BYTES = 64 * 1024 * 1024;

/**
 * Why `dir` may not hold the cache, or null: it must be a directory owned by the serving user
 * (`uid`, the process's own by default) that nobody else can enter or read (mode 0700 or less),
 * since cached packs are any repository's content.
 */
export function cacheDirProblem(dir: string, uid: number = process.getuid?.() ?? 0): string | null {
  let s;
  try {
    s = statSync(dir);
  } catch (err) {
    return `pack_cache_dir ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
  if (!s.isDirectory()) return `pack_cache_dir ${dir} is not a directory`;
  if (s.uid !== uid)
    return `pack_cache_dir ${dir} is owned by uid ${s.uid}, not the serving user (uid ${uid})`;
  if ((s.mode & 0o077) !== 0) {
    return `pack_cache_dir ${dir} has mode ${(s.mode & 0o777).toString(8)}: group or others may read cached packs; chmod 700 it`;
  }
  return null;
}

export interface CacheDir {
  readonly dir: string;
  /** Removes what the cache left (and the directory itself when it made it). */
  readonly cleanup: () => void;
}

/**
 * The cache directory: pack_cache_dir, else systemd's $CACHE_DIRECTORY (CacheDirectory=), else
 * a private directory under the temporary directory, made now and removed at exit. Checked
 * (cacheDirProblem) and emptied of the cache's files. Throws ERR_CONFIG when it is unusable.
 */
export function openCacheDir(configured: string | null, cacheDirectoryEnv: string | undefined): CacheDir {
  const systemd = cacheDirectoryEnv?.split(':')[0];
  const chosen = configured ?? (systemd !== undefined && path.isAbsolute(systemd) ? systemd : null);
  const dir = chosen ?? mkdtempSync(path.join(tmpdir(), 'git-fcgi-pack-cache-'));
  const problem = cacheDirProblem(dir);
  if (problem !== null) throw new GitFcgiError('ERR_CONFIG', problem);
  const emptyIt = (): void => {
    for (const name of readdirSync(dir)) if (PACK_FILE.test(name)) unlinkSync(path.join(dir, name));
  };
  emptyIt();
  return {
    dir,
    cleanup: () => {
      try {
        if (chosen === null) rmSync(dir, { recursive: true, force: true });
        else emptyIt();
      } catch {
        // At exit: nothing more to do.
      }
    },
  };
}

/** Free bytes for the serving user on the directory's filesystem. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}
