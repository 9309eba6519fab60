import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { defer, type Cleanup } from './cleanup.js';
import { waitFor, withDeadline } from './deadline.js';
import { OutputBuffer } from './output-buffer.js';
import { groupIsGone, killGroup, trackGroup, untrackGroup } from './process-groups.js';
import { liveGroupMembers } from './procfs.js';

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface StartOptions {
  readonly cwd?: string;
  /** Merged over process.env; an undefined value removes the variable. */
  readonly env?: NodeJS.ProcessEnv;
  /** 'pipe' exposes `stdin`; the default gives the process /dev/null. */
  readonly stdin?: 'ignore' | 'pipe';
  readonly maxOutputBytes?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  readonly killGraceMs?: number;
  /**
   * Descriptors the process inherits beyond 0-2, without close-on-exec, as a launching shell's
   * `exec 251</etc/hostname` leaves them: its fd number -> this process's descriptor.
   */
  readonly extraFds?: Readonly<Record<number, number>>;
}

export interface StartedProcess {
  /** Also the process group id: the process leads its own group. */
  readonly pid: number;
  readonly stdin: Writable | null;
  readonly exited: Promise<ExitStatus>;
  exitStatus(): ExitStatus | undefined;
  stdout(): string;
  stderr(): string;
  /** Both streams, labelled, for error messages. */
  output(): string;
  /** Signals the leader only, e.g. to test the process's own shutdown. */
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM to the group, SIGKILL after the grace period; resolves once no live member is left. Idempotent. */
  stop(): Promise<ExitStatus>;
}

export function mergeEnv(env: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  const merged = { ...process.env, ...env };
  for (const [key, value] of Object.entries(merged)) if (value === undefined) delete merged[key];
  return merged;
}

function stdioWith(opts: StartOptions): Array<'ignore' | 'pipe' | number> {
  const stdio: Array<'ignore' | 'pipe' | number> = [opts.stdin ?? 'ignore', 'pipe', 'pipe'];
  for (const [fd, from] of Object.entries(opts.extraFds ?? {})) {
    while (stdio.length < Number(fd)) stdio.push('ignore');
    stdio[Number(fd)] = from;
  }
  return stdio;
}

/** Starts a long-running process in its own process group; `t` stops the whole group when it cleans up. */
export async function startProcess(
  t: Cleanup,
  cmd: string,
  args: readonly string[],
  opts: StartOptions = {},
): Promise<StartedProcess> {
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: mergeEnv(opts.env),
    detached: true,
    stdio: stdioWith(opts),
  });
  const { pid, stdout, stderr } = child;
  if (pid === undefined) {
    const [error] = (await once(child, 'error')) as [Error];
    throw new Error(`cannot start ${cmd}: ${error.message}`, { cause: error });
  }
  trackGroup(pid);
  if (stdout === null || stderr === null) throw new Error('spawn gave no stdout/stderr pipes');
  let status: ExitStatus | undefined;
  let stopping: Promise<ExitStatus> | undefined;
  const exited = new Promise<ExitStatus>((resolve) =>
    child.once('exit', (code, signal) => resolve((status = { code, signal }))),
  );
  const closed = once(child, 'close').catch(() => undefined);
  // The pipe breaks when the process dies; that must not crash the test process.
  child.stdin?.on('error', () => undefined);
  const maxBytes = opts.maxOutputBytes ?? 1024 * 1024;
  const out = new OutputBuffer(maxBytes);
  const err = new OutputBuffer(maxBytes);
  stdout.on('data', (chunk: Buffer) => out.push(chunk));
  stderr.on('data', (chunk: Buffer) => err.push(chunk));
  const what = `${cmd} (pid ${pid})`;

  const stopGroup = async (): Promise<ExitStatus> => {
    if (!(await groupIsGone(pid))) {
      killGroup(pid, 'SIGTERM');
      await waitFor(() => groupIsGone(pid), { timeoutMs: opts.killGraceMs ?? 3000, what }).catch(() => {
        killGroup(pid, 'SIGKILL');
      });
      await waitFor(() => groupIsGone(pid), { timeoutMs: 5000, what: `SIGKILL to end ${what}` }).catch(
        async (error: unknown) => {
          const left = (await liveGroupMembers(pid)).map((p) => `${p.pid} ${p.comm} (${p.state})`);
          throw new Error(`${what}: group survives SIGKILL: ${left.join(', ')}`, { cause: error });
        },
      );
    }
    untrackGroup(pid);
    const result = await withDeadline(exited, 5000, `exit of ${what}`);
    // A process outside the group may still hold the pipes; don't let that keep the test process alive.
    await withDeadline(closed, 1000, `close of ${what}'s output`).catch(() => undefined);
    stdout.destroy();
    stderr.destroy();
    child.stdin?.destroy();
    return result;
  };

  const handle: StartedProcess = {
    pid,
    stdin: child.stdin,
    exited,
    exitStatus: () => status,
    stdout: () => out.text(),
    stderr: () => err.text(),
    output: () => `--- ${what} stdout ---\n${out.text()}\n--- ${what} stderr ---\n${err.text()}`,
    signal: (signal) => {
      if (status === undefined) child.kill(signal);
    },
    stop: () => (stopping ??= stopGroup()),
  };
  defer(t, () => handle.stop());
  return handle;
}
