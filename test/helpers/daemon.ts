import { access, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cleanup } from './cleanup.js';
import { DeadlineError, waitFor, withDeadline } from './deadline.js';
import type { InstalledGit } from './git-versions.js';
import { acceptsTcp, acceptsUnix } from './net-probe.js';
import { startProcess, type ExitStatus, type StartedProcess } from './proc.js';

// Compiled to dist-test/test/helpers/daemon.js; the package root is three levels up.
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const cliPath = resolve(repoRoot, 'dist/cli.js');

export interface GitFcgi {
  readonly pid: number;
  /** From `--listen unix:PATH`, resolved against cwd. */
  readonly socket?: string;
  /** From the daemon's "listening on http://HOST:PORT" line, so `--http 127.0.0.1:0` works. */
  readonly httpPort?: number;
  /** Everything the daemon printed so far. */
  logs(): string;
  /** Sends `signal` (default SIGTERM) to the daemon alone and waits up to 10 s for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<ExitStatus>;
}

export interface StartGitFcgiOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly readyTimeoutMs?: number;
  /** The script node runs instead of dist/cli.js; lets the harness test its readiness logic on a fixture. */
  readonly script?: string;
  /**
   * With a config file git-fcgi refuses to run as root without `allow_root` or `user`; tests run
   * as root, so `--allow-root` is added unless this is false or the args choose (`--user`).
   */
  readonly allowRoot?: boolean;
  /**
   * Run the daemon as if this git were the one installed (test/helpers/git-versions.ts): its
   * default backend, `git --exec-path` and the direct ref advertisement are that git's. The
   * wrapper execs the daemon, so `pid` is still the daemon's.
   */
  readonly git?: InstalledGit;
  /** Descriptors the daemon inherits beyond 0-2 (see StartOptions). */
  readonly extraFds?: Readonly<Record<number, number>>;
}

/** `args` plus `--allow-root` when git-fcgi would otherwise refuse to start as root in a test. */
export function withAllowRoot(args: readonly string[], opts: StartGitFcgiOptions = {}): readonly string[] {
  const chooses = ['--user', '--allow-root'].some((flag) =>
    args.some((arg) => arg === flag || arg.startsWith(`${flag}=`)),
  );
  if (opts.script !== undefined || opts.allowRoot === false || chooses || process.getuid?.() !== 0)
    return args;
  return [...args, '--allow-root'];
}

/** The value of `--name VALUE` or `--name=VALUE`. */
export function optionValue(args: readonly string[], name: string): string | undefined {
  for (const [i, arg] of args.entries()) {
    if (arg === name) return args[i + 1];
    if (arg.startsWith(`${name}=`)) return arg.slice(name.length + 1);
  }
  return undefined;
}

/**
 * What `--listen` asks for: unix:PATH or /PATH is a socket; [tcp:]HOST:PORT a port, which can only be waited
 * for when it is not 0.
 */
export function parseListen(
  value: string | undefined,
  cwd: string,
): { readonly socket?: string; readonly host?: string; readonly port?: number } | undefined {
  if (value === undefined) return undefined;
  if (value.startsWith('unix:')) return { socket: resolve(cwd, value.slice('unix:'.length)) };
  if (value.startsWith('/')) return { socket: value };
  const match = /^(?:tcp:)?(.+):(\d+)$/.exec(value);
  const port = Number(match?.[2] ?? 0);
  return match?.[1] === undefined || port === 0 ? {} : { host: match[1].replace(/^\[|\]$/g, ''), port };
}

/** Runs `node dist/cli.js ...args` in its own process group and waits until it serves what args ask for. */
export async function startGitFcgi(
  t: Cleanup,
  args: readonly string[],
  opts: StartGitFcgiOptions = {},
): Promise<GitFcgi> {
  const script = opts.script ?? cliPath;
  await access(script).catch(() => {
    throw new Error(`${script} is missing: run \`npm run build\` first`);
  });
  const cwd = opts.cwd ?? process.cwd();
  args = withAllowRoot(args, opts);
  const command = opts.git?.command(process.execPath, [script, ...args]) ?? {
    cmd: process.execPath,
    args: [script, ...args],
  };
  const proc = await startProcess(t, command.cmd, command.args, {
    cwd,
    ...(opts.env === undefined ? {} : { env: opts.env }),
    ...(opts.extraFds === undefined ? {} : { extraFds: opts.extraFds }),
  });
  const listen = parseListen(optionValue(args, '--listen'), cwd);
  const socket = listen?.socket;
  const wantsHttp = optionValue(args, '--http') !== undefined;
  let httpPort: number | undefined;

  const ready = async (): Promise<boolean> => {
    const status = proc.exitStatus();
    if (status !== undefined) throw new Error(`git-fcgi exited early (${status.signal ?? status.code})`);
    if (socket !== undefined) {
      const isSocket = await stat(socket).then(
        (s) => s.isSocket(),
        () => false,
      );
      if (!isSocket || !(await acceptsUnix(socket))) return false;
    }
    if (listen?.port !== undefined && !(await acceptsTcp(listen.port, listen.host))) return false;
    if (wantsHttp && httpPort === undefined) {
      const match = /listening on http:\/\/[^\s:]+:(\d+)/.exec(proc.stderr());
      if (match?.[1] === undefined) return false;
      httpPort = Number(match[1]);
    }
    return true;
  };
  try {
    await waitFor(ready, {
      timeoutMs: opts.readyTimeoutMs ?? 10_000,
      what: `git-fcgi ${args.join(' ')}${opts.git === undefined ? '' : ` (git ${opts.git.version})`} to be ready`,
    });
  } catch (error) {
    await proc.stop();
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(`${why}\n${proc.output()}`, { cause: error });
  }
  return {
    pid: proc.pid,
    ...(socket === undefined ? {} : { socket }),
    ...(httpPort === undefined ? {} : { httpPort }),
    logs: () => proc.output(),
    stop: (signal = 'SIGTERM') => stopDaemon(proc, signal),
  };
}

async function stopDaemon(proc: StartedProcess, signal: NodeJS.Signals): Promise<ExitStatus> {
  proc.signal(signal);
  try {
    return await withDeadline(proc.exited, 10_000, `git-fcgi to exit after ${signal}`);
  } catch (error) {
    if (!(error instanceof DeadlineError)) throw error;
    await proc.stop();
    throw new Error(`${error.message}\n${proc.output()}`, { cause: error });
  }
}
