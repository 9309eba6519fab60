import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { cliPath, repoRoot, withAllowRoot } from './daemon.js';
import { waitFor, withDeadline } from './deadline.js';
import { acceptsUnix } from './net-probe.js';
import { startProcess, type StartedProcess } from './proc.js';

export interface HolderEvent {
  readonly event: 'started' | 'signalled' | 'exited' | 'done';
  /** ms since the epoch */
  readonly at: number;
  readonly pid?: number;
  readonly signal?: string | null;
  readonly code?: number | null;
}

/** One git-fcgi the holder started, as its log shows it. */
export interface Generation {
  readonly pid: number;
  readonly startedAt: number;
  /** When it logged "listening on": from then on it accepts. */
  readonly readyAt: number;
}

export interface SocketActivated {
  readonly sock: string;
  readonly proc: StartedProcess;
  events(): HolderEvent[];
  /** Every git-fcgi started so far that has logged that it listens, oldest first. */
  generations(): Generation[];
  /** `systemctl restart`: SIGTERM, wait for the exit, start a new one on the same socket; resolves once it listens. */
  restart(timeoutMs?: number): Promise<Generation>;
  /** `systemctl reload`: SIGHUP; resolves once git-fcgi has logged the reload's outcome. */
  reload(timeoutMs?: number): Promise<void>;
}

const holderPath = join(repoRoot, 'test', 'fixtures', 'socket-holder.mjs');

const LISTENING = /^(\S+) info listening on fastcgi systemd socket activation/gm;

/**
 * git-fcgi as systemd runs it from git-fcgi.socket: systemd-socket-activate creates and binds
 * the UNIX socket `sock` and hands it to test/fixtures/socket-holder.mjs, which keeps it and
 * (re)starts `node dist/cli.js ...args` on it with LISTEN_FDS/LISTEN_PID, as systemd does for
 * each start of the service. Resolves once the first git-fcgi listens.
 */
export async function startSocketActivated(
  t: Cleanup,
  sock: string,
  args: readonly string[],
): Promise<SocketActivated> {
  const proc = await startProcess(
    t,
    'systemd-socket-activate',
    [
      '-l',
      sock,
      '-E',
      'PATH',
      '--',
      process.execPath,
      holderPath,
      '--',
      process.execPath,
      cliPath,
      ...withAllowRoot(args),
    ],
    { stdin: 'pipe' },
  );
  const events = (): HolderEvent[] =>
    proc
      .stdout()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as HolderEvent);
  const generations = (): Generation[] => {
    const started = events().filter((e) => e.event === 'started');
    const ready = [...proc.stderr().matchAll(LISTENING)].map((m) => Date.parse(m[1] ?? ''));
    return ready.flatMap((readyAt, i) => {
      const start = started[i];
      return start?.pid === undefined ? [] : [{ pid: start.pid, startedAt: start.at, readyAt }];
    });
  };
  const command = (line: string): void => {
    if (proc.stdin === null) throw new Error('the socket holder has no stdin');
    proc.stdin.write(`${line}\n`);
  };
  // systemd-socket-activate starts its command on the first connection, as a socket unit does.
  await waitFor(() => acceptsUnix(sock), { timeoutMs: 10_000, what: 'the activation socket' });
  await waitFor(() => generations().length === 1, {
    timeoutMs: 15_000,
    what: `git-fcgi to listen on the activated socket\n${proc.output()}`,
  });
  return {
    sock,
    proc,
    events,
    generations,
    restart: async (timeoutMs = 60_000) => {
      const before = generations().length;
      command('restart');
      await waitFor(() => generations().length > before, {
        timeoutMs,
        what: `the restarted git-fcgi to listen\n${proc.output()}`,
      });
      const latest = generations().at(-1);
      if (latest === undefined) throw new Error('no generation');
      return latest;
    },
    reload: async (timeoutMs = 30_000) => {
      const outcome = /configuration reloaded|reload refused/g;
      const before = proc.stderr().match(outcome)?.length ?? 0;
      command('reload');
      await withDeadline(
        waitFor(() => (proc.stderr().match(outcome)?.length ?? 0) > before, {
          timeoutMs,
          what: 'the reload to be logged',
        }),
        timeoutMs + 1000,
        `git-fcgi to reload\n${proc.output()}`,
      );
    },
  };
}
