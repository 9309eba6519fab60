import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/settings.js';
import { formatSize } from '../config/values.js';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Spawner } from '../request/backend-process.js';
import { MIN_FREE_BYTES, cacheDirProblem, freeBytes, openCacheDir } from './cache-dir.js';
import { PackCache } from './pack-cache.js';

/** Built next to dist/cli.js by `npm ci` (src/native/pack-hook.c). */
export const PACK_HOOK_PATH = fileURLToPath(new URL('../git-fcgi-pack-hook', import.meta.url));

/** What --check-config says about the pack cache (the directory check runs as the serving user's uid). */
export function checkPackCache(config: Config, uid: number): string[] {
  if (config.packCacheBytes === 0 || config.packCacheDir === null) return [];
  const problem = cacheDirProblem(config.packCacheDir, uid);
  return problem === null ? [] : [`[git] ${problem}`];
}

/**
 * The pack cache as configured, started after the privilege drop (its directory belongs to the
 * serving user); null when it is off, or cannot work here (no hook binary, too little disk),
 * which is logged. An unusable pack_cache_dir is a configuration error (thrown).
 */
export async function startPackCache(
  config: Config,
  deps: { readonly spawn: Spawner; readonly log: Logger },
): Promise<{ readonly cache: PackCache; readonly stop: () => Promise<void> } | null> {
  const { log } = deps;
  if (config.packCacheBytes === 0) return null;
  try {
    accessSync(PACK_HOOK_PATH, constants.X_OK);
  } catch {
    log.warn(`pack cache off: ${PACK_HOOK_PATH} is missing (built by npm ci with a C compiler)`);
    return null;
  }
  const dir = openCacheDir(config.packCacheDir, process.env.CACHE_DIRECTORY);
  let budgetBytes = config.packCacheBytes;
  try {
    const free = freeBytes(dir.dir);
    if (free < MIN_FREE_BYTES) {
      log.warn(`pack cache off: only ${formatSize(free)} free in ${dir.dir}`);
      dir.cleanup();
      return null;
    }
    // Never what fills the disk: at most half of what is free now.
    if (free / 2 < budgetBytes) {
      budgetBytes = Math.floor(free / 2);
      log.warn(
        `pack cache: ${formatSize(budgetBytes)} instead of ${formatSize(config.packCacheBytes)}, half the free space in ${dir.dir}`,
      );
    }
    const cache = await PackCache.start({
      dir: dir.dir,
      budgetBytes,
      maxAgeMs: config.packCacheMaxAgeMs,
      idleTimeoutMs: config.idleTimeoutMs,
      killGraceMs: config.killGraceMs,
      spawn: deps.spawn,
      log,
      hookPath: PACK_HOOK_PATH,
    });
    log.debug('pack cache on', { dir: dir.dir, budget: budgetBytes });
    // An exit without the normal stop (a second SIGTERM, a crash) still removes the files.
    process.once('exit', dir.cleanup);
    return {
      cache,
      stop: async () => {
        await cache.close();
        process.off('exit', dir.cleanup);
        dir.cleanup();
      },
    };
  } catch (err) {
    dir.cleanup();
    log.warn(`pack cache off: ${describeError(err)}`);
    return null;
  }
}
