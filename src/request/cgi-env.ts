import { sanitizeGitProtocol } from './git-protocol.js';

/** What the backend's environment is built from, besides the request's params. */
export interface BackendEnvOptions {
  readonly projectRoot: string;
  readonly exportAll: boolean;
  readonly pathInfo: string;
  readonly requestId: string;
  readonly maxRequestBufferBytes: number | null;
  /** Extra `git -c` style settings passed through GIT_CONFIG_COUNT/KEY/VALUE. */
  readonly gitConfig: ReadonlyArray<readonly [key: string, value: string]>;
  readonly serverSoftware: string;
  /** HOME for git (the serving user's home by default, so ~/.gitconfig is read); null: unset. */
  readonly home: string | null;
  /** The admin's own variables ([env]), set before the request's: never one git-fcgi sets. */
  readonly adminEnv: Readonly<Record<string, string>>;
  /** Set by access control: replaces the front end's REMOTE_USER (null: none). */
  readonly remoteUser?: string | null;
  /** Added last: the identity hooks see (GIT_FCGI_USER, GIT_FCGI_GROUPS, GIT_FCGI_REPO, ...). */
  readonly extraEnv?: Readonly<Record<string, string>>;
}

/** The only PATH a backend ever sees: the daemon's own PATH is not trusted. */
export const BACKEND_PATH = '/usr/local/bin:/usr/bin:/bin';

/** CGI variables copied from the front end's params when present (RFC 3875 section 4.1). */
const PASSED_PARAMS = [
  'REQUEST_METHOD',
  'QUERY_STRING',
  'CONTENT_TYPE',
  'SERVER_PROTOCOL',
  'SERVER_NAME',
  'SERVER_PORT',
  'SERVER_ADDR',
  'REMOTE_ADDR',
  'REMOTE_PORT',
  'REMOTE_HOST',
  'AUTH_TYPE',
  'REQUEST_URI',
  'SCRIPT_NAME',
  'HTTPS',
] as const;

/**
 * git's own variables a front end may set for a location (git-http-backend(1): `SetEnv`,
 * `fastcgi_param`), passed as they come, empty values included: git tells set from unset.
 * GIT_PROTOCOL and GIT_HTTP_EXPORT_ALL have rules of their own below.
 */
export const FRONT_END_GIT_VARIABLES = [
  'GIT_COMMITTER_NAME',
  'GIT_COMMITTER_EMAIL',
  'GIT_NAMESPACE',
  'GIT_HTTP_MAX_REQUEST_BUFFER',
] as const;

/**
 * Request headers that must never reach the backend: HTTP_PROXY is the httpoxy hole (a
 * client-chosen proxy for anything the backend fetches), and credentials are none of git's business.
 */
const BLOCKED_HEADERS = new Set([
  'HTTP_PROXY',
  'HTTP_AUTHORIZATION',
  'HTTP_PROXY_AUTHORIZATION',
  'HTTP_COOKIE',
]);

const HEADER_PARAM = /^HTTP_[A-Z0-9_]+$/;
const DIGITS = /^\d+$/;

/**
 * Builds git http-backend's environment from scratch: an allowlist of CGI params, the request
 * headers, and git's own variables. Nothing of the daemon's environment is inherited.
 */
export function buildBackendEnv(
  params: ReadonlyMap<string, string>,
  options: BackendEnvOptions,
): Record<string, string> {
  // The admin's [env] may replace PATH and LC_ALL; config loading refuses every name set below.
  const env: Record<string, string> = { PATH: BACKEND_PATH, LC_ALL: 'C', ...options.adminEnv };
  Object.assign(env, {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: options.serverSoftware,
    PATH_INFO: options.pathInfo,
    GIT_PROJECT_ROOT: options.projectRoot,
    GIT_FCGI_REQUEST_ID: options.requestId,
  });
  if (options.home !== null) env.HOME = options.home;
  for (const name of PASSED_PARAMS) {
    const value = params.get(name);
    if (value !== undefined && value !== '') env[name] = value;
  }
  if (options.maxRequestBufferBytes !== null) {
    env.GIT_HTTP_MAX_REQUEST_BUFFER = String(options.maxRequestBufferBytes);
  }
  for (const name of FRONT_END_GIT_VARIABLES) {
    const value = params.get(name);
    if (value !== undefined) env[name] = value;
  }
  for (const [name, value] of params) {
    if (HEADER_PARAM.test(name) && !BLOCKED_HEADERS.has(name)) env[name] = value;
  }
  const contentLength = params.get('CONTENT_LENGTH');
  if (contentLength !== undefined && DIGITS.test(contentLength)) env.CONTENT_LENGTH = contentLength;
  // git http-backend only allows pushes when REMOTE_USER is non-empty; an empty one is no user.
  const user = options.remoteUser !== undefined ? options.remoteUser : params.get('REMOTE_USER');
  if (user) env.REMOTE_USER = user;
  // git checks GIT_HTTP_EXPORT_ALL for presence, so nginx's `fastcgi_param GIT_HTTP_EXPORT_ALL ""` counts.
  if (options.exportAll || params.has('GIT_HTTP_EXPORT_ALL')) env.GIT_HTTP_EXPORT_ALL = '1';
  // A GIT_PROTOCOL param, even empty, is the front end's word (an empty one is git's documented
  // way to force protocol v0): git http-backend then ignores the Git-Protocol header.
  const fromFrontEnd = params.get('GIT_PROTOCOL');
  const header = sanitizeGitProtocol(params.get('HTTP_GIT_PROTOCOL'));
  if (header === undefined) delete env.HTTP_GIT_PROTOCOL;
  if (fromFrontEnd !== undefined) env.GIT_PROTOCOL = sanitizeGitProtocol(fromFrontEnd) ?? '';
  // git < 2.34 does not copy the header into GIT_PROTOCOL itself.
  else if (header !== undefined) env.GIT_PROTOCOL = header;
  if (options.gitConfig.length > 0) {
    env.GIT_CONFIG_COUNT = String(options.gitConfig.length);
    options.gitConfig.forEach(([key, value], i) => {
      env[`GIT_CONFIG_KEY_${i}`] = key;
      env[`GIT_CONFIG_VALUE_${i}`] = value;
    });
  }
  if (options.extraEnv !== undefined) Object.assign(env, options.extraEnv);
  return env;
}

/**
 * Names the admin's [env] may not set: what git-fcgi sets for each request (CGI variables,
 * request headers, git's variables above, its own), what has a setting of its own (HOME: home,
 * GIT_PROJECT_ROOT: project_root, ...), and what would move git away from the repository
 * git-fcgi located and checked (GIT_DIR, GIT_OBJECT_DIRECTORY, ...).
 */
export function reservedEnvName(name: string): string | null {
  if (name === 'HOME') return 'set by [git] home';
  if (name === 'GIT_PROJECT_ROOT') return 'set by [git] project_root';
  if (name === 'GIT_HTTP_EXPORT_ALL') return 'set by [git] export_all';
  if (name === 'GIT_HTTP_MAX_REQUEST_BUFFER') return 'set by [git] max_request_buffer';
  if (/^GIT_CONFIG_(?:COUNT|KEY_\d+|VALUE_\d+)$/.test(name))
    return 'used by git-fcgi for its own git settings';
  if (name.startsWith('GIT_FCGI_')) return "git-fcgi's own";
  if (HEADER_PARAM.test(name) || CGI_VARIABLES.has(name)) return 'a CGI variable, set per request';
  if ((FRONT_END_GIT_VARIABLES as readonly string[]).includes(name) || name === 'GIT_PROTOCOL') {
    return 'set per request by the front end (fastcgi_param, SetEnv)';
  }
  if (REPOSITORY_VARIABLES.has(name)) return 'would move git away from the repository git-fcgi located';
  return null;
}

const CGI_VARIABLES: ReadonlySet<string> = new Set([
  ...PASSED_PARAMS,
  'GATEWAY_INTERFACE',
  'SERVER_SOFTWARE',
  'PATH_INFO',
  'PATH_TRANSLATED',
  'CONTENT_LENGTH',
  'REMOTE_USER',
]);

const REPOSITORY_VARIABLES: ReadonlySet<string> = new Set([
  'GIT_DIR',
  'GIT_WORK_TREE',
  'GIT_COMMON_DIR',
  'GIT_OBJECT_DIRECTORY',
  'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_INDEX_FILE',
  'GIT_CEILING_DIRECTORIES',
  'GIT_DISCOVERY_ACROSS_FILESYSTEM',
  'GIT_QUARANTINE_PATH',
]);
