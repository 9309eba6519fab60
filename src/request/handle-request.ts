import { randomBytes } from 'node:crypto';
import type { Exchange, ExchangeHandler } from '../exchange.js';
import { GitFcgiError, describeError, isGitFcgiError } from '../errors.js';
import type { Logger } from '../log.js';
import { buildBackendEnv } from './cgi-env.js';
import { checkRpcContentType } from './content-type.js';
import { derivePathInfo, parseGitTarget, resolveRepository, type GitTarget } from './repo-path.js';
import { spawnBackend } from './backend-process.js';
import { sendError } from './error-response.js';
import { BackendRelay, type RelayResult } from './backend-relay.js';

/** What the request handler needs from the configuration (read per request, so reloads apply). */
export interface HandlerSettings {
  readonly projectRoot: string | null;
  readonly backend: string;
  readonly exportAll: boolean;
  readonly followSymlinks: boolean;
  readonly maxRequestBufferBytes: number | null;
  readonly idleTimeoutMs: number;
  readonly killGraceMs: number;
  readonly serverSoftware: string;
}

export interface HandlerDeps {
  readonly settings: () => HandlerSettings;
  readonly log: Logger;
}

const REQUEST_ID = /^[\w.-]{1,64}$/;

/** nginx's `$request_id` (passed as REQUEST_ID) when present, so both logs share one id. */
function requestIdFor(params: ReadonlyMap<string, string>): string {
  const fromNginx = params.get('REQUEST_ID');
  return fromNginx !== undefined && REQUEST_ID.test(fromNginx) ? fromNginx : randomBytes(6).toString('hex');
}

/**
 * Composes the stages of one request: validate the target, build the environment, spawn the
 * backend, relay both directions, and write one access-log line at the end.
 */
export function createRequestHandler(deps: HandlerDeps): ExchangeHandler {
  return (exchange) => {
    void serve(exchange, deps);
  };
}

async function serve(exchange: Exchange, deps: HandlerDeps): Promise<void> {
  const started = process.hrtime.bigint();
  const { params } = exchange;
  const id = requestIdFor(params);
  const log = deps.log.child({ req: id });
  const settings = deps.settings();
  let target: GitTarget | undefined;
  let result: RelayResult;
  try {
    target = validate(params);
    const projectRoot = params.get('GIT_PROJECT_ROOT') || settings.projectRoot;
    if (!projectRoot) {
      throw new GitFcgiError('ERR_CONFIG', 'no project root: set project_root or pass GIT_PROJECT_ROOT', {
        status: 500,
      });
    }
    const repoDir = await resolveRepository(projectRoot, target.repo, {
      followSymlinks: settings.followSymlinks,
    });
    const env = buildBackendEnv(params, {
      projectRoot,
      exportAll: settings.exportAll,
      pathInfo: target.pathInfo,
      requestId: id,
      maxRequestBufferBytes: settings.maxRequestBufferBytes,
      gitConfig: [],
      serverSoftware: settings.serverSoftware,
    });
    if (exchange.signal.aborted) throw exchange.signal.reason;
    const backend = await spawnBackend(settings.backend, env, repoDir);
    log.debug('backend started', { pid: backend.pid, backend: settings.backend });
    result = await new BackendRelay(exchange, backend, {
      idleTimeoutMs: settings.idleTimeoutMs,
      killGraceMs: settings.killGraceMs,
      contentLength: contentLengthOf(params),
      log,
    }).run();
  } catch (err) {
    result = refuse(exchange, err, log);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  log.access({
    addr: params.get('REMOTE_ADDR'),
    user: params.get('REMOTE_USER') || '-',
    method: params.get('REQUEST_METHOD'),
    repo: target?.repo ?? '-',
    service: target?.service ?? (target ? 'dumb' : '-'),
    status: result.status,
    in: result.bytesIn,
    out: result.bytesOut,
    ms: Math.round(ms * 10) / 10,
    exit: result.exit,
    ...(result.error ? { error: result.error } : {}),
  });
}

function validate(params: ReadonlyMap<string, string>): GitTarget {
  const pathInfo = derivePathInfo(params);
  if (pathInfo === undefined)
    throw new GitFcgiError('ERR_BAD_PATH', 'no PATH_INFO in the request', { status: 400 });
  const target = parseGitTarget(
    pathInfo,
    params.get('QUERY_STRING') ?? '',
    params.get('REQUEST_METHOD') ?? '',
  );
  checkRpcContentType(target, params.get('CONTENT_TYPE'));
  return target;
}

function contentLengthOf(params: ReadonlyMap<string, string>): number | null {
  const raw = params.get('CONTENT_LENGTH');
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : null;
}

/** A request refused or failed before any backend output: an error page, and the reason logged. */
function refuse(exchange: Exchange, err: unknown, log: Logger): RelayResult {
  const status = isGitFcgiError(err) ? err.status : 500;
  const aborted = isGitFcgiError(err) && err.code === 'ERR_CLIENT_ABORT';
  const level = status >= 500 && !aborted ? 'error' : status === 404 ? 'info' : 'warn';
  log[level]('request refused', { status, reason: describeError(err) });
  exchange.body.resume();
  if (aborted) exchange.response.end();
  else if (!exchange.response.headersSent) sendError(exchange.response, status);
  else exchange.response.abort(err instanceof Error ? err : new Error(String(err)));
  return { status: aborted ? 499 : status, bytesIn: 0, bytesOut: 0, exit: null, error: describeError(err) };
}
