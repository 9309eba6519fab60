import { join } from 'node:path';

/**
 * How Apache 2.4's mod_proxy_fcgi talks to a FastCGI server, as measured on Debian 12 (Apache 2.4.71) with a
 * FastCGI echo server; it shapes the directives below:
 *
 * - No PATH_INFO: SCRIPT_NAME is the whole decoded path (`/demo.git/info/refs`), REQUEST_URI the raw one with
 *   the query, SCRIPT_FILENAME `proxy:fcgi://localhost/demo.git/info/refs`. git-fcgi derives PATH_INFO from
 *   REQUEST_URI. (`SetEnv proxy-fcgi-pathinfo ...` would make Apache guess one; not needed.)
 * - Every request header arrives as HTTP_*: the client's `Git-Protocol` header is HTTP_GIT_PROTOCOL without
 *   any directive, and git-fcgi (like git http-backend >= 2.34) reads it. Authorization is never passed (it
 *   would take `CGIPassAuth On`); REMOTE_USER and AUTH_TYPE are sent once an Auth* directive checked the user.
 * - Every SetEnv variable is a param, an empty one too: `SetEnv GIT_PROTOCOL ""` sends GIT_PROTOCOL with an
 *   empty value, which is how a server forces protocol v0 (git http-backend copies HTTP_GIT_PROTOCOL only
 *   into an unset GIT_PROTOCOL). `SetEnv GIT_HTTP_EXPORT_ALL` without a value is sent empty as well.
 * - Apache's own environment leaks in as params (PATH, and whatever it was started with); git-fcgi does
 *   not pass PATH on.
 * - Request bodies are streamed as they arrive; a chunked one comes without CONTENT_LENGTH.
 * - Without `flushpackets=on` the response is held until the FastCGI server ends it or a buffer fills:
 *   progress and keep-alive lines reach the client late (measured: a line written 2 s before the end
 *   arrived with the end). With it every STDOUT record is flushed, like nginx's `fastcgi_buffering off`.
 * - The proxy timeout (`timeout=` on ProxyPass, else ProxyTimeout, else Timeout: 60 s) is the longest
 *   silence from the FastCGI server; after it Apache breaks off the response (AH01075) even when headers
 *   were sent. pack-objects can be silent for minutes on a large repository.
 * - LimitRequestBody defaults to 1 GiB since Apache 2.4.54 (413 beyond it): pushes need `0`.
 * - BEGIN_REQUEST comes without FCGI_KEEP_CONN: connection reuse (`enablereuse`) is off by default for fcgi.
 */

/** One `<VirtualHost>` listening on its own ephemeral port. */
export interface ApacheVhost {
  /** Raw directives inside `<VirtualHost>`, typically from gitVhost(). */
  readonly body: string;
}

export interface ApacheConfig {
  readonly vhosts: readonly ApacheVhost[];
  /** `LogLevel`, e.g. `info proxy_fcgi:trace1`; default `info`. */
  readonly logLevel?: string;
  /** Apache refuses to serve as root: its children run as this account when started as root. */
  readonly runAs?: { readonly user: string; readonly group: string };
}

export const MODULES_DIR = '/usr/lib/apache2/modules';

// Only what a git front end needs; nothing from /etc/apache2.
const MODULES = [
  'mpm_event',
  'authz_core',
  'authn_core',
  'authn_file',
  'authz_user',
  // `Require local` (etc/apache/git-fcgi.conf's ping and status pages).
  'authz_host',
  'auth_basic',
  'env',
  'proxy',
  'proxy_fcgi',
] as const;

/**
 * A double-quoted Apache config argument. Apache expands `${VAR}` and treats `\` as an escape; test paths
 * and values never need them, so refuse them instead of escaping.
 */
export function q(value: string): string {
  // eslint-disable-next-line no-control-regex -- a control character would end or corrupt the line
  if (/["\\\x00-\x1f\x7f]|\$\{/.test(value))
    throw new Error(`unsupported characters for an Apache config: ${value}`);
  return `"${value}"`;
}

export const errorLogPath = (prefix: string): string => join(prefix, 'error.log');
export const pidPath = (prefix: string): string => join(prefix, 'httpd.pid');
export const confPath = (prefix: string): string => join(prefix, 'httpd.conf');

/** A self-contained httpd.conf: every file Apache writes lies inside `prefix`. */
export function renderApacheConf(prefix: string, ports: readonly number[], config: ApacheConfig): string {
  const vhosts = config.vhosts.map((vhost, i) => {
    const port = ports[i];
    if (port === undefined) throw new Error(`no port for vhost ${i}`);
    return [`Listen 127.0.0.1:${port}`, `<VirtualHost 127.0.0.1:${port}>`, vhost.body, '</VirtualHost>'].join(
      '\n',
    );
  });
  return [
    `ServerRoot ${q(prefix)}`,
    'ServerName 127.0.0.1',
    `PidFile ${q(pidPath(prefix))}`,
    `DefaultRuntimeDir ${q(prefix)}`,
    `DocumentRoot ${q(prefix)}`,
    `ErrorLog ${q(errorLogPath(prefix))}`,
    `LogLevel ${config.logLevel ?? 'info'}`,
    ...(config.runAs === undefined ? [] : [`User ${config.runAs.user}`, `Group ${config.runAs.group}`]),
    ...MODULES.map((m) => `LoadModule ${m}_module ${q(join(MODULES_DIR, `mod_${m}.so`))}`),
    // One child with a few threads is plenty for tests on a shared machine.
    'StartServers 1',
    'ServerLimit 2',
    'ThreadsPerChild 16',
    'MaxRequestWorkers 32',
    'MinSpareThreads 4',
    'MaxSpareThreads 32',
    ...vhosts,
    '',
  ].join('\n');
}

export interface GitVhostOptions {
  /** git-fcgi's UNIX socket. */
  readonly socket: string;
  readonly projectRoot?: string;
  /** `SetEnv GIT_HTTP_EXPORT_ALL ""`, as git's documentation writes it. */
  readonly exportAll?: boolean;
  /**
   * Basic auth: `all` for every request, `push` only for pushes (both the ref advertisement with
   * `service=git-receive-pack` and the POST to git-receive-pack, the two requests git's documentation
   * protects; protecting only the POST makes the advertisement answer 403 and git never sends credentials).
   */
  readonly auth?: { readonly htpasswdFile: string; readonly scope: 'all' | 'push' };
  /** `SetEnv NAME "VALUE"` lines; an empty value sends an empty param. */
  readonly setEnv?: Readonly<Record<string, string>>;
  /** More raw directives, before ProxyPass. */
  readonly extra?: string;
}

/** The directives an admin writes to serve git through git-fcgi with mod_proxy_fcgi. */
export function gitVhost(opts: GitVhostOptions): string {
  const lines = ['LimitRequestBody 0'];
  if (opts.projectRoot !== undefined) lines.push(`SetEnv GIT_PROJECT_ROOT ${q(opts.projectRoot)}`);
  if (opts.exportAll === true) lines.push('SetEnv GIT_HTTP_EXPORT_ALL ""');
  for (const [name, value] of Object.entries(opts.setEnv ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`bad variable name ${name}`);
    lines.push(`SetEnv ${name} ${q(value)}`);
  }
  if (opts.auth !== undefined) {
    const auth = [
      'AuthType Basic',
      'AuthName "git"',
      `AuthUserFile ${q(opts.auth.htpasswdFile)}`,
      'Require valid-user',
    ].map((l) => `  ${l}`);
    const where =
      opts.auth.scope === 'all'
        ? '<Location "/">'
        : `<If "%{QUERY_STRING} =~ /service=git-receive-pack/ || %{REQUEST_URI} =~ m#/git-receive-pack$#">`;
    lines.push(where, ...auth, opts.auth.scope === 'all' ? '</Location>' : '</If>');
  }
  if (opts.extra !== undefined) lines.push(opts.extra);
  // `unix:PATH|fcgi://localhost/`: the socket, then the URL whose path the request's path is appended to.
  lines.push(`ProxyPass "/" ${q(`unix:${opts.socket}|fcgi://localhost/`)} flushpackets=on timeout=600`);
  return lines.map((l) => `  ${l}`).join('\n');
}
