import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Dependencies } from '../advertisement/depends-on.js';
import { knownDependencies } from '../advertisement/direct.js';
import { PER_REQUEST_VARIABLES } from '../advertisement/cache.js';
import { cacheScope } from '../advertisement/fast-path.js';
import type { GitInstalls } from '../advertisement/git-install.js';
import { keyHash } from '../key-hash.js';
import type { Repository } from '../request/locate-repository.js';

/**
 * THE list for a fetch's answer (what git http-backend and git upload-pack read for a POST),
 * and its key. Beyond the ref advertisement's list (advertisement/depends-on.ts: the repository
 * directory and its owner, HEAD, the refs, every config file, the packs, alternates, shallow,
 * the git binary and git http-backend), a fetch reads objects: those in packs (objects/pack),
 * loose ones (objects/ and each objects/XX/ directory: adding or removing an object changes
 * its directory), and objects/info and objects/info/commit-graphs (a commit-graph, whole or
 * split, is written by renaming a new file into one of them). A repository with alternates is not kept:
 * its objects are also elsewhere.
 *
 * The key is the request body and the environment git runs in, without what differs from one
 * request to the next and git does not read for a fetch (addresses, ports, the request id,
 * the pack cache's per-request token, HTTP headers other than Content-Encoding and
 * Git-Protocol).
 */

/** The largest body a kept fetch may have: negotiation bodies are small; bigger ones go to git as always. */
export const MAX_FETCH_BODY_BYTES = 64 * 1024;

/** The headers git http-backend reads. */
const READ_HEADERS = new Set(['HTTP_CONTENT_ENCODING', 'HTTP_GIT_PROTOCOL']);

const LOOSE_DIR = /^[0-9a-f]{2}$/;

export type FetchPlan =
  | { readonly dependsOn: Dependencies; readonly bodyBytes: number; readonly reason?: undefined }
  | { readonly dependsOn: null; readonly reason: string };

/** Whether this fetch's answer may be kept, and what it depends on. */
export function planFetch(
  installs: GitInstalls,
  backend: string,
  repository: Repository,
  env: Readonly<Record<string, string>>,
): FetchPlan {
  const no = (reason: string): FetchPlan => ({ dependsOn: null, reason });
  if (env.REQUEST_METHOD !== 'POST') return no('not a POST');
  const length = env.CONTENT_LENGTH;
  if (length === undefined || !/^\d+$/.test(length)) return no('no Content-Length');
  const bodyBytes = Number(length);
  if (bodyBytes > MAX_FETCH_BODY_BYTES) return no(`a body over ${MAX_FETCH_BODY_BYTES} bytes`);
  const known = knownDependencies(installs.of(backend), backend, repository, env);
  if (known.dependsOn === null) return no(known.reason);
  const objects = path.join(repository.gitDir, 'objects');
  if (statSync(path.join(objects, 'info', 'alternates'), { throwIfNoEntry: false }) !== undefined) {
    return no('alternates');
  }
  let loose: string[];
  try {
    loose = readdirSync(objects).filter((name) => LOOSE_DIR.test(name));
  } catch {
    return no('objects/ unreadable');
  }
  const { dependsOn } = known;
  return {
    dependsOn: {
      links: dependsOn.links,
      files: [
        ...dependsOn.files,
        objects,
        path.join(objects, 'info'),
        path.join(objects, 'info', 'commit-graphs'),
        ...loose.map((name) => path.join(objects, name)),
      ],
      trees: dependsOn.trees,
    },
    bodyBytes,
  };
}

/** The key of a fetch's answer: the repository, the environment (see above), the body. */
export function fetchKey(
  backend: string,
  repository: Repository,
  env: Readonly<Record<string, string>>,
  body: Buffer,
): string {
  const names = Object.keys(env)
    .filter(
      (name) => !PER_REQUEST_VARIABLES.has(name) && (!name.startsWith('HTTP_') || READ_HEADERS.has(name)),
    )
    .sort();
  return keyHash([
    cacheScope(backend, repository),
    ...names.map((name) => `${name}=${env[name] ?? ''}`),
    body,
  ]);
}
