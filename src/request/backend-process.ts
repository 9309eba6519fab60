import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { GitFcgiError, describeError } from '../errors.js';

export interface BackendExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface BackendProcess {
  readonly stdin: Writable;
  /** Ends, errors, pauses and resumes as usual; its data comes as 'data' events unless `readStdout` is used. */
  readonly stdout: Readable;
  readonly stderr: Readable;
  /**
   * When present, stdout's data instead comes as views of one buffer that is read into again
   * and again: no allocation per chunk (a clone is thousands of 64 KiB reads, and every
   * allocated chunk waits for a garbage collection to be freed). A view is valid until
   * `onView` returns, or, when it returns false, until `stdout.resume()`, which the caller
   * must call once it no longer needs the view. Call at most once; reading starts then.
   */
  readonly readStdout?: (onView: (view: Buffer) => boolean) => void;
  readonly pid: number;
  /** Resolves once the process has exited and been reaped. */
  readonly exited: Promise<BackendExit>;
  /** SIGTERM to the whole process group, SIGKILL after `graceMs`. Idempotent. */
  kill(graceMs: number): void;
}

/**
 * Starts `program` with `args` and exactly `env`, in `cwd`, in a process group of its own
 * (setsid), so that git http-backend and everything it forks (upload-pack, pack-objects, hooks)
 * can be signalled together. Resolves once the program runs; rejects with ERR_BACKEND_SPAWN
 * when it cannot be started, or with the signal's reason when `signal` (the request's) aborts
 * before it has started.
 */
export type Spawner = (
  program: string,
  args: readonly string[],
  env: Record<string, string>,
  cwd: string,
  signal: AbortSignal,
) => Promise<BackendProcess>;

/**
 * A backend that could not be started: ERR_BACKEND_SPAWN (502), or ERR_ENV_TOO_LARGE (431) when
 * execve said E2BIG. Its limits (one string at most 32 pages, MAX_ARG_STRLEN; all of them at
 * most a quarter of the stack limit) are met only by a request whose headers or CGI variables
 * are that large: the rest of the environment is small and fixed.
 */
export function spawnError(program: string, why: string, cause?: unknown): GitFcgiError {
  const withCause = cause === undefined ? {} : { cause };
  if ((cause as NodeJS.ErrnoException | undefined)?.code === 'E2BIG') {
    return new GitFcgiError(
      'ERR_ENV_TOO_LARGE',
      `cannot run ${program}: the request's headers and variables are too large for an environment (${why})`,
      { status: 431, ...withCause },
    );
  }
  return new GitFcgiError('ERR_BACKEND_SPAWN', `cannot run ${program}: ${why}`, {
    status: 502,
    ...withCause,
  });
}

/**
 * The Spawner with Node's own child_process: forks the daemon (see spawn-helper.ts for the
 * cost). The signal is not needed: Node's spawn has forked and exec'd before it returns, and
 * the relay sees an abort as soon as it starts.
 */
export const spawnBackend: Spawner = (program, args, env, cwd, _signal) => {
  let child: ChildProcessWithoutNullStreams;
  try {
    child = spawn(program, args, { env, cwd, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    // Node throws what it does not count as a run-time error (E2BIG among them) instead of
    // emitting it.
    return Promise.reject(spawnError(program, describeError(err), err));
  }
  let reaped = false;
  const exited = new Promise<BackendExit>((resolve) => {
    child.once('exit', (code, signal) => {
      reaped = true;
      if (child.pid !== undefined) unreapedGroups.delete(child.pid);
      resolve({ code, signal });
    });
  });
  return new Promise((resolve, reject) => {
    child.once('error', (err) => reject(spawnError(program, describeError(err), err)));
    child.once('spawn', () => {
      const pid = child.pid;
      if (pid === undefined) {
        reject(spawnError(program, 'no pid'));
        return;
      }
      const { stdin, stdout, stderr } = child;
      if (!reaped) endWithTheDaemon(pid);
      resolve({ stdin, stdout, stderr, pid, exited, kill: groupKiller(pid, () => reaped) });
    });
  });
};

/** Sends `signal` to process group `pgid`; a group that is gone is no error. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: nothing is left in the group.
  }
}

/**
 * The Node spawn's kill: SIGTERM to the group of `pid`, SIGKILL after `graceMs`; idempotent.
 * Either is sent only while `reaped()` is false. A process group id is its leader's pid, and
 * cannot be reused while the leader (a zombie included) or any member exists, so until Node has
 * reaped the leader -pid names this group and no other; Node reaps the leader and emits 'exit'
 * from one callback of its event loop, so no timer runs in between. Once the leader is reaped,
 * members that survived the SIGTERM are left alone, as -pid could by then be an unrelated
 * group's: git's own processes die of SIGTERM. (The spawn helper keeps the leader unreaped until
 * the kill is over instead: see helper-spawn.ts.)
 */
export function groupKiller(pid: number, reaped: () => boolean): (graceMs: number) => void {
  let killed = false;
  return (graceMs) => {
    if (killed || reaped()) return;
    killed = true;
    signalGroup(pid, 'SIGTERM');
    setTimeout(() => {
      if (!reaped()) signalGroup(pid, 'SIGKILL');
    }, graceMs).unref();
  };
}

/** Groups of backends Node's spawn started whose leader Node has not reaped. */
const unreapedGroups = new Set<number>();
let exitHandlerInstalled = false;
/** At the daemon's exit: how long those groups get between SIGTERM and SIGKILL. */
const EXIT_GRACE_MS = 500;

/**
 * A daemon that exits without its normal stop (a second SIGTERM, an uncaught exception, any
 * process.exit) takes the backends it forked along: SIGTERM to their groups, SIGKILL half a
 * second later. It waits synchronously, so that libuv reaps no leader meanwhile and -pid stays
 * each group's own (see groupKiller). A daemon killed outright (SIGKILL, a crash of Node itself)
 * runs no exit handler: backends Node's spawn started then outlive it; those the spawn helper
 * started do not (it ends them when it loses the daemon).
 */
function endWithTheDaemon(pid: number): void {
  if (!exitHandlerInstalled) process.on('exit', onExit);
  exitHandlerInstalled = true;
  unreapedGroups.add(pid);
}

function onExit(): void {
  if (unreapedGroups.size === 0) return;
  for (const pid of unreapedGroups) signalGroup(pid, 'SIGTERM');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, EXIT_GRACE_MS);
  for (const pid of unreapedGroups) signalGroup(pid, 'SIGKILL');
}
