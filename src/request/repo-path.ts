import { GitFcgiError } from '../errors.js';

export type GitService = 'git-upload-pack' | 'git-receive-pack' | 'git-upload-archive';

/** What a request asks of which repository, decided before anything is spawned. */
export interface GitTarget {
  /** The validated PATH_INFO, with its leading '/', as git http-backend will see it. */
  pathInfo: string;
  /** Repository path relative to the project root, e.g. 'team/app.git'. */
  repo: string;
  service: GitService | null;
  access: 'read' | 'write';
  kind: 'smart-refs' | 'smart-rpc' | 'dumb';
}

export const MAX_PATH_BYTES = 4096;

interface Route {
  readonly pattern: RegExp;
  readonly method: 'GET' | 'POST';
  readonly rpc?: GitService;
  readonly infoRefs?: true;
}

/** git's http-backend.c `routes[]`, in its order; the repository is whatever precedes the match. */
const ROUTES: readonly Route[] = [
  { pattern: /\/HEAD$/, method: 'GET' },
  { pattern: /\/info\/refs$/, method: 'GET', infoRefs: true },
  { pattern: /\/objects\/info\/alternates$/, method: 'GET' },
  { pattern: /\/objects\/info\/http-alternates$/, method: 'GET' },
  { pattern: /\/objects\/info\/packs$/, method: 'GET' },
  { pattern: /\/objects\/[0-9a-f]{2}\/[0-9a-f]{38}$/, method: 'GET' },
  { pattern: /\/objects\/[0-9a-f]{2}\/[0-9a-f]{62}$/, method: 'GET' },
  { pattern: /\/objects\/pack\/pack-[0-9a-f]{40}\.pack$/, method: 'GET' },
  { pattern: /\/objects\/pack\/pack-[0-9a-f]{64}\.pack$/, method: 'GET' },
  { pattern: /\/objects\/pack\/pack-[0-9a-f]{40}\.idx$/, method: 'GET' },
  { pattern: /\/objects\/pack\/pack-[0-9a-f]{64}\.idx$/, method: 'GET' },
  { pattern: /\/git-upload-pack$/, method: 'POST', rpc: 'git-upload-pack' },
  { pattern: /\/git-receive-pack$/, method: 'POST', rpc: 'git-receive-pack' },
  { pattern: /\/git-upload-archive$/, method: 'POST', rpc: 'git-upload-archive' },
];

const SERVICES: ReadonlySet<string> = new Set<GitService>([
  'git-upload-pack',
  'git-receive-pack',
  'git-upload-archive',
]);

/** C0 and C1 controls, DEL, backslash, U+FFFD (what the params decoder makes of bad UTF-8), lone surrogates. */
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const FORBIDDEN_CHAR = /[\x00-\x1f\x7f-\x9f\\\uFFFD]|\p{Cs}/u;
/** nginx decodes $uri once: an escaped dot, slash, backslash or NUL left in it was encoded twice. */
const DOUBLE_ENCODED = /%(?:2e|2f|5c|00)/i;

/**
 * PATH_INFO as git http-backend needs it, however nginx was configured: the PATH_INFO param,
 * else DOCUMENT_URI, else the decoded REQUEST_URI; minus SCRIPT_NAME when that is a real prefix.
 */
export function derivePathInfo(params: ReadonlyMap<string, string>): string | undefined {
  const scriptName = params.get('SCRIPT_NAME');
  let found = params.get('PATH_INFO');
  if (!found) {
    const documentUri = params.get('DOCUMENT_URI');
    const requestUri = params.get('REQUEST_URI');
    if (documentUri) found = stripScriptName(documentUri, scriptName);
    else if (requestUri) {
      const decoded = decodeRequestPath(requestUri);
      if (decoded === undefined) return undefined;
      found = stripScriptName(decoded, scriptName);
    }
  }
  if (!found) return undefined;
  // `fastcgi_param PATH_INFO $1` after a regex location often drops the slash.
  return found.startsWith('/') ? found : `/${found}`;
}

/**
 * lighttpd mounted at "/" without `"fix-root-scriptname" => "enable"` splits the path after its first
 * segment: SCRIPT_NAME=/demo.git, PATH_INFO=/info/refs. git reads only PATH_INFO, which then names no
 * repository (404). That shape (a one-segment SCRIPT_NAME and a PATH_INFO that is a route with nothing
 * before it) can only mean the repository went into SCRIPT_NAME: the hint to log, or undefined.
 * (`/team/app.git` comes as SCRIPT_NAME=/team, PATH_INFO=/app.git/info/refs: a valid path, so no hint.)
 */
export function splitPathHint(params: ReadonlyMap<string, string>): string | undefined {
  const scriptName = params.get('SCRIPT_NAME');
  const pathInfo = params.get('PATH_INFO');
  if (!scriptName || !pathInfo || !/^\/[^/]+$/.test(scriptName)) return undefined;
  if (!ROUTES.some((route) => route.pattern.exec(pathInfo)?.index === 0)) return undefined;
  return (
    `the front end put the repository into SCRIPT_NAME (${scriptName}) and left PATH_INFO ${pathInfo}: ` +
    `lighttpd mounted at "/" does this unless its fastcgi.server has "fix-root-scriptname" => "enable"`
  );
}

/**
 * With nginx's stock fastcgi_params SCRIPT_NAME is the whole $uri, which must then be kept
 * rather than stripped to nothing; only a prefix ending at a '/' boundary is removed.
 */
function stripScriptName(uri: string, scriptName: string | undefined): string {
  const prefix = scriptName?.endsWith('/') ? scriptName.slice(0, -1) : scriptName;
  if (!prefix || uri.length <= prefix.length || !uri.startsWith(prefix)) return uri;
  return uri[prefix.length] === '/' ? uri.slice(prefix.length) : uri;
}

function decodeRequestPath(requestUri: string): string | undefined {
  let raw = requestUri;
  const query = raw.indexOf('?');
  if (query !== -1) raw = raw.slice(0, query);
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(raw);
  if (absolute) raw = raw.slice(absolute[0].length) || '/';
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/**
 * Validates the path and maps it onto one of git http-backend's routes, refusing what git
 * http-backend refuses as it does: no route is 404; a route with another method is 405 with
 * Allow (400 when the request is not HTTP/1.1, as git's bad_request() answers).
 */
export function parseGitTarget(
  pathInfo: string,
  queryString: string,
  method: string,
  serverProtocol = 'HTTP/1.1',
): GitTarget {
  const relative = checkPath(pathInfo);
  const normalized = `/${relative}`;
  for (const route of ROUTES) {
    const match = route.pattern.exec(normalized);
    if (!match) continue;
    if (route.method !== (method === 'HEAD' ? 'GET' : method)) {
      if (serverProtocol !== 'HTTP/1.1') {
        throw new GitFcgiError('ERR_METHOD', `${method} ${normalized}: allowed ${route.method}`, {
          status: 400,
        });
      }
      const allow = route.method === 'GET' ? 'GET, HEAD' : 'POST';
      throw new GitFcgiError('ERR_METHOD', `${method} ${normalized}: allowed ${allow}`, {
        status: 405,
        headers: [['Allow', allow]],
      });
    }
    const repo = normalized.slice(1, match.index);
    if (repo === '') throw notFound(`${normalized}: no repository before the route`);
    const service = route.rpc ?? (route.infoRefs ? serviceFromQuery(queryString) : null);
    const kind = route.rpc ? 'smart-rpc' : service ? 'smart-refs' : 'dumb';
    return { pathInfo: normalized, repo, service, access: accessOf(service), kind };
  }
  throw notFound(`${normalized}: not a git http-backend route`);
}

/** Returns the path without its leading '/', or throws ERR_BAD_PATH. */
function checkPath(pathInfo: string): string {
  if (Buffer.byteLength(pathInfo) > MAX_PATH_BYTES) throw badPath(`path longer than ${MAX_PATH_BYTES} bytes`);
  if (FORBIDDEN_CHAR.test(pathInfo)) throw badPath(`forbidden character in ${JSON.stringify(pathInfo)}`);
  if (DOUBLE_ENCODED.test(pathInfo)) throw badPath(`double-encoded character in ${JSON.stringify(pathInfo)}`);
  const relative = pathInfo.startsWith('/') ? pathInfo.slice(1) : pathInfo;
  if (relative === '') throw notFound('empty path');
  for (const segment of relative.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw badPath(`empty, '.' or '..' segment in ${JSON.stringify(pathInfo)}`);
    }
    // Never let a path component be mistaken for an option by a tool it reaches.
    if (segment.startsWith('-')) throw badPath(`segment starting with '-' in ${JSON.stringify(pathInfo)}`);
  }
  return relative;
}

/**
 * git reads the last `service` and stops at a NUL; refusing NULs, empty or unknown values and
 * disagreeing repeats means git can never see a service other than the one authorised here.
 */
function serviceFromQuery(queryString: string): GitService | null {
  let service: GitService | undefined;
  for (const [name, value] of new URLSearchParams(queryString)) {
    if (name.includes('\0') || value.includes('\0')) throw badRequest('NUL in the query string');
    if (name !== 'service') continue;
    // git http-backend's select_service(): 403 for a service it does not know.
    if (!isService(value)) {
      throw new GitFcgiError('ERR_FORBIDDEN', `unsupported service ${JSON.stringify(value)}`, {
        status: 403,
      });
    }
    if (service !== undefined && service !== value) throw badRequest('conflicting service parameters');
    service = value;
  }
  return service ?? null;
}

function isService(value: string): value is GitService {
  return SERVICES.has(value);
}

function accessOf(service: GitService | null): 'read' | 'write' {
  return service === 'git-receive-pack' ? 'write' : 'read';
}

function notFound(message: string, cause?: unknown): GitFcgiError {
  return new GitFcgiError(
    'ERR_NOT_FOUND',
    message,
    cause === undefined ? { status: 404 } : { status: 404, cause },
  );
}

function badPath(message: string): GitFcgiError {
  return new GitFcgiError('ERR_BAD_PATH', message, { status: 400 });
}

function badRequest(message: string): GitFcgiError {
  return new GitFcgiError('ERR_BAD_REQUEST', message, { status: 400 });
}
