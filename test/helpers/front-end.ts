import assert from 'node:assert/strict';
import { chmod, chown, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import type { Cleanup } from './cleanup.js';
import { DeadlineError, waitFor } from './deadline.js';
import { acceptsTcp } from './net-probe.js';
import { htpasswd } from './nginx.js';
import { freePort, type StartedProcess } from './proc.js';
import { listProcesses } from './procfs.js';
import { run } from './run.js';
import { tmpDir } from './tmp.js';

/**
 * What the web servers in front of git-fcgi (lighttpd, h2o) need from a test that runs as root: they serve as
 * an unprivileged account, which must reach git-fcgi's socket, read the htpasswd file and write their own
 * runtime files. Not root: everything stays the user who runs the tests.
 */
export interface Account {
  readonly user: string;
  readonly group: string;
  readonly uid: number;
  readonly gid: number;
}

/** `user` (with its primary group) when the tests run as root; undefined otherwise. */
export async function serviceAccount(user: string): Promise<Account | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const id = async (flag: string): Promise<string> => {
    const result = await run('id', [flag, user], { timeoutMs: 10_000 });
    if (result.code !== 0) throw new Error(`no account ${user}: ${result.stderr.toString('utf8')}`);
    return result.stdout.toString('utf8').trim();
  };
  return { user, group: await id('-gn'), uid: Number(await id('-u')), gid: Number(await id('-g')) };
}

/** The account's name, or the user running the tests. */
export const accountName = (account: Account | undefined): string => account?.user ?? userInfo().username;

/** git-fcgi's `--socket-owner` so that `account` may connect (the 0660 default mode stays). */
export const socketOwnerArgs = (account: Account | undefined): string[] =>
  account === undefined ? [] : ['--socket-owner', `root:${account.group}`];

/** A temp directory anyone may pass through (mode 0711), for git-fcgi's socket or an htpasswd file. */
export async function reachableDir(t: Cleanup, prefix: string): Promise<string> {
  const dir = await tmpDir(t, prefix);
  await chmod(dir, 0o711);
  return dir;
}

/** A temp directory owned by `account`, for the files a server writes after dropping privileges. */
export async function ownedDir(t: Cleanup, prefix: string, account: Account | undefined): Promise<string> {
  const dir = await reachableDir(t, prefix);
  if (account !== undefined) await chown(dir, account.uid, account.gid);
  return dir;
}

/** An htpasswd file anyone may read, made by the htpasswd binary: B = bcrypt, m = apr1, s = {SHA}. */
export async function readableHtpasswd(
  t: Cleanup,
  users: Readonly<Record<string, string>>,
  scheme: 'B' | 'm' | 's' = 'B',
): Promise<string> {
  const file = await htpasswd(t, await reachableDir(t, 'htpasswd-'), users, scheme);
  await chmod(file, 0o644);
  return file;
}

/** `count` different ports that were free a moment ago. */
export async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/** Live processes named `comm` whose command line has `arg` (e.g. their config file), whatever their group. */
export async function processesWithArg(comm: string, arg: string): Promise<number[]> {
  const found: number[] = [];
  for (const p of await listProcesses()) {
    if (p.comm !== comm || p.state === 'Z') continue;
    const cmdline = await readFile(`/proc/${p.pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(arg)) found.push(p.pid);
  }
  return found;
}

/** Waits up to `withinMs` for every `comm` process started with `arg` to end; fails naming the survivors. */
export async function assertNoProcessesWithArg(
  comm: string,
  arg: string,
  { withinMs }: { readonly withinMs: number },
): Promise<void> {
  try {
    await waitFor(async () => (await processesWithArg(comm, arg)).length === 0, {
      timeoutMs: withinMs,
      what: `${comm} processes of ${arg} to end`,
    });
  } catch (error) {
    if (!(error instanceof DeadlineError)) throw error;
    const left = await processesWithArg(comm, arg);
    if (left.length > 0) assert.fail(`${comm} still running after ${withinMs} ms: pids ${left.join(', ')}`);
  }
}

export interface StartOnFreePortOptions {
  /** The server's name, for messages ("HAProxy"). */
  readonly name: string;
  /** Writes the config for `port` and starts the server in the foreground (registered with a Cleanup). */
  readonly launch: (port: number) => Promise<StartedProcess>;
  /** What else must hold before the server counts as serving (e.g. our pid in its pid file). */
  readonly ready?: (proc: StartedProcess, port: number) => Promise<boolean>;
  /** The server's complaint when someone else took the port first: then it is tried on a fresh one. */
  readonly addressInUse: RegExp;
  /** More to show when it does not start (its error log, its config); its output is always shown. */
  readonly details?: (proc: StartedProcess) => Promise<string>;
  readonly readyTimeoutMs?: number;
}

class ServerExited extends Error {}

/**
 * Starts a server on a port that was free a moment ago and waits until it accepts there (and `ready` holds).
 * A port from freePort() can be taken by someone else before the server binds it: when the server exits
 * saying so, it is tried on a fresh port, up to 5 times. On failure the server is stopped and the error
 * shows its output.
 */
export async function startOnFreePort(
  opts: StartOnFreePortOptions,
): Promise<{ readonly proc: StartedProcess; readonly port: number }> {
  const timeoutMs = opts.readyTimeoutMs ?? 15_000;
  for (let attempt = 1; ; attempt++) {
    const [port] = await distinctFreePorts(1);
    if (port === undefined) throw new Error('no free port');
    const proc = await opts.launch(port);
    try {
      await waitFor(
        async () => {
          const status = proc.exitStatus();
          if (status !== undefined) {
            throw new ServerExited(`${opts.name} exited (${status.signal ?? status.code})`);
          }
          return (opts.ready === undefined || (await opts.ready(proc, port))) && (await acceptsTcp(port));
        },
        { timeoutMs, what: `${opts.name} to serve on ${port}` },
      );
      return { proc, port };
    } catch (error) {
      await proc.stop();
      const details = (await opts.details?.(proc)) ?? '';
      if (error instanceof ServerExited && opts.addressInUse.test(proc.output() + details) && attempt < 5)
        continue;
      const why = error instanceof Error ? error.message : String(error);
      throw new Error(`${opts.name} did not start: ${why}\n${proc.output()}${details}`, { cause: error });
    }
  }
}
