import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import {
  beginRequest,
  fcgiExchange,
  gitParams,
  paramsRecords,
  stdinRecords,
} from '../helpers/fcgi-client.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { backendsOf, listProcesses, readStat, type ProcStat } from '../helpers/procfs.js';
import { createBareRepo, git, gitEnv } from '../helpers/repos.js';
import { startGitStack } from '../helpers/stack.js';
import { tmpDir } from '../helpers/tmp.js';

const HANG = join(repoRoot, 'test', 'fixtures', 'backends', 'hang.sh');
const PRINT_ENV = join(repoRoot, 'test', 'fixtures', 'backends', 'print-env.sh');

/** The spawn helper the daemon started: its only child named git-fcgi-spawnd. */
async function helperOf(daemonPid: number): Promise<ProcStat | undefined> {
  return (await listProcesses()).find((p) => p.ppid === daemonPid && p.comm === 'git-fcgi-spawnd');
}

async function cloneAndPush(
  t: Parameters<typeof startGitStack>[0],
  root: string,
  url: string,
): Promise<void> {
  const env = {
    ...(await gitEnv(t)),
    GIT_AUTHOR_NAME: 'a',
    GIT_AUTHOR_EMAIL: 'a@a',
    GIT_COMMITTER_NAME: 'a',
    GIT_COMMITTER_EMAIL: 'a@a',
  };
  const work = join(await tmpDir(t, 'work-'), 'c');
  await git(t, ['clone', '-q', url, work], { env });
  await git(t, ['commit', '-q', '--allow-empty', '-m', 'more'], { cwd: work, env });
  await git(t, ['push', '-q', 'origin', 'HEAD:refs/heads/pushed'], { cwd: work, env });
  const pushed = (await git(t, ['rev-parse', 'refs/heads/pushed'], { cwd: join(root, 'r.git') })).stdout;
  assert.equal(
    pushed.toString().trim(),
    (await git(t, ['rev-parse', 'HEAD'], { cwd: work })).stdout.toString().trim(),
  );
}

test('backends are started by git-fcgi-spawnd, in their own session, not forked from the daemon', async (t) => {
  const root = await tmpDir(t, 'spawnd-');
  await createBareRepo(t, root, 'r.git');
  const { daemon, nginx } = await startGitStack(t, root, { args: ['--export-all', '--backend', HANG] });
  const helper = await helperOf(daemon.pid);
  assert.ok(helper, 'a git-fcgi-spawnd child of the daemon');
  const controller = new AbortController();
  const pending = fetch(nginx.url(0, '/r.git/info/refs'), { signal: controller.signal }).catch(() => null);
  await waitFor(async () => (await backendsOf(root)).length >= 2, { timeoutMs: 5000, what: 'the backend' });
  const backends = await backendsOf(root);
  const leader = backends.find((p) => p.ppid === helper.pid);
  assert.ok(leader, `the backend's parent is the helper: ${JSON.stringify(backends)}`);
  assert.equal(leader.pgrp, leader.pid, 'the backend leads its own process group');
  controller.abort();
  await pending;
  await waitFor(async () => (await backendsOf(root)).length === 0, {
    timeoutMs: 5000,
    what: "the backend's group to be killed once the client left",
  });
  assert.match(daemon.logs(), /status=499 .*exit=SIGTERM/);
});

test('spawn_helper = off: clone and push work, backends forked by the daemon itself', async (t) => {
  const root = await tmpDir(t, 'spawnd-off-');
  await createBareRepo(t, root, 'r.git');
  const { daemon, nginx } = await startGitStack(t, root, {
    args: ['--export-all', '--spawn-helper', 'off'],
    location: { extra: 'fastcgi_param REMOTE_USER alice;' },
  });
  assert.equal(await helperOf(daemon.pid), undefined);
  await cloneAndPush(t, root, nginx.url(0, '/r.git'));
  await assertNoGitProcesses(root, { withinMs: 3000 });
});

test('the helper killed: the daemon says so, and serves on by forking itself', async (t) => {
  const root = await tmpDir(t, 'spawnd-gone-');
  await createBareRepo(t, root, 'r.git');
  const { daemon, nginx } = await startGitStack(t, root, {
    args: ['--export-all'],
    location: { extra: 'fastcgi_param REMOTE_USER alice;' },
  });
  const helper = await helperOf(daemon.pid);
  assert.ok(helper);
  process.kill(helper.pid, 'SIGKILL');
  await waitFor(() => /spawn helper gone/.test(daemon.logs()), { timeoutMs: 5000, what: 'the error line' });
  await cloneAndPush(t, root, nginx.url(0, '/r.git'));
  await assertNoGitProcesses(root, { withinMs: 3000 });
});

test('a backend that cannot be executed: 502, and the reason in the log', async (t) => {
  const root = await tmpDir(t, 'spawnd-noexec-');
  await createBareRepo(t, root, 'r.git');
  // Executable by its mode bits, but not a program the kernel can run.
  const bogus = join(root, 'not-a-program');
  await import('node:fs/promises').then((fs) => fs.writeFile(bogus, 'just text\n', { mode: 0o755 }));
  const { daemon, nginx } = await startGitStack(t, root, { args: ['--export-all', '--backend', bogus] });
  assert.equal((await fetch(nginx.url(0, '/r.git/info/refs'))).status, 502);
  await waitFor(() => /cannot run .*not-a-program: ENOEXEC at exec/.test(daemon.logs()), {
    timeoutMs: 3000,
    what: 'ENOEXEC in the log',
  });
});

test('the helper serves the daemon only: another process connecting is turned away unheard', async (t) => {
  const root = await tmpDir(t, 'spawnd-peer-');
  await createBareRepo(t, root, 'r.git');
  const { daemon } = await startGitStack(t, root, { args: ['--export-all'] });
  const helper = await helperOf(daemon.pid);
  assert.ok(helper);
  const [, name] = (await readFile(`/proc/${helper.pid}/cmdline`, 'utf8')).split('\0');
  assert.match(name ?? '', /^@git-fcgi-spawnd-/);
  const address = `\0${(name ?? '').slice(1)}`;
  // Everything a spawn takes, from the wrong process: a control connection, a request to run a
  // program that would print its environment, and its three streams.
  const hello = (id: number, role: number): Buffer => Buffer.from([id, 0, 0, 0, role]);
  const body = Buffer.from(`${PRINT_ENV}\0/\0PATH=/usr/bin:/bin\0`);
  const head = Buffer.alloc(11); // length, 'S', id 7, no arguments
  head.writeUInt32LE(body.length + 7, 0);
  head.write('S', 4, 'latin1');
  head.writeUInt32LE(7, 5);
  const sent = [
    Buffer.concat([hello(0, 'C'.charCodeAt(0)), head, body]),
    hello(7, 0),
    hello(7, 1),
    hello(7, 2),
  ];
  const replies = await withDeadline(
    Promise.all(
      sent.map(
        (bytes) =>
          new Promise<number>((resolve) => {
            let received = 0;
            const socket = net.connect(address);
            socket.on('data', (chunk) => (received += chunk.length));
            socket.on('error', () => {});
            socket.on('close', () => resolve(received));
            socket.write(bytes);
          }),
      ),
    ),
    3000,
    'the helper to close every connection',
  );
  assert.deepEqual(replies, [0, 0, 0, 0], 'every connection closed without a byte');
  const helperNow = await withDeadline(readStat(helper.pid), 1000, 'the helper');
  assert.equal(helperNow?.state === 'Z' ? 'zombie' : 'alive', 'alive', 'the helper is still serving');
  assert.deepEqual(await backendsOf(root), []);
});

test('backends that fail at once, 64 at a time: every request is answered (no missed end of output)', async (t) => {
  const root = await tmpDir(t, 'spawnd-fast-fail-');
  await createBareRepo(t, root, 'r.git');
  const failing = join(repoRoot, 'test', 'fixtures', 'backends', 'fail-before-headers.sh');
  const { sock } = await startGitStack(t, root, {
    args: ['--export-all', '--backend', failing, '--max-children', '16'],
  });
  const request = Buffer.concat([
    beginRequest(1),
    paramsRecords(gitParams('/r.git/info/refs')),
    stdinRecords(Buffer.alloc(0)),
  ]);
  const replies = await Promise.all(Array.from({ length: 64 }, () => fcgiExchange(sock, request, 10_000)));
  assert.deepEqual(new Set(replies.map((r) => r.status)), new Set([502]));
});
