import type { Logger } from '../log.js';
import type { CgiHead } from '../request/cgi-headers.js';
import type { Repository } from '../request/locate-repository.js';
import type { GitService } from '../request/repo-path.js';
import { refCacheKey, type CacheUse, type RefAdvertisementCache } from './cache.js';
import { headFor, isPlainGet, planDirectAdvertisement, type DirectAdvertisement } from './direct.js';
import type { GitInstalls } from './git-install.js';

/**
 * What git-fcgi does instead of git http-backend for a ref advertisement, decided in one
 * place: the answer from the cache, or the direct run (filling the cache when it may), or
 * nothing (git http-backend answers). What it depends on is listed in depends-on.ts.
 */
export type FastPath =
  | { readonly cached: Buffer; readonly head: CgiHead }
  | { readonly cached: null; readonly direct: DirectAdvertisement; readonly cacheUse: CacheUse | null };

export interface FastPathContext {
  readonly installs: GitInstalls;
  /** The ref advertisement cache in use; null when ref_cache = 0. */
  readonly cache: RefAdvertisementCache | null;
  readonly backend: string;
  readonly log: Logger;
}

export function fastPathFor(
  context: FastPathContext,
  service: GitService | null,
  repository: Repository,
  env: Readonly<Record<string, string>>,
): FastPath | null {
  const { installs, cache, backend, log } = context;
  // Only upload-pack's advertisement is kept: receive-pack's names the pusher's refs and .haves.
  const key =
    cache !== null && service === 'git-upload-pack' && isPlainGet(env)
      ? refCacheKey(cacheScope(backend, repository), env)
      : null;
  if (cache !== null && key !== null && service === 'git-upload-pack') {
    const cached = cache.lookup(key);
    // Everything the plan below reads is in the key (the repository as found, the backend, the
    // environment) or in the entry's snapshot (config files, the git directory and the owner
    // of the path entered, the git binary): a hit is what the plan took the direct run for.
    if (cached !== null) return { cached, head: headFor(service) };
  }
  const plan = planDirectAdvertisement(installs.of(backend), backend, service, repository, env);
  if (plan.direct === null) {
    log.debug('direct ref advertisement not taken', { reason: plan.reason });
    return null;
  }
  const { direct } = plan;
  const cacheUse =
    cache !== null && key !== null ? cache.use(key, repository.gitDir, direct.dependsOn) : null;
  return { cached: null, direct, cacheUse };
}

/** The part of a cache key that is not the environment: the backend, and the repository as found. */
export function cacheScope(backend: string, repository: Repository): string {
  const { entered, gitDir, commonDir, viaGitfile } = repository;
  return `${backend}\0${entered}\0${gitDir}\0${commonDir}\0${viaGitfile ? 'gitfile' : 'dir'}`;
}
