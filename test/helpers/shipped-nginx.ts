import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { repoRoot } from './daemon.js';
import type { NginxConfig } from './nginx-conf.js';
import { tmpDir } from './tmp.js';

/** Debian's fastcgi_params: it sends `REMOTE_USER $remote_user` for every location that includes it. */
export const DEBIAN_FASTCGI_PARAMS = '/etc/nginx/fastcgi_params';

/**
 * nginx's own conf/fastcgi_params (what nginx.org's packages install) has no REMOTE_USER line: Debian's
 * without it. The shipped config must be safe and work with either.
 */
export async function fastcgiParamsWithoutRemoteUser(t: Cleanup): Promise<string> {
  const debian = await readFile(DEBIAN_FASTCGI_PARAMS, 'utf8');
  const without = debian.replace(/^\s*fastcgi_param\s+REMOTE_USER\s.*\n/m, '');
  assert.notEqual(without, debian, `${DEBIAN_FASTCGI_PARAMS} has a REMOTE_USER line to remove`);
  const file = join(await tmpDir(t, 'fastcgi-params-'), 'fastcgi_params');
  await writeFile(file, without);
  return file;
}

export interface ShippedNginxOptions {
  /** The project root (replaces /srv/git). */
  readonly root: string;
  /** The htpasswd file (replaces /etc/nginx/git.htpasswd). */
  readonly htpasswd: string;
  /** git-fcgi's socket (replaces /run/git-fcgi/git-fcgi.sock). */
  readonly socket: string;
  /** The file `include fastcgi_params;` reads; Debian's by default. */
  readonly fastcgiParams?: string;
  /**
   * `htpasswd`: the variant the config describes for git-fcgi's `[auth] mode = htpasswd`: the block
   * between the `FRONT-END AUTH` markers deleted.
   */
  readonly variant?: 'nginx-auth' | 'htpasswd';
  /** The `upstream` block's name is made unique per config when several are loaded at once. */
  readonly upstreamSuffix?: string;
}

export interface ShippedNginx {
  /** What goes inside `server { }`, for startNginx's `servers[].locations`. */
  readonly server: string;
  /** What the file has outside the server block (the upstream), for `httpExtra`. */
  readonly http: string;
}

/**
 * etc/nginx/git-fcgi.conf as an admin pastes it: only what its comments mark CHANGE (and the listen
 * address, which the harness picks) is replaced; everything else runs as shipped.
 */
export async function shippedNginx(opts: ShippedNginxOptions): Promise<ShippedNginx> {
  const example = await readFile(join(repoRoot, 'etc', 'nginx', 'git-fcgi.conf'), 'utf8');
  const serverAt = example.search(/^server \{$/m);
  assert.ok(serverAt >= 0, 'the example has a server block');
  const body = /^server \{\n([\s\S]*)\n\}\s*$/.exec(example.slice(serverAt))?.[1];
  assert.ok(body, 'the example ends with one server block');
  let server = body;
  if (opts.variant === 'htpasswd') {
    const marked = /^[ \t]*# FRONT-END AUTH:[^\n]*\n[\s\S]*?^[ \t]*# END FRONT-END AUTH[^\n]*\n/gm;
    assert.equal(server.match(marked)?.length, 1, 'one FRONT-END AUTH block');
    server = server.replace(marked, '');
  }
  const upstream = (text: string): string =>
    opts.upstreamSuffix === undefined ? text : text.replaceAll('git_fcgi', `git_fcgi_${opts.upstreamSuffix}`);
  const substitute = (text: string): string =>
    upstream(text)
      .replace(/^\s*listen 80;$/m, '')
      .replaceAll('/srv/git;', `${opts.root};`)
      .replaceAll('/etc/nginx/git.htpasswd', opts.htpasswd)
      .replaceAll('unix:/run/git-fcgi/git-fcgi.sock', `unix:${opts.socket}`)
      // nginx resolves relative includes against its prefix; the test runs with its own prefix.
      .replace(/include\s+fastcgi_params;/g, `include ${opts.fastcgiParams ?? DEBIAN_FASTCGI_PARAMS};`);
  server = substitute(server);
  const http = substitute(example.slice(0, serverAt));
  for (const original of ['/srv/git;', '/etc/nginx/git.htpasswd', 'unix:/run/git-fcgi/git-fcgi.sock']) {
    assert.ok(!server.includes(original) && !http.includes(original), `${original} was substituted`);
  }
  return { server, http };
}

/** Several shipped servers in one nginx: their `http` parts joined. */
export function shippedNginxConfig(servers: readonly ShippedNginx[]): NginxConfig {
  return {
    servers: servers.map((s) => ({ locations: s.server })),
    httpExtra: servers.map((s) => s.http).join('\n'),
  };
}

/** An `Authorization: Basic` header for `user:password`, checked by nobody unless the front end does. */
export function basicAuth(user: string, password: string): Record<string, string> {
  return { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}
