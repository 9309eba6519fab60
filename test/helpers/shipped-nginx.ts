import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import type { NginxConfig } from './nginx-conf.js';
import { shippedConfig, withoutFrontEndAuth } from './shipped-config.js';
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
   * `htpasswd`: the variant the config describes for git-fcgi's `[auth] mode = htpasswd`, without the
   * block between its two `# ---- 8< ----` lines.
   */
  readonly variant?: 'nginx-auth' | 'htpasswd';
  /** A suffix for the `upstream` block's name, unique per config when several are loaded at once. */
  readonly upstreamSuffix?: string;
  /** Where nginx/git-fcgi.conf is read from: etc/ unless given (a package's examples directory). */
  readonly examplesDir?: string;
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
  const pasted = await shippedConfig(
    'nginx/git-fcgi.conf',
    [
      ['/srv/git;', `${opts.root};`],
      ['/etc/nginx/git.htpasswd', opts.htpasswd],
      ['unix:/run/git-fcgi/git-fcgi.sock', `unix:${opts.socket}`],
      // nginx resolves relative includes against its prefix; the test runs with its own prefix.
      ['include       fastcgi_params;', `include ${opts.fastcgiParams ?? DEBIAN_FASTCGI_PARAMS};`],
      ['    listen 80;\n', ''],
    ],
    opts.examplesDir,
  );
  let example = opts.variant === 'htpasswd' ? withoutFrontEndAuth(pasted) : pasted;
  if (opts.upstreamSuffix !== undefined) {
    example = example.replaceAll('git_fcgi_socket', `git_fcgi_socket_${opts.upstreamSuffix}`);
  }
  const serverAt = example.search(/^server \{$/m);
  assert.ok(serverAt >= 0, 'the example has a server block');
  const server = /^server \{\n([\s\S]*)\n\}\s*$/.exec(example.slice(serverAt))?.[1];
  assert.ok(server, 'the example ends with one server block');
  return { server, http: example.slice(0, serverAt) };
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
