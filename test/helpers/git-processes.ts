import assert from 'node:assert/strict';
import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DeadlineError, waitFor } from './deadline.js';
import { listProcesses, readCwd, readEnviron, type ProcStat } from './procfs.js';

export interface GitProcess extends ProcStat {
  /** Why it counts as under the directory: its cwd, its GIT_PROJECT_ROOT/GIT_DIR, or 'zombie child of ours'. */
  readonly reason: string;
  /** A zombie git-fcgi-spawnd keeps on purpose while the daemon may still signal its group. */
  readonly heldByHelper?: true;
}

/**
 * How long git-fcgi-spawnd may keep a killed backend's leader as a zombie: until the daemon has
 * sent the SIGKILL that ends kill_grace (2 s by default), so that the group id stays its own
 * (see 'R' in src/native/spawnd.c). Allowed on top of the caller's window, and only to those.
 */
const HELD_FOR_KILL_GRACE_MS = 3000;

// comm is the executable's name cut to 15 characters: git, git-http-backen, git-upload-pack, git-pack-object, ...
// The daemon under test may call itself git-fcgi; it is not a git process.
const isGitComm = (comm: string): boolean =>
  comm === 'git' || (comm.startsWith('git-') && !comm.startsWith('git-fcgi'));

const inside = (path: string, roots: readonly string[]): boolean =>
  roots.some((root) => path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`));

/**
 * Live git processes whose cwd, GIT_PROJECT_ROOT or GIT_DIR lies inside `dir`, plus git zombies whose parent
 * descends from this test process. A zombie has no cwd or environment left to inspect, but one still held by
 * a process we started means that process has not reaped it — the leak the caller is looking for. Zombies
 * already handed to init are not ours to explain.
 */
export async function listGitProcessesUnder(dir: string): Promise<GitProcess[]> {
  const roots = [resolve(dir)];
  const real = await realpath(dir).catch(() => undefined);
  if (real !== undefined && real !== roots[0]) roots.push(real);
  const all = await listProcesses();
  const parentOf = new Map(all.map((p) => [p.pid, p.ppid]));
  const helpers = new Set(all.filter((p) => p.comm === 'git-fcgi-spawnd').map((p) => p.pid));
  const descendsFromUs = (pid: number): boolean => {
    for (let p = parentOf.get(pid); p !== undefined && p > 1; p = parentOf.get(p))
      if (p === process.pid) return true;
    return false;
  };
  const found: GitProcess[] = [];
  for (const proc of all.filter((p) => isGitComm(p.comm))) {
    if (proc.state === 'Z') {
      if (!descendsFromUs(proc.pid)) continue;
      if (helpers.has(proc.ppid)) {
        found.push({ ...proc, reason: `zombie held by git-fcgi-spawnd ${proc.ppid}`, heldByHelper: true });
      } else found.push({ ...proc, reason: `zombie child of ${proc.ppid}` });
      continue;
    }
    const cwd = await readCwd(proc.pid);
    const env = await readEnviron(proc.pid);
    const envPath = ['GIT_PROJECT_ROOT', 'GIT_DIR']
      .map((name) => [name, env.get(name)] as const)
      .find(([, value]) => value !== undefined && inside(resolve(cwd ?? '/', value), roots));
    if (cwd !== undefined && inside(cwd, roots)) found.push({ ...proc, reason: `cwd ${cwd}` });
    else if (envPath !== undefined) found.push({ ...proc, reason: `${envPath[0]}=${envPath[1] ?? ''}` });
  }
  return found;
}

export async function gitProcessesUnder(dir: string): Promise<number[]> {
  return (await listGitProcessesUnder(dir)).map((p) => p.pid);
}

/**
 * Waits up to `withinMs` for every git process under `dir` to end (a leader git-fcgi-spawnd
 * holds for kill_grace: up to HELD_FOR_KILL_GRACE_MS more); fails listing the survivors.
 */
export async function assertNoGitProcesses(
  dir: string,
  { withinMs }: { readonly withinMs: number },
): Promise<void> {
  await settle(dir, (p) => p.heldByHelper !== true, withinMs);
  await settle(dir, () => true, HELD_FOR_KILL_GRACE_MS);
}

async function settle(dir: string, counts: (p: GitProcess) => boolean, withinMs: number): Promise<void> {
  const left = async (): Promise<GitProcess[]> => (await listGitProcessesUnder(dir)).filter(counts);
  try {
    await waitFor(async () => (await left()).length === 0, {
      timeoutMs: withinMs,
      what: `git processes under ${dir} to end`,
    });
  } catch (error) {
    if (!(error instanceof DeadlineError)) throw error;
    // Under load one scan of /proc can outlast a short window and be cut off before it reports:
    // judge by a scan that finishes.
    const survivors = await left();
    if (survivors.length === 0) return;
    const lines = survivors.map(
      (p) => `  pid ${p.pid} ${p.comm} state ${p.state} ppid ${p.ppid}: ${p.reason}`,
    );
    assert.fail(
      `${survivors.length} git process(es) under ${dir} still there after ${withinMs} ms:\n${lines.join('\n')}`,
    );
  }
}
