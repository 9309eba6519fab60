import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { repoRoot } from './daemon.js';
import { assertNoProcessesWithArg, processesWithArg, reachableDir, startOnFreePort } from './front-end.js';
import { run, startProcess } from './proc.js';
import { tmpDir } from './tmp.js';

/**
 * HAProxy 2.6 (Debian 12) in front of git-fcgi, started from the shipped etc/haproxy/git-fcgi.cfg
 * below Debian's own global and defaults sections, as an admin installs it. What its fcgi-app
 * sends, measured with a FastCGI server that logs every record:
 *
 * - SCRIPT_NAME = the whole decoded path, no PATH_INFO (unless `path-info` is set), REQUEST_URI
 *   with the query, DOCUMENT_ROOT = docroot, SCRIPT_FILENAME = docroot + path.
 * - CONTENT_LENGTH on every request, "0" on a GET; a chunked body only when all of it arrived with
 *   the headers (its length is then counted), otherwise 400 before anything is sent (docs 10.2).
 * - REMOTE_USER and AUTH_TYPE from any `Authorization: Basic` header, checked or not (a built-in
 *   `set-param REMOTE_USER %[http_auth_user]`; a set-param whose value is empty is skipped, so it
 *   cannot be cleared). The Authorization header itself only with `pass-header Authorization`.
 * - Every other request header as HTTP_*: Git-Protocol arrives as HTTP_GIT_PROTOCOL.
 * - BEGIN_REQUEST with FCGI_KEEP_CONN (option keep-conn is the default); with `option mpxs-conns`,
 *   `option max-reqs N` and connection reuse, several requests at once on one connection.
 * - After `chroot`, the UNIX socket of a `server` line is looked up inside the jail.
 */

export const HAPROXY = '/usr/sbin/haproxy';
export const SHIPPED_HAPROXY_CFG = join(repoRoot, 'etc', 'haproxy', 'git-fcgi.cfg');
/** The socket path the shipped `server` line names, inside HAProxy's chroot. */
export const SHIPPED_SOCKET_IN_JAIL = '/git-fcgi.sock';

/** HAProxy drops to this account when started as root, as Debian's global section says. */
export const haproxyRunAs = (): string | undefined => (process.getuid?.() === 0 ? 'haproxy' : undefined);

/** git-fcgi's `--socket-owner`, so that HAProxy (group haproxy) may connect to the 0660 socket. */
export function haproxySocketOwnerArgs(): string[] {
  const user = haproxyRunAs();
  return user === undefined ? [] : ['--socket-owner', `root:${user}`];
}

export interface HaproxyJail {
  /** The chroot directory. */
  readonly dir: string;
  /** Where git-fcgi must listen for the shipped `server git-fcgi /git-fcgi.sock` line. */
  readonly socket: string;
}

/** A chroot for HAProxy (mode 0711, like /var/lib/haproxy), holding git-fcgi's socket. */
export async function haproxyJail(t: Cleanup): Promise<HaproxyJail> {
  const dir = await reachableDir(t, 'haproxy-jail-');
  return { dir, socket: join(dir, SHIPPED_SOCKET_IN_JAIL) };
}

/** A SHA-512 crypt hash (`openssl passwd -6`), what the shipped userlist asks for. */
export async function sha512Crypt(password: string): Promise<string> {
  const result = await run('openssl', ['passwd', '-6', '-stdin'], { input: password, timeoutMs: 10_000 });
  if (result.code !== 0) throw new Error(`openssl passwd failed: ${result.stderr.toString('utf8')}`);
  return result.stdout.toString('utf8').trim();
}

export interface ShippedHaproxyOptions {
  /** 1: HAProxy checks logins (as shipped); 2: git-fcgi does (the documented edit made). */
  readonly variant: 1 | 2;
  /** Variant 1: the userlist's users, name -> crypt hash. */
  readonly users?: Readonly<Record<string, string>>;
  readonly docroot: string;
  /** Lines appended to the fcgi-app section (e.g. `option mpxs-conns` for a measurement). */
  readonly fcgiApp?: readonly string[];
  /** Lines appended to the backend section. */
  readonly backend?: readonly string[];
}

/**
 * The shipped sections with only what the test must change: `bind :80` (the port is added at
 * start), the docroot and the userlist marked CHANGE, and for variant 2 the edit its comment
 * describes (variant 1's lines and the userlist deleted, `pass-header Authorization` uncommented).
 */
export function shippedHaproxySections(shipped: string, opts: ShippedHaproxyOptions): string {
  let text = shipped;
  const replace = (from: RegExp, to: string): void => {
    assert.match(text, from, `the shipped config has ${String(from)}`);
    text = text.replace(from, to);
  };
  replace(/^ {4}docroot \/srv\/git\b.*$/m, `    docroot ${opts.docroot}`);
  if (opts.variant === 1) {
    const users = Object.entries(opts.users ?? {}).map(([name, hash]) => `    user ${name} password ${hash}`);
    replace(/^ {4}user alice password \$6\$CHANGE\$CHANGE.*$/m, users.join('\n'));
  } else {
    replace(/^ {4}# --- Variant 1 \(as shipped\)[\s\S]*?# --- end of variant 1 -+\n/m, '');
    replace(/^userlist git-users\n(?: {4}.*\n)+\n/m, '');
    replace(/^ {4}# pass-header Authorization$/m, '    pass-header Authorization');
  }
  const append = (section: RegExp, lines: readonly string[] | undefined): void => {
    if (lines === undefined || lines.length === 0) return;
    replace(section, `$&\n${lines.map((l) => `    ${l}`).join('\n')}`);
  };
  append(/^backend git\n {4}mode http$/m, opts.backend);
  append(/^fcgi-app git-fcgi$/m, opts.fcgiApp);
  return text;
}

/**
 * Debian 12's global and defaults sections (/etc/haproxy/haproxy.cfg as the package installs it)
 * with what a test must move: the chroot and stats socket into temp dirs, logs to stderr instead
 * of /dev/log, no `daemon` (the harness owns the process), no `user` when not root. The TLS
 * defaults are left out: no test binds TLS.
 */
function debianGlobalAndDefaults(prefix: string, jail: string): string {
  const runAs = haproxyRunAs();
  return [
    'global',
    '\tlog stderr format raw local0 info',
    `\tchroot ${jail}`,
    `\tstats socket ${statsSocketPath(prefix)} mode 660 level admin`,
    '\tstats timeout 30s',
    ...(runAs === undefined ? [] : [`\tuser ${runAs}`, `\tgroup ${runAs}`]),
    '',
    'defaults',
    '\tlog\tglobal',
    '\tmode\thttp',
    '\toption\thttplog',
    '\toption\tdontlognull',
    '        timeout connect 5000',
    '        timeout client  50000',
    '        timeout server  50000',
    ...[400, 403, 408, 500, 502, 503, 504].map((s) => `\terrorfile ${s} /etc/haproxy/errors/${s}.http`),
    '',
    '',
  ].join('\n');
}

const statsSocketPath = (prefix: string): string => join(prefix, 'admin.sock');

export interface Haproxy {
  readonly port: number;
  readonly pid: number;
  readonly configFile: string;
  url(path?: string): string;
  /** HAProxy's log lines and messages so far. */
  output(): string;
  /** Counters of the `git` backend's server, from the stats socket: `show stat`. */
  serverStats(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

/** Starts HAProxy in the foreground (-db) on an ephemeral port with `sections` below Debian's global/defaults. */
export async function startHaproxy(
  t: Cleanup,
  { sections, jail }: { readonly sections: string; readonly jail: HaproxyJail },
): Promise<Haproxy> {
  const prefix = await tmpDir(t, 'haproxy-');
  const configFile = join(prefix, 'haproxy.cfg');
  const { proc, port } = await startOnFreePort({
    name: 'HAProxy',
    launch: async (port) => {
      const bound = sections.replace(/^ {4}bind :80$/m, `    bind 127.0.0.1:${port}`);
      assert.notEqual(bound, sections, 'the shipped frontend has `bind :80`');
      await writeFile(configFile, debianGlobalAndDefaults(prefix, jail.dir) + bound);
      const check = await run(HAPROXY, ['-c', '-q', '-f', configFile], { timeoutMs: 20_000 });
      if (check.code !== 0) {
        throw new Error(`haproxy -c failed: ${check.stdout.toString()}${check.stderr.toString()}\n${bound}`);
      }
      return startProcess(t, HAPROXY, ['-db', '-f', configFile]);
    },
    addressInUse: /Address already in use|cannot bind/,
  });
  return {
    port,
    pid: proc.pid,
    configFile,
    url: (path = '/') => `http://127.0.0.1:${port}${path}`,
    output: () => proc.output(),
    serverStats: () => serverStats(statsSocketPath(prefix)),
    stop: async () => {
      await proc.stop();
    },
  };
}

async function serverStats(socket: string): Promise<Record<string, string>> {
  const csv = await new Promise<string>((resolve, reject) => {
    let text = '';
    const s = connect(socket, () => s.end('show stat\n'));
    s.setEncoding('utf8').on('data', (d: string) => (text += d));
    s.on('end', () => resolve(text));
    s.on('error', reject);
  });
  const [header = '', ...rows] = csv.replace(/^# /, '').trim().split('\n');
  const names = header.split(',');
  const row = rows.map((r) => r.split(',')).find((r) => r[0] === 'git' && r[1] === 'git-fcgi');
  assert.ok(row, `no stats for server git/git-fcgi in ${csv}`);
  return Object.fromEntries(names.map((name, i) => [name, row[i] ?? '']));
}

/** Live haproxy processes started with `configFile`. */
export const haproxyProcessesOf = (configFile: string): Promise<number[]> =>
  processesWithArg('haproxy', configFile);

/** Waits up to `withinMs` for every process of this HAProxy to end; fails naming the survivors. */
export const assertNoHaproxyProcesses = (haproxy: Haproxy, withinMs: number): Promise<void> =>
  assertNoProcessesWithArg('haproxy', haproxy.configFile, { withinMs });
