import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { withDeadline } from '../helpers/deadline.js';
import { Rng } from '../helpers/fcgi-fuzz.js';
import type { Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, startProcess } from '../helpers/proc.js';
import { createBareRepo, git, gitEnv, randomCommits } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { startGitStack } from '../helpers/stack.js';

const SEED = Number(process.env.FUZZ_SEED ?? 777);

interface Push {
  readonly repo: string;
  readonly ref: string;
  readonly commit: string;
}

/**
 * 20 concurrent `git push`es, a seeded quarter of them killed at a random moment. Every push the
 * client saw accepted must be there, and the repositories must be whole.
 */
describe('push integrity under concurrency and killed clients', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let work: string;
  let base: string;
  let nginx: Nginx;

  before(async () => {
    root = await tmpDir(suite, 'pushes-');
    base = (await createBareRepo(suite, root, 'one.git')).head;
    for (let i = 0; i < 20; i++) await createBareRepo(suite, root, `many/r${i}.git`);
    work = await tmpDir(suite, 'work-');
    await git(suite, ['init', '-q', '--bare', work]);
    await git(suite, ['fetch', '-q', join(root, 'one.git'), 'main'], { cwd: work });
    ({ nginx } = await startGitStack(suite, root, {
      args: ['--export-all'],
      location: { extra: 'fastcgi_param REMOTE_USER alice;' },
    }));
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  /** Runs the pushes at once, kills some; returns which ones the client saw accepted. */
  async function pushAll(t: Cleanup, pushes: readonly Push[], rng: Rng): Promise<boolean[]> {
    const env = await gitEnv(t);
    const procs = await Promise.all(
      pushes.map((p) =>
        startProcess(t, 'git', ['push', '--porcelain', nginx.url(0, `/${p.repo}`), `${p.commit}:${p.ref}`], {
          cwd: work,
          env,
        }),
      ),
    );
    const kills = procs.map(async (proc) => {
      if (!rng.chance(0.25)) return;
      await sleep(rng.int(600));
      try {
        process.kill(-proc.pid, 'SIGKILL');
      } catch {
        // already done
      }
    });
    await Promise.all(kills);
    const statuses = await withDeadline(Promise.all(procs.map((p) => p.exited)), 60_000, 'all pushes to end');
    return statuses.map((s, i) => s.code === 0 && /^\*|^ /m.test(procs[i]?.stdout() ?? ''));
  }

  async function refOf(repo: string, ref: string): Promise<string | null> {
    const result = await git(suite, ['for-each-ref', '--format=%(objectname)', ref], {
      cwd: join(root, repo),
    });
    return result.stdout.toString().trim() || null;
  }

  async function assertSound(repo: string): Promise<void> {
    const fsck = await git(suite, ['fsck', '--full', '--no-progress', '--no-dangling'], {
      cwd: join(root, repo),
    });
    assert.equal(fsck.stdout.toString() + fsck.stderr.toString(), '', `git fsck ${repo}`);
  }

  test('20 pushes to one repository: 15 new branches and 5 racing for main', async (t) => {
    const rng = new Rng(SEED);
    const commits = await randomCommits(t, work, base, 20, 1024 * 1024);
    const pushes: Push[] = commits.map((commit, i) => ({
      repo: 'one.git',
      ref: i < 15 ? `refs/heads/b${i}` : 'refs/heads/main',
      commit,
    }));
    const accepted = await pushAll(t, pushes, rng);
    await assertSound('one.git');
    for (const [i, push] of pushes.entries()) {
      const now = await refOf('one.git', push.ref);
      if (i < 15) {
        if (accepted[i]) assert.equal(now, push.commit, `accepted push ${i} is there`);
        else assert.ok(now === null || now === push.commit, `push ${i}: ref is absent or whole`);
      }
    }
    const racers = pushes.slice(15);
    const main = await refOf('one.git', 'refs/heads/main');
    assert.ok(main === base || racers.some((p) => p.commit === main), 'main is the base or one racer');
    const winners = racers.filter((_, i) => accepted[15 + i]);
    assert.ok(winners.length <= 1, 'at most one racer can fast-forward main');
    if (winners[0] !== undefined) assert.equal(main, winners[0].commit);
    t.diagnostic(
      `${accepted.filter(Boolean).length} of 20 accepted; main ${main === base ? 'unchanged' : 'moved'}`,
    );
  });

  test('20 pushes to 20 repositories', async (t) => {
    const rng = new Rng(SEED + 1);
    const commits = await randomCommits(t, work, base, 20, 1024 * 1024);
    // Each repository has its own seed history; push a commit on top of one.git's base to a new branch.
    const pushes: Push[] = commits.map((commit, i) => ({
      repo: `many/r${i}.git`,
      ref: 'refs/heads/pushed',
      commit,
    }));
    const accepted = await pushAll(t, pushes, rng);
    for (const [i, push] of pushes.entries()) {
      await assertSound(push.repo);
      const now = await refOf(push.repo, push.ref);
      if (accepted[i]) assert.equal(now, push.commit, `accepted push ${i} is there`);
      else assert.ok(now === null || now === push.commit, `push ${i}: ref is absent or whole`);
    }
    t.diagnostic(`${accepted.filter(Boolean).length} of 20 accepted`);
  });
});
