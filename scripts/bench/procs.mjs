// Every process the benchmark starts goes through here, so that all of them (and their process
// groups) are killed when the benchmark ends, fails, runs out of time or is interrupted.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

const groups = new Set();

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: already gone.
  }
}

/** Kills every process group still registered: TERM, and KILL to whatever is left. */
export function killAll() {
  for (const pid of groups) killGroup(pid, 'SIGTERM');
  if (groups.size > 0) spawnSync('sleep', ['0.3']);
  for (const pid of groups) killGroup(pid, 'SIGKILL');
  groups.clear();
}

/** Runs `fn` after the benchmark, however it ends. */
export function installCleanup(fn) {
  let ran = false;
  const cleanup = () => {
    if (ran) return;
    ran = true;
    try {
      fn();
    } finally {
      killAll();
    }
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}, cleaning up\n`);
      cleanup();
      process.exit(130);
    });
  }
  return cleanup;
}

/**
 * Starts a long-running process (a server) in its own process group, output to `logFile`.
 * Returns { pid, child, exited }.
 */
export function startServer(cmd, args, { env = process.env, cwd, logFile } = {}) {
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, { env, cwd, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  groups.add(child.pid);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  void exited.then(() => groups.delete(child.pid));
  child.on('error', () => {});
  return { pid: child.pid, child, exited };
}

export async function stopServer(server) {
  killGroup(server.pid, 'SIGTERM');
  const timer = setTimeout(() => killGroup(server.pid, 'SIGKILL'), 5000);
  await server.exited;
  clearTimeout(timer);
  groups.delete(server.pid);
}

/**
 * Runs a command to completion in its own process group, killed after `timeoutMs`.
 * stdin: a file path or 'ignore'; stdout: 'pipe' (collected), 'ignore' or a file path.
 * Resolves { code, signal, stdout, stderr, ms, timedOut }.
 */
export function run(
  cmd,
  args,
  { env = process.env, cwd, stdin = 'ignore', stdout = 'pipe', timeoutMs = 600_000 } = {},
) {
  const inFd = stdin === 'ignore' ? 'ignore' : openSync(stdin, 'r');
  const outFd = stdout === 'pipe' || stdout === 'ignore' ? stdout : openSync(stdout, 'w');
  const started = process.hrtime.bigint();
  const child = spawn(cmd, args, { env, cwd, detached: true, stdio: [inFd, outFd, 'pipe'] });
  if (typeof inFd === 'number') closeSync(inFd);
  if (typeof outFd === 'number') closeSync(outFd);
  groups.add(child.pid);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (s) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s) => (err = (err + s).slice(-4000)));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid, 'SIGKILL');
  }, timeoutMs);
  return new Promise((resolve) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      groups.delete(child.pid);
      resolve({ code: -1, signal: null, stdout: out, stderr: String(e), ms: 0, timedOut });
    });
    child.once('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      clearTimeout(timer);
      // The leader is gone; anything it left in its group goes too.
      killGroup(child.pid, 'SIGKILL');
      groups.delete(child.pid);
      resolve({ code, signal, stdout: out, stderr: err, ms, timedOut });
    });
  });
}
