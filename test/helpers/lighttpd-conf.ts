import { join } from 'node:path';

/**
 * How lighttpd 1.4.69 (Debian 12) mod_fastcgi talks to a FastCGI server, measured with a FastCGI echo
 * server; etc/lighttpd/git-fcgi.conf is shaped by it:
 *
 * - Mounted at "/" (`fastcgi.server = ( "/" => ...)`) the path is split after its first segment:
 *   `/demo.git/info/refs` comes as SCRIPT_NAME=/demo.git, PATH_INFO=/info/refs, and `/team/app.git/info/refs`
 *   as SCRIPT_NAME=/team, PATH_INFO=/app.git/info/refs. `"fix-root-scriptname" => "enable"` sends
 *   SCRIPT_NAME empty and the whole path as PATH_INFO (gw_backend.c, "if prefix = /, and fix-root-path-name").
 * - Every request header arrives as HTTP_* (Proxy aside), Authorization included, and Git-Protocol as
 *   HTTP_GIT_PROTOCOL. REMOTE_USER and AUTH_TYPE come only from mod_auth, after it checked a password;
 *   `setenv.add-environment` variables are params.
 * - Request bodies: with `server.stream-request-body = 0` (the default) the whole body is received first (in
 *   server.upload-dirs), then sent with CONTENT_LENGTH, a chunked one too. With 1 or 2 a chunked body is
 *   answered "411 Length Required" (gw_backend.c: "CGI environment requires that Content-Length be set").
 * - Responses are collected whole unless `server.stream-response-body` is 1 or 2; with 2 lighttpd reads the
 *   FastCGI server only as fast as the client takes the response.
 * - Once the response has started (streamed), `server.max-write-idle` (default 360 s) is also the longest
 *   silence from the FastCGI server: after it the response is cut off. Before the first byte there is no
 *   limit unless the fastcgi.server host has a "read-timeout".
 * - BEGIN_REQUEST comes without FCGI_KEEP_CONN: one connection per request.
 */

export const LIGHTTPD = '/usr/sbin/lighttpd';

export const confPath = (prefix: string): string => join(prefix, 'lighttpd.conf');
export const sitePath = (prefix: string): string => join(prefix, 'git-fcgi.conf');
export const errorLogPath = (prefix: string): string => join(prefix, 'error.log');
export const pidPath = (prefix: string): string => join(prefix, 'lighttpd.pid');

/** A lighttpd config string; test paths never need escaping, so refuse what would. */
export function q(value: string): string {
  // eslint-disable-next-line no-control-regex -- a control character would end or corrupt the line
  if (/["\\\x00-\x1f\x7f]/.test(value)) throw new Error(`unsupported characters for lighttpd: ${value}`);
  return `"${value}"`;
}

export interface MainConfig {
  readonly port: number;
  /** `server.upload-dirs`: where request bodies are spooled; the serving account must write there. */
  readonly uploadsDir: string;
  /** `server.username`/`groupname`: lighttpd started as root serves as this account. */
  readonly runAs?: { readonly user: string; readonly group: string };
}

/**
 * The main config Debian's lighttpd.conf would be, reduced to what a git site needs and with every file inside
 * `prefix`; it includes the site (the shipped git-fcgi.conf) the way conf-enabled/ does.
 */
export function renderMainConf(prefix: string, config: MainConfig): string {
  return [
    // Debian's default modules, in its order: the site adds its own with +=.
    'server.modules = ( "mod_indexfile", "mod_access", "mod_alias", "mod_redirect" )',
    `server.document-root = ${q(join(prefix, 'htdocs'))}`,
    `server.upload-dirs = ( ${q(config.uploadsDir)} )`,
    `server.errorlog = ${q(errorLogPath(prefix))}`,
    `server.pid-file = ${q(pidPath(prefix))}`,
    ...(config.runAs === undefined
      ? []
      : [`server.username = ${q(config.runAs.user)}`, `server.groupname = ${q(config.runAs.group)}`]),
    'server.bind = "127.0.0.1"',
    `server.port = ${config.port}`,
    // Debian's URL normalisation: what reaches git-fcgi is what it would be on a Debian host.
    'server.http-parseopts = ( "header-strict" => "enable", "host-strict" => "enable",',
    '  "host-normalize" => "enable", "url-normalize-unreserved" => "enable",',
    '  "url-normalize-required" => "enable", "url-ctrls-reject" => "enable",',
    '  "url-path-2f-decode" => "enable", "url-path-dotseg-remove" => "enable" )',
    'debug.log-timeouts = "enable"',
    `include ${q(sitePath(prefix))}`,
    'server.modules += ( "mod_dirlisting", "mod_staticfile" )',
    '',
  ].join('\n');
}
