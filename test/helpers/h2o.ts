import { readFile, rm, writeFile } from 'node:fs/promises';
import type { Cleanup } from './cleanup.js';
import { waitFor } from './deadline.js';
import {
  assertNoProcessesWithArg,
  distinctFreePorts,
  ownedDir,
  processesWithArg,
  type Account,
} from './front-end.js';
import { H2O, confPath, errorLogPath, pidPath, placesIn, type H2oPlaces } from './h2o-conf.js';
import { acceptsTcp } from './net-probe.js';
import { startProcess, type StartedProcess } from './proc.js';

export { H2O, type H2oPlaces } from './h2o-conf.js';

export interface H2o {
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

export interface StartH2oOptions {
  /** The whole h2o.conf, for the port and files the harness chose (etc/h2o/git-fcgi.conf, substituted). */
  readonly config: (places: H2oPlaces) => string;
  /** Started as root, h2o serves as this account (the config's `user`); it writes its files as that account. */
  readonly account: Account | undefined;
  readonly readyTimeoutMs?: number;
}

class H2oExited extends Error {}

/** Starts h2o in the foreground on an ephemeral port with its config in a temp prefix; `t` stops it. */
export async function startH2o(t: Cleanup, opts: StartH2oOptions): Promise<H2o> {
  // h2o writes its pid file after switching to its user.
  const prefix = await ownedDir(t, 'h2o-', opts.account);
  const conf = confPath(prefix);
  const errorLog = (): Promise<string> => readFile(errorLogPath(prefix), 'utf8').catch(() => '');
  // A port from freePort() can be taken by someone else before h2o binds it; then try a fresh one.
  for (let attempt = 1; ; attempt++) {
    const [port] = await distinctFreePorts(1);
    if (port === undefined) throw new Error('no free port');
    await writeFile(conf, opts.config(placesIn(prefix, port)));
    await rm(pidPath(prefix), { force: true });
    const proc = await startProcess(t, H2O, ['-c', conf]);
    try {
      await waitUntilServing(proc, prefix, port, opts.readyTimeoutMs ?? 15_000);
      return handle(proc, prefix, port, errorLog);
    } catch (error) {
      await proc.stop();
      const output = (await errorLog()) + proc.output();
      if (error instanceof H2oExited && /Address already in use/.test(output) && attempt < 5) continue;
      const why = error instanceof Error ? error.message : String(error);
      const details = `${proc.output()}\n--- error.log ---\n${await errorLog()}\n--- h2o.conf ---\n${await readFile(conf, 'utf8')}`;
      throw new Error(`h2o did not start: ${why}\n${details}`, { cause: error });
    }
  }
}

async function waitUntilServing(
  proc: StartedProcess,
  prefix: string,
  port: number,
  timeoutMs: number,
): Promise<void> {
  // Our pid in the pid file tells our h2o from a stranger that happens to accept on the same port.
  await waitFor(
    async () => {
      const status = proc.exitStatus();
      if (status !== undefined) throw new H2oExited(`h2o exited (${status.signal ?? status.code})`);
      const pid = (await readFile(pidPath(prefix), 'utf8').catch(() => '')).trim();
      return pid === String(proc.pid) && (await acceptsTcp(port));
    },
    { timeoutMs, what: `h2o to serve on ${port}` },
  );
}

function handle(proc: StartedProcess, prefix: string, port: number, errorLog: () => Promise<string>): H2o {
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

/** Live h2o processes started with this prefix's config. */
export const h2oProcessesOf = (prefix: string): Promise<number[]> =>
  processesWithArg('h2o', confPath(prefix));

/** Waits up to `withinMs` for every process of this h2o to end; fails naming the survivors. */
export const assertNoH2oProcesses = (
  server: H2o,
  { withinMs }: { readonly withinMs: number },
): Promise<void> => assertNoProcessesWithArg('h2o', confPath(server.prefix), { withinMs });
