import { join } from 'node:path';

export interface NginxServer {
  /** Raw directives inside `server { }`, typically one or more `location` blocks. */
  readonly locations: string;
  /** More raw server-level directives, placed after `locations`. */
  readonly extra?: string;
}

export interface NginxConfig {
  readonly servers: readonly NginxServer[];
  /** Raw directives inside `http { }`, before the servers. */
  readonly httpExtra?: string;
  readonly workerProcesses?: number;
  /**
   * The workers' user; root unless given. Another user's workers meet the permissions a real
   * install has (the socket's owner and mode); the prefix is then opened up for them.
   */
  readonly user?: string;
}

/**
 * nginx takes paths unquoted and expands `$` in many values; test paths never need the unusual characters,
 * so refuse them instead of quoting.
 */
export function confPath(value: string): string {
  if (!/^[\w./@+:,=~-]+$/.test(value)) throw new Error(`unsupported characters for nginx.conf: ${value}`);
  return value;
}

export const errorLogPath = (prefix: string): string => join(prefix, 'error.log');
export const pidPath = (prefix: string): string => join(prefix, 'nginx.pid');

/** A self-contained nginx.conf: every path nginx writes to lies inside `prefix`. */
export function renderConf(prefix: string, ports: readonly number[], config: NginxConfig): string {
  const p = (name: string): string => confPath(join(prefix, name));
  const servers = config.servers.map((server, i) => {
    const port = ports[i];
    if (port === undefined) throw new Error(`no port for server ${i}`);
    return `  server {\n    listen 127.0.0.1:${port};\n${server.locations}\n${server.extra ?? ''}\n  }`;
  });
  return [
    'daemon off;', // run in the foreground so the harness owns the master process and its group
    // Tests run as root; without this workers become nobody and cannot reach temp dirs.
    `user ${config.user ?? 'root'};`,
    `worker_processes ${config.workerProcesses ?? 1};`,
    `pid ${confPath(pidPath(prefix))};`,
    `error_log ${confPath(errorLogPath(prefix))} info;`,
    'events { worker_connections 256; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${p('client_body')};`,
    `  fastcgi_temp_path ${p('fastcgi')};`,
    `  proxy_temp_path ${p('proxy')};`,
    `  uwsgi_temp_path ${p('uwsgi')};`,
    `  scgi_temp_path ${p('scgi')};`,
    config.httpExtra ?? '',
    ...servers,
    '}',
    '',
  ].join('\n');
}

export interface GitLocationOptions {
  /** git-fcgi's UNIX socket. */
  readonly socket: string;
  readonly projectRoot?: string;
  readonly exportAll?: boolean;
  readonly auth?: { readonly htpasswdFile: string };
  /** More directives inside the location, before fastcgi_pass. */
  readonly extra?: string;
  /** The location's match; '/' unless given. */
  readonly path?: string;
}

/** The location block the documentation recommends for serving git through git-fcgi. */
export function gitLocation(opts: GitLocationOptions): string {
  const lines = [
    'client_max_body_size 0;',
    'include /etc/nginx/fastcgi_params;',
    'fastcgi_param PATH_INFO $uri;',
    'fastcgi_param REMOTE_USER $remote_user;',
    'fastcgi_param GIT_PROTOCOL $http_git_protocol;',
    'fastcgi_read_timeout 600s;',
    'fastcgi_request_buffering off;',
    'client_body_buffer_size 64k;',
    'fastcgi_buffering off;',
    'fastcgi_buffer_size 64k;',
    'fastcgi_buffers 4 64k;',
  ];
  if (opts.projectRoot !== undefined)
    lines.push(`fastcgi_param GIT_PROJECT_ROOT ${confPath(opts.projectRoot)};`);
  if (opts.exportAll === true) lines.push('fastcgi_param GIT_HTTP_EXPORT_ALL "";');
  if (opts.auth !== undefined) {
    lines.push('auth_basic "git";', `auth_basic_user_file ${confPath(opts.auth.htpasswdFile)};`);
  }
  if (opts.extra !== undefined) lines.push(opts.extra);
  lines.push(`fastcgi_pass unix:${confPath(opts.socket)};`);
  return `    location ${confPath(opts.path ?? '/')} {\n${lines.map((l) => `      ${l}`).join('\n')}\n    }`;
}
