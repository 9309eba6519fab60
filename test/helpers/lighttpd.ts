import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { waitFor } from './deadline.js';
import {
  assertNoProcessesWithArg,
  distinctFreePorts,
  ownedDir,
  processesWithArg,
  type Account,
} from './front-end.js';
import { LIGHTTPD, confPath, errorLogPath, pidPath, renderMainConf, sitePath } from './lighttpd-conf.js';
import { acceptsTcp } from './net-probe.js';
import { startProcess, type StartedProcess } from './proc.js';

export { LIGHTTPD } from './lighttpd-conf.js';

export interface Lighttpd {
  readonly port: number;
  readonly prefix: string;
  /** The server process, also its process group. */
  readonly pid: number;
  /** `http://127.0.0.1:PORT` plus `path`. */
  url(path?: string): string;
  errorLog(): Promise<string>;
  /** SIGTERM to the whole group, SIGKILL after a grace period; resolves once no member is left. */
  stop(): Promise<void>;
}

export interface StartLighttpdOptions {
  /** The site config, included from the main config as conf-enabled/ would (etc/lighttpd/git-fcgi.conf). */
  readonly site: string;
  /** Started as root, lighttpd serves as this account (`server.username`). */
  readonly account: Account | undefined;
  readonly readyTimeoutMs?: number;
}

class LighttpdExited extends Error {}

/**
 * Starts lighttpd in the foreground (`-D`: the harness owns the process and its group) with a main config in
 * a temp prefix that includes `site`, on an ephemeral port; `t` stops it and removes the prefix.
 */
export async function startLighttpd(t: Cleanup, opts: StartLighttpdOptions): Promise<Lighttpd> {
  // lighttpd opens its error log after dropping privileges.
  const prefix = await ownedDir(t, 'lighttpd-', opts.account);
  await mkdir(join(prefix, 'htdocs'));
  // Pushes are spooled here by the serving account.
  const uploadsDir = await ownedDir(t, 'lighttpd-uploads-', opts.account);
  const conf = confPath(prefix);
  const errorLog = (): Promise<string> => readFile(errorLogPath(prefix), 'utf8').catch(() => '');
  await writeFile(sitePath(prefix), opts.site);
  // A port from freePort() can be taken by someone else before lighttpd binds it; then try a fresh one.
  for (let attempt = 1; ; attempt++) {
    const [port] = await distinctFreePorts(1);
    if (port === undefined) throw new Error('no free port');
    const runAs = opts.account === undefined ? {} : { runAs: opts.account };
    await writeFile(conf, renderMainConf(prefix, { port, uploadsDir, ...runAs }));
    await rm(pidPath(prefix), { force: true });
    const proc = await startProcess(t, LIGHTTPD, ['-D', '-f', conf]);
    try {
      await waitUntilServing(proc, prefix, port, opts.readyTimeoutMs ?? 15_000);
      return handle(proc, prefix, port, errorLog);
    } catch (error) {
      await proc.stop();
      const log = await errorLog();
      if (
        error instanceof LighttpdExited &&
        /Address already in use/.test(log + proc.stderr()) &&
        attempt < 5
      )
        continue;
      const why = error instanceof Error ? error.message : String(error);
      const details = `${proc.output()}\n--- error.log ---\n${log}\n--- lighttpd.conf ---\n${await readFile(conf, 'utf8')}`;
      throw new Error(`lighttpd did not start: ${why}\n${details}`, { cause: error });
    }
  }
}

async function waitUntilServing(
  proc: StartedProcess,
  prefix: string,
  port: number,
  timeoutMs: number,
): Promise<void> {
  // lighttpd writes its pid file once it has bound its sockets; our pid there tells our lighttpd from a
  // stranger that happens to accept on the same port.
  await waitFor(
    async () => {
      const status = proc.exitStatus();
      if (status !== undefined) throw new LighttpdExited(`lighttpd exited (${status.signal ?? status.code})`);
      const pid = (await readFile(pidPath(prefix), 'utf8').catch(() => '')).trim();
      return pid === String(proc.pid) && (await acceptsTcp(port));
    },
    { timeoutMs, what: `lighttpd to serve on ${port}` },
  );
}

function handle(
  proc: StartedProcess,
  prefix: string,
  port: number,
  errorLog: () => Promise<string>,
): Lighttpd {
  return {
    port,
    prefix,
    pid: proc.pid,
    url: (path = '/') => `http://127.0.0.1:${port}${path}`,
    errorLog,
    // startProcess already registered the same stop with `t`; it is idempotent.
    stop: async () => {
      await proc.stop();
    },
  };
}

/** Live lighttpd processes started with this prefix's config. */
export const lighttpdProcessesOf = (prefix: string): Promise<number[]> =>
  processesWithArg('lighttpd', confPath(prefix));

/** Waits up to `withinMs` for every process of this lighttpd to end; fails naming the survivors. */
export const assertNoLighttpdProcesses = (
  server: Lighttpd,
  { withinMs }: { readonly withinMs: number },
): Promise<void> => assertNoProcessesWithArg('lighttpd', confPath(server.prefix), { withinMs });
