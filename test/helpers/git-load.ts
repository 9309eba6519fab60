import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { run } from './run.js';
import { git, gitEnv, randomCommits } from './repos.js';

export type GitOpKind = 'clone' | 'fetch' | 'push';

export interface GitOp {
  readonly index: number;
  readonly kind: GitOpKind;
  readonly repo: string;
  /** ms since the epoch */
  readonly start: number;
  readonly end: number;
  readonly ok: boolean;
  /** git's stderr (and stdout) when it failed. */
  readonly output: string;
  /** A push: the ref it updated and the commit; `accepted` when git reported the update done. */
  readonly push?: { readonly ref: string; readonly commit: string; readonly accepted: boolean };
}

export interface GitLoad {
  /** One new commit per push, each on top of `base`, in a bare repository that has them all. */
  readonly objects: string;
  readonly commits: readonly string[];
  /** Directory for clones and the fetchers' repositories. */
  readonly scratch: string;
}

/**
 * What git-load runs against: `pushes` small commits (1 KB each) on top of `base`, which every
 * repository served must have (createBareRepo with equal options gives equal histories).
 */
export async function prepareGitLoad(
  t: Cleanup,
  scratch: string,
  from: string,
  base: string,
  pushes: number,
): Promise<GitLoad> {
  const objects = join(scratch, 'objects.git');
  await git(t, ['init', '-q', '--bare', objects]);
  await git(t, ['fetch', '-q', from, `${base}:refs/heads/base`], { cwd: objects });
  const commits = await randomCommits(t, objects, base, pushes, 1024);
  return { objects, commits, scratch };
}

export interface RunGitLoadOptions {
  readonly url: (repo: string) => string;
  readonly repos: readonly string[];
  readonly ops: number;
  readonly concurrency: number;
  /** Runs once after each operation ends, in order; the next operation starts only after it. */
  readonly after?: (done: readonly GitOp[]) => void | Promise<void>;
  /** Keep going past `ops` while this is true (e.g. until a restarted host has served again). */
  readonly more?: (done: readonly GitOp[]) => boolean;
  readonly timeoutMs?: number;
  /** Pushes create refs/heads/PREFIX-N (default `load`): another run on the same repositories needs another. */
  readonly refPrefix?: string;
}

/** Two clones, two fetches and a push in every five operations, spread over the repositories. */
export function kindOf(index: number): GitOpKind {
  return (['clone', 'fetch', 'push', 'fetch', 'clone'] as const)[index % 5] ?? 'clone';
}

/**
 * `ops` git operations (clone --bare, fetch of every branch, push of a new branch) by
 * `concurrency` workers; each failure is recorded, not thrown. Pushes use `load.commits` in
 * order: there must be one per push.
 */
export async function runGitLoad(t: Cleanup, load: GitLoad, opts: RunGitLoadOptions): Promise<GitOp[]> {
  const env = await gitEnv(t);
  const done: GitOp[] = [];
  let next = 0;
  let pushes = 0;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const wantMore = (): boolean => next < opts.ops || (opts.more?.(done) ?? false);
  let hooks = Promise.resolve();

  const worker = async (w: number): Promise<void> => {
    const fetcher = join(load.scratch, `fetcher-${w}.git`);
    await git(t, ['init', '-q', '--bare', fetcher]);
    await git(t, ['fetch', '-q', load.objects, 'refs/heads/base:refs/heads/base'], { cwd: fetcher });
    while (wantMore()) {
      const index = next++;
      const kind = kindOf(index);
      const repo = opts.repos[(index * 7 + w) % opts.repos.length] ?? '';
      const url = opts.url(repo);
      let args: string[];
      let cwd = load.scratch;
      let push: { ref: string; commit: string } | undefined;
      const target = join(load.scratch, `clone-${index}.git`);
      if (kind === 'clone') args = ['clone', '-q', '--bare', url, target];
      else if (kind === 'fetch') {
        args = ['fetch', '-q', url, '+refs/heads/*:refs/remotes/r/*'];
        cwd = fetcher;
      } else {
        const commit = load.commits[pushes++];
        if (commit === undefined) throw new Error(`not enough commits for push ${pushes}`);
        push = { ref: `refs/heads/${opts.refPrefix ?? 'load'}-${index}`, commit };
        args = ['push', '--porcelain', url, `${commit}:${push.ref}`];
        cwd = load.objects;
      }
      const start = Date.now();
      const result = await run('git', args, { cwd, env, timeoutMs }).catch((err: unknown) => ({
        code: null,
        signal: null,
        stdout: Buffer.alloc(0),
        stderr: Buffer.from(String(err)),
      }));
      const end = Date.now();
      const stdout = result.stdout.toString();
      const ok = result.code === 0;
      done.push({
        index,
        kind,
        repo,
        start,
        end,
        ok,
        output: ok ? '' : `${result.stderr.toString()}${stdout}`,
        ...(push === undefined
          ? {}
          : {
              push: {
                ...push,
                accepted: ok && new RegExp(`^\\*\\t[0-9a-f]+:${push.ref}\\t`, 'm').test(stdout),
              },
            }),
      });
      if (kind === 'clone') await rm(target, { recursive: true, force: true });
      hooks = hooks.then(() => opts.after?.(done));
      await hooks;
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, (_, w) => worker(w)));
  return done;
}
