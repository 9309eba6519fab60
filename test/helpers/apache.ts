import assert from 'node:assert/strict';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import type { Cleanup } from './cleanup.js';
import { DeadlineError, waitFor } from './deadline.js';
import { acceptsTcp } from './net-probe.js';
import { htpasswd } from './nginx.js';
import { freePort, startProcess, type StartedProcess } from './proc.js';
import { listProcesses } from './procfs.js';
import { tmpDir } from './tmp.js';
import { confPath, errorLogPath, pidPath, renderApacheConf, type ApacheConfig } from './apache-conf.js';

export { gitVhost, type ApacheConfig, type ApacheVhost, type GitVhostOptions } from './apache-conf.js';

/** Debian's binary; not on a non-root PATH. */
export const APACHE = '/usr/sbin/apache2';

/**
 * The account Apache's children serve as: tests run as root, and Apache refuses `User root`. Everything they
 * open per request (git-fcgi's socket, the htpasswd file) must be reachable by it. Undefined when not root:
 * then Apache stays the user who started it.
 */
export const apacheRunAs = (): { readonly user: string; readonly group: string } | undefined =>
  process.getuid?.() === 0 ? { user: 'www-data', group: 'www-data' } : undefined;

/** git-fcgi's `--socket-owner` so that Apache's children may connect (the 0660 default mode stays). */
export function socketOwnerArgs(): string[] {
  const runAs = apacheRunAs();
  return runAs === undefined ? [] : ['--socket-owner', `root:${runAs.group}`];
}

/** A temp directory Apache's children can pass through (mode 0711), for git-fcgi's socket or htpasswd. */
export async function apacheReachableDir(t: Cleanup, prefix: string): Promise<string> {
  const dir = await tmpDir(t, prefix);
  await chmod(dir, 0o711);
  return dir;
}

/** An htpasswd file (bcrypt) that Apache's children can read. */
export async function apacheHtpasswd(t: Cleanup, users: Readonly<Record<string, string>>): Promise<string> {
  const file = await htpasswd(t, await apacheReachableDir(t, 'apache-auth-'), users);
  await chmod(file, 0o644);
  return file;
}

export interface Apache {
  /** One per vhost, in the order given. */
  readonly ports: readonly number[];
  readonly prefix: string;
  /** The parent process, also its process group. */
  readonly pid: number;
  /** `http://127.0.0.1:PORT` of vhost `index` plus `path`. */
  url(index?: number, path?: string): string;
  /** Apache's error log: proxy errors (AH01075 timeouts, AH01079 failed connects) land here. */
  errorLog(): Promise<string>;
  /** SIGTERM to the whole group, SIGKILL after a grace period; resolves once no member is left. */
  stop(): Promise<void>;
}

export interface StartApacheOptions extends ApacheConfig {
  readonly readyTimeoutMs?: number;
}

class ApacheExited extends Error {}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/**
 * Starts Apache 2.4 in the foreground (`-DFOREGROUND`: no detach, the harness owns the parent and its group)
 * with its own config in a temp prefix, one vhost per ephemeral port; `t` stops it and removes the prefix.
 */
export async function startApache(t: Cleanup, opts: StartApacheOptions): Promise<Apache> {
  const prefix = await apacheReachableDir(t, 'apache-');
  const conf = confPath(prefix);
  const errorLog = (): Promise<string> => readFile(errorLogPath(prefix), 'utf8').catch(() => '');
  const runAs = opts.runAs ?? apacheRunAs();
  const config: ApacheConfig = { ...opts, ...(runAs === undefined ? {} : { runAs }) };
  // Ports from freePort() can be taken by someone else before Apache binds them; then try fresh ones.
  for (let attempt = 1; ; attempt++) {
    const ports = await distinctFreePorts(opts.vhosts.length);
    await writeFile(conf, renderApacheConf(prefix, ports, config));
    await rm(pidPath(prefix), { force: true });
    // -d and -f: nothing is read from /etc/apache2, and no envvars file is needed.
    const proc = await startProcess(t, APACHE, ['-d', prefix, '-f', conf, '-DFOREGROUND']);
    try {
      await waitUntilServing(proc, prefix, ports, opts.readyTimeoutMs ?? 15_000);
      return handle(proc, prefix, ports, errorLog);
    } catch (error) {
      await proc.stop();
      const log = await errorLog();
      if (error instanceof ApacheExited && /Address already in use/.test(log + proc.stderr()) && attempt < 5)
        continue;
      const why = error instanceof Error ? error.message : String(error);
      const details = `${proc.output()}\n--- error.log ---\n${log}\n--- httpd.conf ---\n${await readFile(conf, 'utf8')}`;
      throw new Error(`Apache did not start: ${why}\n${details}`, { cause: error });
    }
  }
}

async function waitUntilServing(
  proc: StartedProcess,
  prefix: string,
  ports: readonly number[],
  timeoutMs: number,
): Promise<void> {
  // The parent writes its pid file after binding every Listen, so a matching pid tells our Apache from a
  // stranger that happens to accept on the same port.
  await waitFor(
    async () => {
      const status = proc.exitStatus();
      if (status !== undefined) throw new ApacheExited(`apache2 exited (${status.signal ?? status.code})`);
      const pid = (await readFile(pidPath(prefix), 'utf8').catch(() => '')).trim();
      return (
        pid === String(proc.pid) && (await Promise.all(ports.map((port) => acceptsTcp(port)))).every(Boolean)
      );
    },
    { timeoutMs, what: `Apache to serve on ${ports.join(', ')}` },
  );
}

function handle(
  proc: StartedProcess,
  prefix: string,
  ports: readonly number[],
  errorLog: () => Promise<string>,
): Apache {
  return {
    ports,
    prefix,
    pid: proc.pid,
    url: (index = 0, path = '/') => {
      const port = ports[index];
      if (port === undefined) throw new RangeError(`no vhost ${index}; there are ${ports.length}`);
      return `http://127.0.0.1:${port}${path}`;
    },
    errorLog,
    // startProcess already registered the same stop with `t`; it is idempotent.
    stop: async () => {
      await proc.stop();
    },
  };
}

/** Live apache2 processes started with this prefix's config, whatever their process group. */
export async function apacheProcessesOf(prefix: string): Promise<number[]> {
  const conf = confPath(prefix);
  const found: number[] = [];
  for (const p of await listProcesses()) {
    if (p.comm !== 'apache2' || p.state === 'Z') continue;
    const cmdline = await readFile(`/proc/${p.pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(conf)) found.push(p.pid);
  }
  return found;
}

/** Waits up to `withinMs` for every process of this Apache to end; fails naming the survivors. */
export async function assertNoApacheProcesses(
  apache: Apache,
  { withinMs }: { readonly withinMs: number },
): Promise<void> {
  try {
    await waitFor(async () => (await apacheProcessesOf(apache.prefix)).length === 0, {
      timeoutMs: withinMs,
      what: `apache2 processes of ${apache.prefix} to end`,
    });
  } catch (error) {
    if (!(error instanceof DeadlineError)) throw error;
    const left = await apacheProcessesOf(apache.prefix);
    if (left.length > 0) assert.fail(`apache2 still running after ${withinMs} ms: pids ${left.join(', ')}`);
  }
}
