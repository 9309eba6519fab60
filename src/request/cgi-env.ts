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
  'GIT_NAMESPACE',
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
  const env: Record<string, string> = {
    PATH: BACKEND_PATH,
    LC_ALL: 'C',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: options.serverSoftware,
    PATH_INFO: options.pathInfo,
    GIT_PROJECT_ROOT: options.projectRoot,
    GIT_FCGI_REQUEST_ID: options.requestId,
  };
  for (const name of PASSED_PARAMS) {
    const value = params.get(name);
    if (value !== undefined && value !== '') env[name] = value;
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
  const protocol = sanitizeGitProtocol(params.get('GIT_PROTOCOL') || params.get('HTTP_GIT_PROTOCOL'));
  if (protocol !== undefined) env.GIT_PROTOCOL = protocol;
  else delete env.HTTP_GIT_PROTOCOL;
  if (options.maxRequestBufferBytes !== null) {
    env.GIT_HTTP_MAX_REQUEST_BUFFER = String(options.maxRequestBufferBytes);
  }
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
