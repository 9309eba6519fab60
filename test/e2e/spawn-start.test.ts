import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Logger } from '../../src/log.js';
import { SpawnHelper } from '../../src/request/spawn-helper.js';
import { defer, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import {
  beginRequest,
  fcgiExchange,
  gitParams,
  paramsRecords,
  stdinRecords,
} from '../helpers/fcgi-client.js';
import { backendsOf, listProcesses, openDescriptors } from '../helpers/procfs.js';
import { createBareRepo } from '../helpers/repos.js';
import { SPAWN_HELPER } from '../helpers/spawnd.js';
import { tmpDir } from '../helpers/tmp.js';

const HANG = join(repoRoot, 'test', 'fixtures', 'backends', 'hang.sh');
const PRINT_PARENT = join(repoRoot, 'test', 'fixtures', 'backends', 'print-parent.sh');

const quiet: Logger = {
  error: () => {},
  warn: () => {},
  info: () => {},
  debug: () => {},
  child: () => quiet,
  access: () => {},
  isDebug: () => false,
};

/** Stops the helper (SIGSTOP) as a helper stuck in a slow exec would be; continued at cleanup. */
function freeze(t: Cleanup, pid: number): void {
  process.kill(pid, 'SIGSTOP');
  defer(t, () => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone already
    }
  });
}

/** The git-fcgi-spawnd child of `parent`, once it runs (a daemon accepts before it starts it). */
async function helperOf(parent: number): Promise<number> {
  const find = async (): Promise<number | undefined> =>
    (await listProcesses()).find((p) => p.ppid === parent && p.comm === 'git-fcgi-spawnd')?.pid;
  await waitFor(async () => (await find()) !== undefined, {
    timeoutMs: 5000,
    what: `a git-fcgi-spawnd child of ${parent}`,
  });
  return (await find()) ?? 0;
}

async function socketCount(pid: number): Promise<number> {
  return [...(await openDescriptors(pid)).values()].filter((target) => target.startsWith('socket:')).length;
}

test('a client that leaves while its spawn waits for the helper: the request ends (499), its slot is freed', async (t) => {
  const root = await tmpDir(t, 'spawn-wait-');
  await createBareRepo(t, root, 'r.git');
  const sock = join(root, 'g.sock');
  const daemon = await startGitFcgi(t, [
    '--listen',
    `unix:${sock}`,
    '--project-root',
    root,
    '--export-all',
    '--backend',
    PRINT_PARENT,
    '--max-children',
    '1',
  ]);
  // A first request: the daemon serves only once its helper runs, which must not be stopped
  // before it is ready.
  const first = await fcgiExchange(
    sock,
    Buffer.concat([
      beginRequest(),
      paramsRecords(gitParams('/r.git/info/refs')),
      stdinRecords(Buffer.alloc(0)),
    ]),
  );
  assert.equal(first.status, 200);
  const helper = await helperOf(daemon.pid);
  freeze(t, helper);
  // The first request's streams may still be closing: count once the number holds still.
  let sockets = -1;
  await waitFor(
    async () => {
      const before = sockets;
      sockets = await socketCount(daemon.pid);
      return sockets === before;
    },
    { timeoutMs: 5000, intervalMs: 200, what: "the daemon's sockets to settle" },
  );
  const client = net.connect(sock);
  client.on('error', () => {});
  client.write(
    Buffer.concat([
      beginRequest(),
      paramsRecords(gitParams('/r.git/info/refs')),
      stdinRecords(Buffer.alloc(0)),
    ]),
  );
  // The client's connection and the backend's three streams: the daemon waits in its spawn.
  await waitFor(async () => (await socketCount(daemon.pid)) >= sockets + 4, {
    timeoutMs: 5000,
    what: 'the daemon to ask the helper for the backend',
  });
  client.destroy();
  await waitFor(() => /status=499/.test(daemon.logs()), {
    timeoutMs: 5000,
    what: `the request to end once its client left\n${daemon.logs()}`,
  });
  process.kill(helper, 'SIGCONT');
  // max_children = 1: this request runs only if the first one gave its slot back.
  const reply = await fcgiExchange(
    sock,
    Buffer.concat([
      beginRequest(),
      paramsRecords(gitParams('/r.git/info/refs')),
      stdinRecords(Buffer.alloc(0)),
    ]),
  );
  assert.equal(reply.status, 200);
  assert.equal(reply.body.toString(), `parent=${helper}\n`);
});

async function startHelper(
  t: Cleanup,
  startTimeoutMs: number,
): Promise<{ helper: SpawnHelper; pid: number }> {
  const helper = await SpawnHelper.start(SPAWN_HELPER, quiet, { startTimeoutMs });
  defer(t, () => helper.close());
  return { helper, pid: await helperOf(process.pid) };
}

test('a helper that does not start the backend in time: the spawn fails, and nothing of it runs later', async (t) => {
  const root = await tmpDir(t, 'spawn-deadline-');
  const { helper, pid } = await startHelper(t, 500);
  freeze(t, pid);
  const env = { PATH: '/usr/bin:/bin', GIT_PROJECT_ROOT: root };
  const attempt = helper.spawn(HANG, [], env, root, new AbortController().signal);
  await assert.rejects(withDeadline(attempt, 5000, 'the spawn to fail'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_BACKEND_SPAWN', String(err));
    assert.match(err.message, /did not start .* within 500 ms/);
    return true;
  });
  process.kill(pid, 'SIGCONT');
  // The helper may still start it (its streams are closed by then): nothing of it may be left.
  await new Promise((resolve) => setTimeout(resolve, 500));
  await waitFor(async () => (await backendsOf(root)).length === 0, {
    timeoutMs: 5000,
    what: 'no backend of the given-up spawn',
  });
});

test("a spawn whose request is aborted before the helper starts it rejects with the signal's reason", async (t) => {
  const root = await tmpDir(t, 'spawn-abort-');
  const { helper, pid } = await startHelper(t, 60_000);
  freeze(t, pid);
  const controller = new AbortController();
  const env = { PATH: '/usr/bin:/bin', GIT_PROJECT_ROOT: root };
  const attempt = helper.spawn(HANG, [], env, root, controller.signal);
  const reason = new Error('the client went away');
  setTimeout(() => controller.abort(reason), 200);
  await assert.rejects(withDeadline(attempt, 5000, 'the spawn to be given up'), (err) => err === reason);
  process.kill(pid, 'SIGCONT');
  await new Promise((resolve) => setTimeout(resolve, 500));
  await waitFor(async () => (await backendsOf(root)).length === 0, {
    timeoutMs: 5000,
    what: 'no backend of the aborted spawn',
  });
  // The helper is still of use.
  const backend = await withDeadline(
    helper.spawn(PRINT_PARENT, [], env, root, new AbortController().signal),
    5000,
    'a spawn after that',
  );
  backend.stdin.end();
  assert.deepEqual(await withDeadline(backend.exited, 5000, 'its exit'), { code: 0, signal: null });
});
