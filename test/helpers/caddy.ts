import assert from 'node:assert/strict';
import { chmod, chown, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { repoRoot } from './daemon.js';
import { assertNoProcessesWithArg, processesWithArg, startOnFreePort } from './front-end.js';
import { run, startProcess } from './proc.js';
import { tmpDir } from './tmp.js';

/**
 * Caddy 2 (Debian 12: 2.6.2) in front of git-fcgi, started from the shipped etc/caddy/Caddyfile.
 * What its `reverse_proxy … { transport fastcgi }` sends, measured with a FastCGI server that logs
 * every record:
 *
 * - PATH_INFO = the whole path, SCRIPT_NAME and DOCUMENT_URI empty, REQUEST_URI with the query,
 *   SCRIPT_FILENAME = root (the site's root or the current directory).
 * - CONTENT_LENGTH "0" on a GET, the header's value on a body with Content-Length, "-1" on a
 *   chunked body (streamed as it arrives).
 * - REMOTE_USER only from basicauth (a login Caddy checked), empty otherwise; AUTH_TYPE empty.
 * - Every request header as HTTP_*, the Authorization header included; X-Forwarded-For/-Host/-Proto
 *   added. `env NAME VALUE` lines as params.
 * - A new connection for every request, BEGIN_REQUEST without FCGI_KEEP_CONN.
 * - The response is held in a buffer until it fills or ends unless `flush_interval -1`; the
 *   transport's read_timeout/write_timeout are deadlines for the whole exchange.
 */

export const CADDY = '/usr/bin/caddy';
export const SHIPPED_CADDYFILE = join(repoRoot, 'etc', 'caddy', 'Caddyfile');

/** Caddy runs as this account when the tests run as root, as Debian's caddy.service does. */
export const caddyRunAs = (): string | undefined => (process.getuid?.() === 0 ? 'caddy' : undefined);

/** git-fcgi's `--socket-owner`, so that Caddy (group caddy) may connect to the 0660 socket. */
export function caddySocketOwnerArgs(): string[] {
  const user = caddyRunAs();
  return user === undefined ? [] : ['--socket-owner', `root:${user}`];
}

/** A bcrypt hash as `htpasswd -nB` writes it, which the shipped Caddyfile accepts. */
export async function bcryptHash(password: string): Promise<string> {
  const result = await run('htpasswd', ['-niB', 'user'], { input: password, timeoutMs: 10_000 });
  if (result.code !== 0) throw new Error(`htpasswd failed: ${result.stderr.toString('utf8')}`);
  return result.stdout.toString('utf8').trim().split(':')[1] ?? '';
}

export interface ShippedCaddyOptions {
  /** 1: Caddy checks logins (as shipped); 2: git-fcgi does (variant 1's lines deleted). */
  readonly variant: 1 | 2;
  readonly socket: string;
  readonly projectRoot: string;
  /** Variant 1: basicauth's users, name -> bcrypt hash. */
  readonly users?: Readonly<Record<string, string>>;
}

/**
 * The shipped site block with only what the test must change: the site address (the port is
 * added at start), the socket, GIT_PROJECT_ROOT and the users marked CHANGE, and for variant 2
 * the deletion its comment describes.
 */
export function shippedCaddySite(shipped: string, opts: ShippedCaddyOptions): string {
  let text = shipped;
  const replace = (from: RegExp, to: string): void => {
    assert.match(text, from, `the shipped Caddyfile has ${String(from)}`);
    text = text.replace(from, to);
  };
  replace(/^git\.example\.com \{.*$/m, 'http://127.0.0.1:PORT {');
  replace(/unix\/\/run\/git-fcgi\/git-fcgi\.sock/, `unix/${opts.socket}`);
  replace(/^(\t+)env GIT_PROJECT_ROOT \/srv\/git\b.*$/m, `$1env GIT_PROJECT_ROOT ${opts.projectRoot}`);
  if (opts.variant === 1) {
    const users = Object.entries(opts.users ?? {}).map(([name, hash]) => `\t\t${name} ${hash}`);
    replace(/^\t\talice \$2a\$14\$CHANGE.*$/m, users.join('\n'));
  } else {
    replace(/^\t# --- Variant 1 \(as shipped\)[\s\S]*?# --- end of variant 1 -+\n/m, '');
  }
  return text;
}

export interface Caddy {
  readonly port: number;
  readonly pid: number;
  readonly configFile: string;
  url(path?: string): string;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts `caddy run` with `site` (a site block whose address contains PORT) and global options
 * for a test: no admin endpoint (port 2019 is shared by everyone on the machine), storage in a
 * temp dir. As root it runs as the caddy account with its groups, like Debian's unit.
 */
export async function startCaddy(t: Cleanup, { site }: { readonly site: string }): Promise<Caddy> {
  const prefix = await tmpDir(t, 'caddy-');
  const runAs = caddyRunAs();
  if (runAs !== undefined) {
    const id = async (flag: string): Promise<number> =>
      Number((await run('id', [flag, runAs], { timeoutMs: 5000 })).stdout.toString().trim());
    // Caddy writes its storage (autosave.json, locks) below its home.
    await chown(prefix, await id('-u'), await id('-g'));
  }
  const configFile = join(prefix, 'Caddyfile');
  const env = { HOME: prefix, XDG_DATA_HOME: join(prefix, 'data'), XDG_CONFIG_HOME: join(prefix, 'config') };
  const { proc, port } = await startOnFreePort({
    name: 'Caddy',
    launch: async (port) => {
      await writeFile(configFile, `{\n\tadmin off\n}\n\n${site.replace('PORT', String(port))}`);
      await chmod(configFile, 0o644);
      const args = ['run', '--config', configFile, '--adapter', 'caddyfile'];
      return runAs === undefined
        ? startProcess(t, CADDY, args, { env })
        : startProcess(
            t,
            'setpriv',
            [`--reuid=${runAs}`, `--regid=${runAs}`, '--init-groups', CADDY, ...args],
            {
              env,
            },
          );
    },
    addressInUse: /address already in use/,
    readyTimeoutMs: 20_000,
  });
  return {
    port,
    pid: proc.pid,
    configFile,
    url: (path = '/') => `http://127.0.0.1:${port}${path}`,
    output: () => proc.output(),
    stop: async () => {
      await proc.stop();
    },
  };
}

/** Live caddy processes started with `configFile`. */
export const caddyProcessesOf = (configFile: string): Promise<number[]> =>
  processesWithArg('caddy', configFile);

/** Waits up to `withinMs` for every process of this Caddy to end; fails naming the survivors. */
export const assertNoCaddyProcesses = (caddy: Caddy, withinMs: number): Promise<void> =>
  assertNoProcessesWithArg('caddy', caddy.configFile, { withinMs });
