import { randomBytes } from 'node:crypto';
import { AccessDenied } from '../access/access-error.js';
import { Authorizer, type AccessSettings, type Grant } from '../access/authorize.js';
import type { Exchange, RequestHandler } from '../exchange.js';
import { GitFcgiError, describeError, isGitFcgiError } from '../errors.js';
import type { Logger } from '../log.js';
import { buildBackendEnv } from './cgi-env.js';
import { derivePathInfo, parseGitTarget, splitPathHint, type GitTarget } from './repo-path.js';
import { locateRepository, type Repository } from './locate-repository.js';
import type { Spawner } from './backend-process.js';
import { sendError } from './error-response.js';
import { backendHint } from './backend-hints.js';
import { BackendRelay, type RelayOptions, type RelayResult } from './backend-relay.js';
import type { RefAdvertisementCache } from '../advertisement/cache.js';
import type { CgiHead } from './cgi-headers.js';
import { fastPathFor, type FastPath } from '../advertisement/fast-path.js';
import type { GitInstalls } from '../advertisement/git-install.js';
import type { PackCache } from '../pack-cache/pack-cache.js';
import type { PackOutcome } from '../pack-cache/tickets.js';
import { fetchFromCache, type FetchUse } from '../fetch-cache/fetch-use.js';
import type { FetchResponseCache } from '../fetch-cache/fetch-cache.js';
import type { SpliceRoute } from './stdout-to-response.js';

/** What the request handler needs from the configuration (read per request, so reloads apply). */
export interface HandlerSettings extends AccessSettings {
  readonly projectRoot: string | null;
  readonly backend: string;
  readonly exportAll: boolean;
  readonly followSymlinks: boolean;
  readonly maxRequestBufferBytes: number | null;
  readonly receiveMaxInputSizeBytes: number | null;
  readonly idleTimeoutMs: number;
  readonly killGraceMs: number;
  readonly serverSoftware: string;
  /** The user the backends run as (for hints in the log). */
  readonly servingUser: string;
  /** HOME for the backends (resolved from `home`); null: none. */
  readonly home: string | null;
  /** The [env] section. */
  readonly env: Readonly<Record<string, string>>;
}

/** What one request amounted to, as its access-log line says. */
export interface RequestOutcome {
  readonly status: number;
  readonly service: string;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Of bytesOut, those git-fcgi-splice moved. */
  readonly splicedBytes: number;
}

/** Hooks for the status counters, called as things happen. */
export interface RequestEvents {
  accepted(): void;
  spawned(): void;
  /** A ref advertisement was answered from the cache, without a backend. */
  servedFromCache(): void;
  /** A fetch was answered from the fetch cache: a kept answer, or an identical request's run. */
  servedFromFetchCache(how: 'hit' | 'coalesced'): void;
  finished(outcome: RequestOutcome): void;
}

export interface HandlerDeps {
  readonly settings: () => HandlerSettings;
  readonly log: Logger;
  /**
   * Waits for a free backend slot (max_children, queue); resolves with its release. Rejects
   * with 503 errors when busy, or with the signal's reason when the client leaves meanwhile.
   */
  readonly acquireSlot: (signal: AbortSignal) => Promise<() => void>;
  /** Starts the backend process. */
  readonly spawn: Spawner;
  readonly events: RequestEvents;
  /** The ref advertisement cache in use; null when ref_cache = 0. */
  readonly refCache: () => RefAdvertisementCache | null;
  /** The git installations behind the backends (versions), for the ref advertisement fast path. */
  readonly gitInstalls: GitInstalls;
  /** The pack cache in use; null when pack_cache = 0 (or it cannot work here). */
  readonly packCache?: () => PackCache | null;
  /** The fetch answer cache in use; null when fetch_cache = 0. */
  readonly fetchCache?: () => FetchResponseCache | null;
  /** How large responses are spliced; null when they are not (splice = off, no helper). */
  readonly splice?: () => SpliceRoute | null;
}

const REQUEST_ID = /^[\w.-]{1,64}$/;

/** Request ids of this process: a random prefix, then a counter (unique, and no syscall per request). */
const ID_PREFIX = randomBytes(4).toString('hex');
let requestCounter = 0;

/** nginx's `$request_id` (passed as REQUEST_ID) when present, so both logs share one id. */
function requestIdFor(params: ReadonlyMap<string, string>): string {
  const fromNginx = params.get('REQUEST_ID');
  if (fromNginx !== undefined && REQUEST_ID.test(fromNginx)) return fromNginx;
  requestCounter = (requestCounter + 1) % 0x100000000;
  return `${ID_PREFIX}${requestCounter.toString(16).padStart(8, '0')}`;
}

/**
 * Composes the stages of one request: validate the target, build the environment, spawn the
 * backend, relay both directions, and write one access-log line at the end.
 */
export function createRequestHandler(deps: HandlerDeps): RequestHandler {
  const authorizer = new Authorizer(deps.log);
  return (exchange) =>
    serve(exchange, deps, authorizer).catch((err: unknown) => {
      // serve() handles every request error itself; reaching here is a bug, not a client's doing.
      deps.log.error('internal error in request handler', { reason: describeError(err) });
      exchange.response.abort(err instanceof Error ? err : new Error(String(err)));
    });
}

async function serve(exchange: Exchange, deps: HandlerDeps, authorizer: Authorizer): Promise<void> {
  const started = process.hrtime.bigint();
  const { params } = exchange;
  const id = requestIdFor(params);
  const log = deps.log.child({ req: id });
  const settings = deps.settings();
  deps.events.accepted();
  let target: GitTarget | undefined;
  let repository: Repository | undefined;
  let grant: Grant | undefined;
  let denied: AccessDenied | undefined;
  let result: RelayResult;
  let endPack = (): PackOutcome | null => null;
  try {
    target = validate(params, log);
    const projectRoot = params.get('GIT_PROJECT_ROOT') || settings.projectRoot;
    if (!projectRoot) {
      throw new GitFcgiError('ERR_CONFIG', 'no project root: set project_root or pass GIT_PROJECT_ROOT', {
        status: 500,
      });
    }
    const found = locate(projectRoot, target.repo, settings);
    if (found instanceof GitFcgiError) {
      // The rules for the name asked for still come first: whoever may not see it learns no more
      // (401 asks for credentials) than for a repository that exists.
      await authorizer.authorize(settings, target, params, log);
      throw found;
    }
    repository = found;
    // Rules are matched against the repository git would serve, whatever alias reached it.
    grant = await authorizer.authorize(settings, { ...target, repo: repository.name }, params, log);
    const repoDir = repository.gitDir;
    // Pack requests may ask the pack cache (through git-fcgi-pack-hook) for their pack.
    const packCache =
      target.kind === 'smart-rpc' && target.service === 'git-upload-pack' ? deps.packCache?.() : null;
    const packUse = packCache?.begin(id, repoDir) ?? null;
    if (packCache && packUse) endPack = () => packCache.end(packUse.ticket);
    const env = buildBackendEnv(params, {
      projectRoot,
      exportAll: settings.exportAll,
      pathInfo: target.pathInfo,
      requestId: id,
      maxRequestBufferBytes: settings.maxRequestBufferBytes,
      gitConfig: packUse === null ? gitConfigFor(settings) : [...gitConfigFor(settings), packUse.gitConfig],
      serverSoftware: settings.serverSoftware,
      home: settings.home,
      adminEnv: settings.env,
      extraEnv: packUse === null ? grant.env : { ...grant.env, ...packUse.env },
      ...(grant.remoteUser === undefined ? {} : { remoteUser: grant.remoteUser }),
    });
    const fast =
      target.kind === 'smart-refs'
        ? fastPathFor(
            { installs: deps.gitInstalls, cache: deps.refCache(), backend: settings.backend, log },
            target.service,
            repository,
            env,
          )
        : null;
    const fetch =
      target.kind === 'smart-rpc' && target.service === 'git-upload-pack'
        ? await fetchFromCache(exchange, deps.fetchCache?.() ?? null, {
            installs: deps.gitInstalls,
            backend: settings.backend,
            repository,
            env,
            log,
          })
        : null;
    if (fast !== null && fast.cached !== null) {
      result = sendCached(exchange, fast.head, fast.cached);
      deps.events.servedFromCache();
    } else if (fetch?.answer) {
      result = sendCached(fetch.exchange, fetch.answer.head, fetch.answer.body, fetch.answer.how);
      deps.events.servedFromFetchCache(fetch.answer.how);
    } else {
      result = await runBackend(fetch?.exchange ?? exchange, deps, settings, log, {
        repoDir,
        env,
        fast: fast ?? null,
        fetch: fetch?.capture ?? null,
      });
    }
  } catch (err) {
    if (err instanceof AccessDenied) denied = err;
    result = refuse(exchange, err, log);
  }
  const pack = endPack();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const service = target?.service ?? (target ? 'dumb' : '-');
  deps.events.finished({
    status: result.status,
    service,
    bytesIn: result.bytesIn,
    bytesOut: result.bytesOut,
    splicedBytes: result.splicedBytes ?? 0,
  });
  log.access({
    addr: params.get('REMOTE_ADDR'),
    user: userForLog(grant?.user ?? denied?.user, settings, params) || '-',
    method: params.get('REQUEST_METHOD'),
    repo: repository?.name ?? target?.repo ?? '-',
    service,
    status: result.status,
    in: result.bytesIn,
    out: result.bytesOut,
    ms: Math.round(ms * 10) / 10,
    exit: result.exit,
    ...(result.cached === undefined ? {} : { cache: result.cached }),
    ...(result.splicedBytes === undefined ? {} : { spliced: result.splicedBytes }),
    ...(pack === null ? {} : { pack }),
    ...(result.error ? { error: result.error } : {}),
  });
}

/**
 * Runs the backend once a slot is free: the direct ref advertisement first when there is one
 * (its output kept by the cache when `cacheUse` may keep it), git http-backend otherwise or
 * when that direct run fails before its first byte.
 */
async function runBackend(
  exchange: Exchange,
  deps: HandlerDeps,
  settings: HandlerSettings,
  log: Logger,
  how: {
    readonly repoDir: string;
    readonly env: Record<string, string>;
    readonly fast: (FastPath & { readonly cached: null }) | null;
    /** The run whose answer the fetch cache may keep, and identical requests wait for. */
    readonly fetch: FetchUse['capture'];
  },
): Promise<RelayResult> {
  const { repoDir, fast } = how;
  const direct = fast?.direct ?? null;
  const cacheUse = fast?.cacheUse ?? null;
  // Only the backend counts against max_children: refusals above cost nothing to wait for.
  let release: () => void;
  try {
    release = await deps.acquireSlot(exchange.signal);
  } catch (err) {
    // No run after all (busy, or the client left): identical requests waiting for it run git themselves.
    how.fetch?.finish(null, false);
    throw err;
  }
  try {
    if (exchange.signal.aborted) throw exchange.signal.reason;
    const spliceRoute = deps.splice?.() ?? null;
    const relayOptions: RelayOptions = {
      idleTimeoutMs: settings.idleTimeoutMs,
      killGraceMs: settings.killGraceMs,
      contentLength: contentLengthOf(exchange.params),
      log,
      ...(spliceRoute === null ? {} : { splice: spliceRoute }),
      hint: (line) =>
        backendHint(line, {
          servingUser: settings.servingUser,
          home: settings.home,
          remoteUser: Boolean(how.env.REMOTE_USER),
        }),
    };
    const run = async (
      program: string,
      args: readonly string[],
      runEnv: Record<string, string>,
      options: RelayOptions,
    ): Promise<RelayResult> => {
      const backend = await deps.spawn(program, args, runEnv, repoDir, exchange.signal);
      deps.events.spawned();
      log.debug('backend started', { pid: backend.pid, backend: program });
      return new BackendRelay(exchange, backend, options).run();
    };
    let first: RelayResult | null = null;
    if (direct !== null) {
      // Before git runs: whatever git reads is at least as new as what the cache stat'ed.
      const tap = cacheUse?.start();
      first = await run(direct.program, direct.args, direct.env, {
        ...relayOptions,
        prelude: { head: direct.head, body: direct.preamble },
        ...(tap === undefined ? {} : { tap }),
      }).catch((err: unknown) => {
        log.debug('direct ref advertisement failed', { reason: describeError(err) });
        return null;
      });
      cacheUse?.finish(
        first !== null && first.status === 200 && first.exit === 0 && first.error === undefined,
      );
    }
    if (first !== null && first.retry !== true) return first;
    // A direct run that cannot start, or fails before any output, leaves the answer to git http-backend.
    const capture = how.fetch;
    if (capture === null) return await run(settings.backend, [], how.env, relayOptions);
    // Before git runs: whatever git reads is at least as new as what the snapshot stat'ed.
    const options = capture.start() ? { ...relayOptions, tap: capture.tap } : relayOptions;
    let result: RelayResult | null = null;
    try {
      result = await run(settings.backend, [], how.env, options);
      return result;
    } finally {
      capture.finish(
        result?.head ?? null,
        result !== null && result.status === 200 && result.exit === 0 && result.error === undefined,
      );
    }
  } finally {
    how.fetch?.finish(null, false);
    release();
  }
}

/** An answer from a cache: the head git http-backend wrote (or would write), then the bytes. */
function sendCached(
  exchange: Exchange,
  head: CgiHead,
  body: Buffer,
  how: 'hit' | 'coalesced' = 'hit',
): RelayResult {
  exchange.body.resume();
  const { response, signal } = exchange;
  if (signal.aborted) {
    response.end();
    return { status: 499, bytesIn: 0, bytesOut: 0, exit: null, error: 'client went away' };
  }
  response.writeHead(head.status, head.headers);
  response.write(body);
  response.end();
  return { status: head.status, bytesIn: 0, bytesOut: body.length, exit: null, cached: how };
}

/** The user a request ran as or was refused as; else what nginx said, unless it is not trusted. */
function userForLog(
  user: string | null | undefined,
  settings: HandlerSettings,
  params: ReadonlyMap<string, string>,
): string | null | undefined {
  if (user) return user;
  const trusted = !settings.access.enabled || settings.access.auth.mode === 'nginx';
  return trusted ? params.get('REMOTE_USER') : null;
}

/** The repository, or why there is none (thrown by the caller once the rules had their say). */
function locate(
  projectRoot: string,
  requested: string,
  settings: HandlerSettings,
): Repository | GitFcgiError {
  try {
    return locateRepository(projectRoot, requested, { followSymlinks: settings.followSymlinks });
  } catch (err) {
    if (err instanceof GitFcgiError && err.code !== 'ERR_CONFIG') return err;
    throw err;
  }
}

function validate(params: ReadonlyMap<string, string>, log: Logger): GitTarget {
  const pathInfo = derivePathInfo(params);
  if (pathInfo === undefined)
    throw new GitFcgiError('ERR_BAD_PATH', 'no PATH_INFO in the request', { status: 400 });
  try {
    // No Content-Type check here: git http-backend checks it only once the repository is found,
    // exported and the service enabled (404 and 403 come first); its 415 is the answer.
    return parseGitTarget(
      pathInfo,
      params.get('QUERY_STRING') ?? '',
      params.get('REQUEST_METHOD') ?? '',
      params.get('SERVER_PROTOCOL') ?? 'HTTP/1.1',
    );
  } catch (err) {
    if (isGitFcgiError(err) && err.code === 'ERR_NOT_FOUND') hintSplitPath(params, log);
    throw err;
  }
}

/** A misconfigured front end sends every request that way: saying so once per process is enough. */
let splitPathHinted = false;

function hintSplitPath(params: ReadonlyMap<string, string>, log: Logger): void {
  if (splitPathHinted) return;
  const hint = splitPathHint(params);
  if (hint === undefined) return;
  splitPathHinted = true;
  log.warn(hint);
}

/** Settings passed to git as `-c` would, through GIT_CONFIG_COUNT/KEY/VALUE. */
function gitConfigFor(settings: HandlerSettings): Array<[string, string]> {
  const config: Array<[string, string]> = [];
  if (settings.receiveMaxInputSizeBytes !== null) {
    config.push(['receive.maxInputSize', String(settings.receiveMaxInputSizeBytes)]);
  }
  return config;
}

function contentLengthOf(params: ReadonlyMap<string, string>): number | null {
  const raw = params.get('CONTENT_LENGTH');
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : null;
}

/** A request refused or failed before any backend output: an error page, and the reason logged. */
function refuse(exchange: Exchange, err: unknown, log: Logger): RelayResult {
  const status = isGitFcgiError(err) ? err.status : 500;
  const aborted = isGitFcgiError(err) && err.code === 'ERR_CLIENT_ABORT';
  // Being busy is the limits doing their job, not a fault; a 401 is how every authenticated git
  // request starts (git sends credentials only when challenged).
  const level =
    status >= 500 && !aborted && status !== 503
      ? 'error'
      : status === 404 || status === 401
        ? 'info'
        : 'warn';
  log[level]('request refused', { status, reason: describeError(err) });
  exchange.body.resume();
  if (aborted) exchange.response.end();
  else if (!exchange.response.headersSent) {
    sendError(exchange.response, status, isGitFcgiError(err) ? err.headers : []);
  } else exchange.response.abort(err instanceof Error ? err : new Error(String(err)));
  return { status: aborted ? 499 : status, bytesIn: 0, bytesOut: 0, exit: null, error: describeError(err) };
}
