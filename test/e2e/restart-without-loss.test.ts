import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cleanup } from '../helpers/cleanup.js';
import { withDeadline } from '../helpers/deadline.js';
import { prepareGitLoad, runGitLoad, type GitOp } from '../helpers/git-load.js';
import { TIMELINE_FORMAT, countByKind, readTimeline, timelineLog } from '../helpers/nginx-timeline.js';
import { gitLocation, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { createBareRepo, git, gitEnv, randomBlobRepo } from '../helpers/repos.js';
import { startSocketActivated, type SocketActivated } from '../helpers/socket-activation.js';
import { tmpDir } from '../helpers/tmp.js';

const REPOS = ['r0.git', 'r1.git', 'r2.git'];
const OPS = 60;

interface Stack {
  readonly root: string;
  readonly ini: string;
  readonly service: SocketActivated;
  readonly nginx: Nginx;
  readonly accessLog: string;
}

/** git-fcgi under socket activation (the socket held across starts), nginx in front. */
async function startStack(t: Cleanup, name: string): Promise<Stack> {
  const root = await tmpDir(t, `${name}-`);
  for (const repo of REPOS) await createBareRepo(t, root, repo, { commits: 3 });
  // Cloned at 1 MB/s (limit_rate below): a request that is still running when a restart begins.
  await randomBlobRepo(t, root, 'big.git', { bytes: 3 * 1024 * 1024 });
  const dir = await tmpDir(t, 'ini-');
  const ini = join(dir, 'git-fcgi.ini');
  await writeFile(ini, '[server]\nmax_children = 8\n[git]\nexport_all = true\n');
  const sock = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
  const service = await startSocketActivated(t, sock, ['-c', ini, '--project-root', root]);
  const accessLog = join(dir, 'access.log');
  const nginx = await startNginx(t, {
    httpExtra: TIMELINE_FORMAT,
    servers: [
      {
        locations: [
          gitLocation({ socket: sock, extra: 'fastcgi_param REMOTE_USER alice;' }),
          gitLocation({ socket: sock, path: '/big.git/', extra: 'limit_rate 1m;' }),
        ].join('\n'),
        extra: timelineLog(accessLog),
      },
    ],
  });
  return { root, ini, service, nginx, accessLog };
}

/** info/refs requests one after another on `streams` connections until `until` resolves: requests that arrive at any moment. */
async function refsStream(
  nginx: Nginx,
  streams: number,
  until: Promise<unknown>,
): Promise<{ ok: number; failed: string[] }> {
  let stop = false;
  void until.finally(() => (stop = true));
  const failed: string[] = [];
  let ok = 0;
  await Promise.all(
    Array.from({ length: streams }, async (_, s) => {
      for (let i = 0; !stop; i++) {
        const url = nginx.url(0, `/${REPOS[(s + i) % REPOS.length] ?? ''}/info/refs?service=git-upload-pack`);
        try {
          const response = await fetch(url);
          const body = await response.text();
          if (response.status === 200 && body.startsWith('001e# service=git-upload-pack')) ok++;
          else failed.push(`${response.status} ${body.slice(0, 80)}`);
        } catch (err) {
          failed.push(String(err));
        }
        // A small pause: a stream of requests, not a flood that only measures the machine.
        await sleep(10);
      }
    }),
  );
  return { ok, failed };
}

async function checkPushes(t: Cleanup, root: string, ops: readonly GitOp[]): Promise<number> {
  let found = 0;
  for (const op of ops) {
    if (op.push?.accepted !== true) continue;
    const ref = await git(t, ['for-each-ref', '--format=%(objectname)', op.push.ref], {
      cwd: join(root, op.repo),
    });
    assert.equal(ref.stdout.toString().trim(), op.push.commit, `accepted push ${op.push.ref} to ${op.repo}`);
    found++;
  }
  for (const repo of REPOS) {
    const fsck = await git(t, ['fsck', '--full', '--no-progress', '--no-dangling'], {
      cwd: join(root, repo),
    });
    assert.equal(fsck.stdout.toString() + fsck.stderr.toString(), '', `fsck ${repo}`);
  }
  return found;
}

/** Something done to git-fcgi once `at` git operations have ended. */
interface Action {
  readonly at: number;
  readonly run: () => Promise<unknown>;
}

/**
 * Under a stream of clones, fetches, pushes and ref advertisements, restarts or reloads
 * git-fcgi at set points of the load. Not one request may fail.
 */
async function underLoad(
  t: Cleanup & { diagnostic(message: string): void },
  stack: Stack,
  planned: readonly Action[],
): Promise<GitOp[]> {
  const load = await prepareGitLoad(
    t,
    await tmpDir(t, 'load-'),
    join(stack.root, 'r0.git'),
    (await git(t, ['rev-parse', 'main'], { cwd: join(stack.root, 'r0.git') })).stdout.toString().trim(),
    OPS / 5,
  );
  const actions: Array<Promise<unknown>> = [];
  const pending = [...planned];
  let ended: () => void = () => {};
  const gitDone = new Promise<void>((resolve) => (ended = resolve));
  const stream = refsStream(stack.nginx, 3, gitDone);
  const started = Date.now();
  const ops = await runGitLoad(t, load, {
    url: (repo) => stack.nginx.url(0, `/${repo}`),
    repos: REPOS,
    ops: OPS,
    concurrency: 5,
    after: (done) => {
      while (pending[0] !== undefined && done.length >= pending[0].at) {
        const action = pending.shift();
        if (action !== undefined) actions.push(action.run());
      }
    },
  }).finally(ended);
  await withDeadline(Promise.all(actions), 120_000, 'the restarts and reloads to finish');
  const refs = await stream;
  const failedOps = ops.filter((op) => !op.ok);
  const requests = await readTimeline(stack.accessLog);
  const failedRequests = requests.filter((r) => r.status !== 200 || !r.complete);
  t.diagnostic(
    `${ops.length} git operations and ${requests.length} requests (${JSON.stringify(countByKind(requests))}) ` +
      `in ${Date.now() - started} ms; failed: ${failedOps.length} operations, ${failedRequests.length} requests, ` +
      `${refs.failed.length} of ${refs.ok + refs.failed.length} ref advertisements`,
  );
  assert.deepEqual(
    failedOps.map((op) => `${op.kind} ${op.repo}: ${op.output}`),
    [],
    stack.service.proc.output(),
  );
  assert.deepEqual(refs.failed, []);
  assert.deepEqual(
    failedRequests.map((r) => `${r.status} ${r.method} ${r.uri}`),
    [],
  );
  const pushed = await checkPushes(t, stack.root, ops);
  t.diagnostic(`${pushed} pushes accepted, all present; fsck clean`);
  await assertNoGitProcesses(stack.root, { withinMs: 3000 });
  return ops;
}

describe('restart without loss: the socket stays with the service manager', () => {
  test('git-fcgi keeps the queue of the socket it inherits as long as the kernel allows', async (t) => {
    const root = await tmpDir(t, 'backlog-');
    const sock = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
    await startSocketActivated(t, sock, ['--project-root', root, '--export-all']);
    // Node would listen(2) again with 511: every connection past that during a restart is refused.
    const somaxconn = Number((await readFile('/proc/sys/net/core/somaxconn', 'utf8')).trim());
    const ss = (await run('ss', ['-xlnH'], { timeoutMs: 10_000 })).stdout.toString();
    const line = ss.split('\n').find((l) => l.includes(` ${sock} `));
    assert.ok(line !== undefined, ss);
    assert.equal(Number(line.trim().split(/\s+/)[3]), somaxconn, line);
  });

  test('systemctl restart, twice under load: no request fails; those arriving meanwhile wait in the backlog', async (t) => {
    const stack = await startStack(t, 'restart');
    const restart = (): Promise<unknown> => stack.service.restart();
    let slowClone: { ok: boolean; ms: number; output: string } | undefined;
    // The first restart begins while a slow clone runs: the old git-fcgi finishes it first.
    const restartDuringClone = async (): Promise<void> => {
      const dest = join(await tmpDir(t, 'slow-'), 'big');
      const started = Date.now();
      const clone = run('git', ['clone', '-q', '--bare', stack.nginx.url(0, '/big.git'), dest], {
        env: await gitEnv(t),
        timeoutMs: 60_000,
      });
      await sleep(1000);
      await restart();
      const result = await clone;
      slowClone = { ok: result.code === 0, ms: Date.now() - started, output: result.stderr.toString() };
    };
    await underLoad(t, stack, [
      { at: 15, run: restartDuringClone },
      { at: 40, run: restart },
    ]);
    assert.ok(slowClone?.ok === true, slowClone?.output);
    t.diagnostic(
      `the 3 MB clone at 1 MB/s running at the first restart took ${slowClone.ms} ms and succeeded`,
    );
    const requests = await readTimeline(stack.accessLog);
    const events = stack.service.events();
    const generations = stack.service.generations();
    assert.equal(generations.length, 3, 'two restarts, three git-fcgi processes');
    for (const [i, next] of generations.slice(1).entries()) {
      const old = generations[i];
      const term = events.find((e) => e.event === 'signalled' && e.pid === old?.pid);
      const exit = events.find((e) => e.event === 'exited' && e.pid === old?.pid);
      assert.ok(term !== undefined && exit !== undefined, JSON.stringify(events));
      assert.equal(exit.code, 0, 'the old git-fcgi exits 0 after SIGTERM');
      // From SIGTERM until the new process listens, only the socket's backlog takes connections.
      const gap = requests.filter((r) => r.start >= term.at && r.start < next.readyAt);
      const servedAfter = gap.filter((r) => r.end >= next.readyAt);
      const longest = Math.max(0, ...gap.map((r) => r.end - r.start));
      t.diagnostic(
        `restart ${i + 1}: SIGTERM to exit ${exit.at - term.at} ms, exit to listening ${next.readyAt - exit.at} ms; ` +
          `${gap.length} requests arrived meanwhile (${JSON.stringify(countByKind(gap))}), ` +
          `${servedAfter.length} served once the new process listened; longest wait ${longest} ms`,
      );
      assert.ok(servedAfter.length > 0, 'requests arrived during the restart and were served after it');
      assert.ok(gap.every((r) => r.status === 200 && r.complete));
    }
  });

  test('systemctl reload (SIGHUP), three times under load with a changed file: no request fails', async (t) => {
    const stack = await startStack(t, 'reload');
    const reload = (n: number) => async (): Promise<void> => {
      const settings = `max_children = ${n % 2 === 0 ? 8 : 6}\nqueue_timeout = ${20 + n}s`;
      await writeFile(stack.ini, `[server]\n${settings}\n[git]\nexport_all = true\n`);
      await stack.service.reload();
    };
    await underLoad(t, stack, [
      { at: 12, run: reload(1) },
      { at: 28, run: reload(2) },
      { at: 45, run: reload(3) },
    ]);
    const reloaded = stack.service.proc.stderr().match(/configuration reloaded/g)?.length ?? 0;
    assert.equal(reloaded, 3, stack.service.proc.stderr());
    assert.equal(stack.service.generations().length, 1, 'one process throughout');
  });
});
