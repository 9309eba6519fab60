import type { Logger } from '../log.js';
import type { Repository } from '../request/locate-repository.js';
import type { GitService } from '../request/repo-path.js';
import type { CacheUse, RefAdvertisementCache } from './cache.js';
import { planDirectAdvertisement, type DirectAdvertisement } from './direct.js';
import type { GitInstalls } from './git-install.js';

/**
 * What git-fcgi does instead of git http-backend for a ref advertisement, decided in one
 * place: the answer from the cache, or the direct run (filling the cache when it may), or
 * nothing (git http-backend answers). What it depends on is listed in depends-on.ts.
 */
export type FastPath =
  | { readonly direct: DirectAdvertisement; readonly cached: Buffer; readonly cacheUse: null }
  | { readonly direct: DirectAdvertisement; readonly cached: null; readonly cacheUse: CacheUse | null };

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
  const plan = planDirectAdvertisement(installs.of(backend), backend, service, repository, env);
  if (plan.direct === null) {
    log.debug('direct ref advertisement not taken', { reason: plan.reason });
    return null;
  }
  const { direct } = plan;
  // Only upload-pack's advertisement is kept: receive-pack's names the pusher's refs and .haves.
  const cacheUse =
    service === 'git-upload-pack' && cache !== null
      ? cache.use(repository.gitDir, direct.env, direct.dependsOn)
      : null;
  const cached = cacheUse?.lookup() ?? null;
  return cached !== null ? { direct, cached, cacheUse: null } : { direct, cached: null, cacheUse };
}
