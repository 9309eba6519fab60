import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { RecordType } from '../../src/fastcgi/constants.js';
import { RecordParser } from '../../src/fastcgi/record-parser.js';
import { encodeRecord } from '../../src/fastcgi/record-writer.js';
import { defer, suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { beginRequest, gitParams, paramsRecords, stdinRecords } from '../helpers/fcgi-client.js';
import { htpasswd, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { git, gitEnv } from '../helpers/repos.js';
import { shippedNginx, shippedNginxConfig } from '../helpers/shipped-nginx.js';
import { textHistoryRepo } from '../helpers/text-history.js';
import { tmpDir } from '../helpers/tmp.js';

/** The burst of issue 14: a CI fleet fetching at once. git does not retry a 503, so none may fail. */
const CLIENTS = 32;
const BURST_DEADLINE_MS = 120_000;

interface Figures {
  readonly active: number;
  readonly queued: number;
  readonly max_children: number;
  readonly queue_size: number;
  readonly spawned: number;
  readonly responses: Readonly<Record<string, number>>;
}

/**
 * git-fcgi with nothing but what the test needs to watch it (status_path) and to serve the
 * repositories (export_all): queue, queue_timeout and max_children are the defaults. In front,
 * etc/nginx/git-fcgi.conf as shipped.
 */
async function defaultStack(
  t: Cleanup,
  root: string,
  args: readonly string[] = [],
): Promise<{ daemon: GitFcgi; nginx: Nginx; sock: string; status: () => Promise<Figures> }> {
  const sock = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
  const ini = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
  await writeFile(ini, '[server]\nstatus_path = /git-fcgi-status\n[git]\nexport_all = true\n');
  const daemon = await startGitFcgi(t, [
    '-c',
    ini,
    '--listen',
    `unix:${sock}`,
    '--project-root',
    root,
    ...args,
  ]);
  const users = await htpasswd(t, await tmpDir(t, 'users-'), {});
  const nginx = await startNginx(
    t,
    shippedNginxConfig([await shippedNginx({ root, htpasswd: users, socket: sock })]),
  );
  const status = async (): Promise<Figures> =>
    (await (await fetch(nginx.url(0, '/git-fcgi-status?json'))).json()) as Figures;
  return { daemon, nginx, sock, status };
}

/** The most requests seen queued and running while `work` runs, sampled every 50 ms. */
async function watchQueue<T>(
  status: () => Promise<Figures>,
  work: Promise<T>,
): Promise<{ result: T; maxQueued: number; maxActive: number }> {
  let done = false;
  let maxQueued = 0;
  let maxActive = 0;
  const watcher = (async () => {
    while (!done) {
      const figures = await status();
      maxQueued = Math.max(maxQueued, figures.queued);
      maxActive = Math.max(maxActive, figures.active);
      await sleep(50);
    }
  })();
  try {
    return { result: await work, maxQueued, maxActive };
  } finally {
    done = true;
    await withDeadline(watcher, 10_000, 'the status watcher to stop');
  }
}

interface Outcome {
  readonly ok: boolean;
  readonly output: string;
  readonly ms: number;
}

/** `CLIENTS` git commands at once, each in its own directory; every failure is kept, not thrown. */
async function burst(t: Cleanup, scratch: string, command: (dir: string) => string[]): Promise<Outcome[]> {
  const env = await gitEnv(t);
  return Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const dir = join(scratch, `client-${i}.git`);
      const started = Date.now();
      const result = await run('git', command(dir), { env, timeoutMs: BURST_DEADLINE_MS }).catch(
        (err: unknown) => ({ code: null, stderr: Buffer.from(String(err)) }),
      );
      return { ok: result.code === 0, output: result.stderr.toString(), ms: Date.now() - started };
    }),
  );
}

function summary(outcomes: readonly Outcome[]): string {
  const ms = outcomes.map((o) => o.ms).sort((a, b) => a - b);
  return `${outcomes.filter((o) => !o.ok).length} failed; per client ${ms[0] ?? 0}-${ms.at(-1) ?? 0} ms, median ${ms[ms.length >> 1] ?? 0} ms`;
}

describe('a burst of git clients, with the default queue, queue_timeout and max_children', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let head: string;
  let stack: Awaited<ReturnType<typeof defaultStack>>;

  before(async () => {
    root = await tmpDir(suite, 'repos-');
    // Enough for 32 depth-1 fetches to take several times as long as one on two CPUs.
    ({ head } = await textHistoryRepo(suite, root, 'big.git', { files: 600, commits: 5, lines: 100 }));
    stack = await defaultStack(suite, root);
  });

  test(`${CLIENTS} concurrent git fetch --depth 1 of one repository: none fails, the queue is used`, async (t) => {
    const scratch = await tmpDir(t, 'fetch-');
    const url = stack.nginx.url(0, '/big.git');
    await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) =>
        git(t, ['init', '-q', '--bare', join(scratch, `client-${i}.git`)]),
      ),
    );
    const started = Date.now();
    const { result, maxQueued, maxActive } = await watchQueue(
      stack.status,
      burst(t, scratch, (dir) => ['-C', dir, 'fetch', '-q', '--depth', '1', url, 'main']),
    );
    const wallMs = Date.now() - started;
    const failed = result.filter((o) => !o.ok);
    assert.deepEqual(
      failed.map((o) => o.output),
      [],
      summary(result),
    );
    const { max_children: maxChildren } = await stack.status();
    assert.ok(maxQueued > 0, `requests waited in the queue (at most ${maxQueued})`);
    assert.ok(maxActive <= maxChildren, `at most max_children (${maxChildren}) backends ran (${maxActive})`);
    for (let i = 0; i < CLIENTS; i += 11) {
      const fetched = await git(t, ['rev-parse', 'FETCH_HEAD'], { cwd: join(scratch, `client-${i}.git`) });
      assert.equal(fetched.stdout.toString().trim(), head);
    }
    assert.doesNotMatch(stack.daemon.logs(), /status=503/);
    await assertNoGitProcesses(root, { withinMs: 5000 });
    t.diagnostic(
      `${CLIENTS} fetches in ${wallMs} ms, max_children ${maxChildren}, up to ${maxQueued} queued: ${summary(result)}`,
    );
  });

  // With the pack cache (on by default) the 32 clones share one pack-objects and may finish
  // too fast to queue; with it off each runs its own and they must queue. Neither may fail.
  for (const packCache of ['on (the default)', 'off'] as const) {
    test(`${CLIENTS} concurrent full git clones, pack cache ${packCache}: none fails${packCache === 'off' ? ', the queue is used' : ''}`, async (t) => {
      const scratch = await tmpDir(t, 'clone-');
      const serving = packCache === 'off' ? await defaultStack(t, root, ['--pack-cache', '0']) : stack;
      const url = serving.nginx.url(0, '/big.git');
      const started = Date.now();
      const { result, maxQueued } = await watchQueue(
        serving.status,
        burst(t, scratch, (dir) => ['clone', '-q', '--bare', url, dir]),
      );
      const wallMs = Date.now() - started;
      assert.deepEqual(
        result.filter((o) => !o.ok).map((o) => o.output),
        [],
        summary(result),
      );
      if (packCache === 'off')
        assert.ok(maxQueued > 0, `requests waited in the queue (at most ${maxQueued})`);
      const cloned = await git(t, ['rev-parse', 'main'], { cwd: join(scratch, 'client-0.git') });
      assert.equal(cloned.stdout.toString().trim(), head);
      await git(t, ['fsck', '--connectivity-only', '--no-progress'], {
        cwd: join(scratch, `client-${CLIENTS - 1}.git`),
      });
      assert.doesNotMatch(serving.daemon.logs(), /status=503/);
      await assertNoGitProcesses(root, { withinMs: 5000 });
      t.diagnostic(`${CLIENTS} clones in ${wallMs} ms, up to ${maxQueued} queued: ${summary(result)}`);
    });
  }
});

describe('a queued request whose client leaves', () => {
  test('leaves the queue: no backend starts for it, its place goes to the next (nginx closing, ABORT_REQUEST)', async (t) => {
    const dir = await tmpDir(t, 'leave-');
    const root = join(dir, 'repos');
    await textHistoryRepo(t, root, 'r.git', { files: 1, commits: 1, lines: 1 });
    // Its own sleep length: other tests count theirs.
    const stall = join(dir, 'stall.sh');
    await writeFile(stall, '#!/bin/sh\nexec sleep 283\n');
    await chmod(stall, 0o755);
    const stalls = async (): Promise<number> =>
      (await run('pgrep', ['-f', '^sleep 283$'], { timeoutMs: 5000 })).stdout
        .toString()
        .split('\n')
        .filter(Boolean).length;
    const { daemon, nginx, sock, status } = await defaultStack(t, root, ['--backend', stall]);
    defer(t, () =>
      waitFor(async () => (await stalls()) === 0, { timeoutMs: 10_000, what: 'no stalled backend left' }),
    );

    const url = nginx.url(0, '/r.git/info/refs');
    const requests: AbortController[] = [];
    defer(t, () => requests.forEach((r) => r.abort()));
    const request = (): { controller: AbortController; answered: Promise<unknown> } => {
      const controller = new AbortController();
      requests.push(controller);
      return { controller, answered: fetch(url, { signal: controller.signal }).catch((err: unknown) => err) };
    };
    const { max_children: maxChildren } = await status();
    const running = Array.from({ length: maxChildren }, request);
    await waitFor(async () => (await status()).active === maxChildren, {
      timeoutMs: 10_000,
      what: 'every slot taken',
    });

    const leaving = request();
    await waitFor(async () => (await status()).queued === 1, { timeoutMs: 5000, what: 'the first to queue' });
    const staying = request();
    await waitFor(async () => (await status()).queued === 2, {
      timeoutMs: 5000,
      what: 'the second to queue',
    });
    leaving.controller.abort();
    await leaving.answered;
    await waitFor(async () => (await status()).queued === 1, {
      timeoutMs: 5000,
      what: 'nginx closing the connection to take the request out of the queue',
    });
    assert.equal((await status()).spawned, maxChildren);

    // A slot frees: it goes to the request still waiting, not to the one that left.
    running[0]?.controller.abort();
    await waitFor(
      async () => {
        const s = await status();
        return s.queued === 0 && s.active === maxChildren && s.spawned === maxChildren + 1;
      },
      { timeoutMs: 10_000, what: 'the waiting request to get the slot' },
    );

    // FCGI_ABORT_REQUEST (what Apache's and h2o's clients may send instead of closing) does the same.
    const socket = net.connect(sock);
    defer(t, () => socket.destroy());
    let ended = false;
    const parser = new RecordParser((type) => {
      if (type === RecordType.END_REQUEST) ended = true;
    });
    socket.on('data', (chunk) => parser.push(chunk));
    socket.on('error', () => {});
    socket.write(
      Buffer.concat([
        beginRequest(1, true),
        paramsRecords(gitParams('/r.git/info/refs')),
        stdinRecords(Buffer.alloc(0)),
      ]),
    );
    await waitFor(async () => (await status()).queued === 1, {
      timeoutMs: 5000,
      what: 'the raw request to queue',
    });
    socket.write(encodeRecord(RecordType.ABORT_REQUEST, 1, Buffer.alloc(0)));
    await waitFor(() => ended, { timeoutMs: 5000, what: 'END_REQUEST for the aborted request' });
    const figures = await status();
    assert.equal(figures.queued, 0);
    assert.equal(figures.spawned, maxChildren + 1, 'no backend for a request aborted in the queue');

    staying.controller.abort();
    for (const r of running) r.controller.abort();
    await waitFor(async () => (await status()).active === 0, {
      timeoutMs: 10_000,
      what: 'every backend ended',
    });
    await waitFor(async () => (await stalls()) === 0, {
      timeoutMs: 10_000,
      what: 'the stalled backends killed',
    });
    assert.match(daemon.logs(), /status=499/);
    assert.doesNotMatch(daemon.logs(), /status=503/);
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });
});
