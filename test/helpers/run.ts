import { spawn } from 'node:child_process';
import { killGroup, trackGroup, untrackGroup } from './process-groups.js';
import { mergeEnv } from './start-process.js';

export interface RunOptions {
  readonly cwd?: string;
  /** Merged over process.env; an undefined value removes the variable. */
  readonly env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  readonly input?: Buffer | string;
  readonly timeoutMs: number;
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

/**
 * Runs a command to completion and collects its output. On the deadline the whole process group is killed
 * (grandchildren too) and the promise rejects with what the command printed so far.
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: mergeEnv(opts.env),
      detached: true,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const { pid, stdout: outStream, stderr: errStream } = child;
    if (pid !== undefined) trackGroup(pid);
    if (outStream === null || errStream === null) throw new Error('spawn gave no stdout/stderr pipes');
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    outStream.on('data', (chunk: Buffer) => stdout.push(chunk));
    errStream.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    let done = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (pid !== undefined) killGroup(pid, 'SIGKILL');
      // 'close' may never come if something outside the group holds the pipes.
      setTimeout(() => finish(null, 'SIGKILL'), 1000).unref();
    }, opts.timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (pid !== undefined) {
        // A grandchild left running in the group would outlive the command otherwise.
        killGroup(pid, 'SIGKILL');
        untrackGroup(pid);
      }
      outStream.destroy();
      errStream.destroy();
      const result = { code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) };
      if (!timedOut) return resolve(result);
      const printed = result.stderr.toString('utf8').slice(-2000);
      reject(new Error(`timed out after ${opts.timeoutMs} ms: ${cmd} ${args.join(' ')}\n${printed}`));
    };
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${cmd}: ${error.message}`, { cause: error }));
    });
    child.once('close', finish);
    if (child.stdin !== null) {
      // A command that exits without reading all of its input makes the write fail with EPIPE; its exit
      // status is the interesting part.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });
}
