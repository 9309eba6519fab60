import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
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
import { startProcess } from '../helpers/start-process.js';
import { tmpDir } from '../helpers/tmp.js';

const HANG = join(repoRoot, 'test', 'fixtures', 'backends', 'hang.sh');
const PRINT_ENV = join(repoRoot, 'test', 'fixtures', 'backends', 'print-env.sh');
const SPAWN_HELPER = join(repoRoot, 'dist', 'git-fcgi-spawnd');

/**
 * The spawn helper the daemon started: its only child named git-fcgi-spawnd, looked for once
 * the daemon answers at `url` (its socket accepts before the helper is started, and requests
 * are held until it is).
 */
async function helperOf(daemonPid: number, url: string): Promise<ProcStat | undefined> {
  await fetch(`${url}no-such-repository.git/info/refs`);
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
  const helper = await helperOf(daemon.pid, nginx.url(0));
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
  // The access line comes once the exchange has ended, which may be just after the group is gone.
  await waitFor(() => /status=499 .*exit=SIGTERM/.test(daemon.logs()), {
    timeoutMs: 5000,
    what: `the 499 with exit=SIGTERM in the access log\n${daemon.logs()}`,
  });
});

test('spawn_helper = off: clone and push work, backends forked by the daemon itself', async (t) => {
  const root = await tmpDir(t, 'spawnd-off-');
  await createBareRepo(t, root, 'r.git');
  const { daemon, nginx } = await startGitStack(t, root, {
    args: ['--export-all', '--spawn-helper', 'off'],
    location: { extra: 'fastcgi_param REMOTE_USER alice;' },
  });
  assert.equal(await helperOf(daemon.pid, nginx.url(0)), undefined);
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
  const helper = await helperOf(daemon.pid, nginx.url(0));
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
  const { daemon, nginx } = await startGitStack(t, root, { args: ['--export-all'] });
  const helper = await helperOf(daemon.pid, nginx.url(0));
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

test('a spawn the daemon gives up before it starts leaves nothing open in the helper, and its id can be used again', async (t) => {
  // The helper run by this test process, as the daemon runs it: this process is its daemon.
  const name = `git-fcgi-spawnd-test-${process.pid}-${Date.now()}`;
  const helper = await startProcess(t, SPAWN_HELPER, [`@${name}`, String(process.pid)]);
  await waitFor(() => helper.stdout().includes('ready\n'), { timeoutMs: 5000, what: 'the helper to listen' });
  const address = `\0${name}`;
  const open = (bytes: Buffer): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const socket = net.connect(address, () => {
        socket.removeListener('error', reject);
        socket.write(bytes, () => resolve(socket));
      });
      socket.once('error', reject);
    });
  const hello = (id: number, role: number): Buffer => Buffer.from([id, 0, 0, 0, role]);
  const spawnMessage = (id: number): Buffer => {
    const body = Buffer.from(`${PRINT_ENV}\0/\0PATH=/usr/bin:/bin\0MARK=spawn-${id}\0`);
    const head = Buffer.alloc(11);
    head.writeUInt32LE(body.length + 7, 0);
    head.write('S', 4, 'latin1');
    head.writeUInt32LE(id, 5);
    return Buffer.concat([head, body]);
  };
  const fdCount = async (): Promise<number> => (await readdir(`/proc/${helper.pid}/fd`)).length;
  const control = await open(hello(0, 'C'.charCodeAt(0)));
  t.after(() => control.destroy());
  const reports: Buffer[] = [];
  control.on('data', (chunk: Buffer) => reports.push(chunk));
  const failedIds = (): number[][] => {
    const all = Buffer.concat(reports);
    const failed: number[][] = [];
    for (let at = 0; at + 13 <= all.length; at += 13)
      if (all[at] === 'F'.charCodeAt(0))
        failed.push([all.readUInt32LE(at + 1), all.readInt32LE(at + 5), all.readInt32LE(at + 9)]);
    return failed.sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0));
  };
  await waitFor(async () => (await fdCount()) > 0, { timeoutMs: 2000, what: 'the control connection' });
  await new Promise((r) => setTimeout(r, 100));
  const base = await fdCount();

  // Spawn 9: two of its streams, then the daemon gives up (closes them) before the helper has
  // read its message. Spawn 11: its message and one stream, then the same.
  const given = [await open(hello(9, 0)), await open(hello(9, 1))];
  control.write(spawnMessage(11));
  given.push(await open(hello(11, 2)));
  await waitFor(async () => (await fdCount()) === base + 3, {
    timeoutMs: 3000,
    what: 'the helper to hold the three streams',
  });
  for (const socket of given) socket.destroy();
  await waitFor(async () => (await fdCount()) === base, {
    timeoutMs: 3000,
    what: `the helper to close the given-up streams (holds ${await fdCount()} descriptors, ${base} before)`,
  });
  // Each given-up spawn is reported failed (ECANCELED, stage 4: a stream closed), so that the
  // daemon can forget it; 9's message, late, is dropped when it comes.
  control.write(spawnMessage(9));
  await waitFor(() => failedIds().length === 2, { timeoutMs: 3000, what: 'both spawns reported failed' });
  assert.deepEqual(failedIds(), [
    [9, os.constants.errno.ECANCELED, 4],
    [11, os.constants.errno.ECANCELED, 4],
  ]);

  // Both ids again, whole this time: each runs and answers (a kept stream would have turned the
  // new one away; a kept message would have left a second message for 11 unanswered).
  for (const id of [9, 11]) {
    control.write(spawnMessage(id));
    const streams = [await open(hello(id, 0)), await open(hello(id, 1)), await open(hello(id, 2))];
    const [stdin, stdout, stderr] = streams as [net.Socket, net.Socket, net.Socket];
    stdin.end();
    let out = '';
    stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await withDeadline(
      new Promise((resolve) => stdout.once('end', resolve)),
      5000,
      `the output of spawn ${id}`,
    );
    assert.match(out, new RegExp(`^MARK=spawn-${id}$`, 'm'));
    for (const s of streams) s.destroy();
    stderr.destroy();
  }
  const kinds = Buffer.concat(reports);
  assert.equal(kinds.length % 13, 0);
  const started = [];
  for (let at = 0; at < kinds.length; at += 13)
    if (kinds[at] === 'P'.charCodeAt(0)) started.push(kinds.readUInt32LE(at + 1));
  assert.deepEqual(started, [9, 11], 'exactly the two whole spawns started');
  assert.equal(helper.exitStatus(), undefined, 'the helper is still running');
});
