import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, startGitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { beginRequest, gitParams, paramsRecords, stdinRecords } from '../helpers/fcgi-client.js';
import { gitLocation, startNginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, listGitProcessesUnder, startProcess } from '../helpers/proc.js';
import { backendsOf } from '../helpers/procfs.js';
import { createBareRepo, git, gitEnv, randomBlobRepo, randomCommits } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { startGitStack } from '../helpers/stack.js';

/**
 * The daemon's shutdown_timeout: 30 s until it becomes a setting. Every request in flight at
 * SIGTERM must end within it, finished or cleanly failed; the test allows a margin on top.
 */
const SHUTDOWN_TIMEOUT_MS = 30_000;

test('SIGTERM during 10 pushes and 10 clones: each completes or fails cleanly; nothing half-applied', async (t) => {
  const root = await tmpDir(t, 'stop-');
  const repo = await randomBlobRepo(t, root, 'r.git', { bytes: 8 * 1024 * 1024 });
  await git(t, ['repack', '-adq'], { cwd: repo.path });
  const work = await tmpDir(t, 'work-');
  await git(t, ['init', '-q', '--bare', work]);
  await git(t, ['fetch', '-q', repo.path, 'main'], { cwd: work });
  const commits = await randomCommits(t, work, repo.head, 10, 2 * 1024 * 1024);
  const { daemon, nginx } = await startGitStack(t, root, {
    args: ['--export-all'],
    location: { extra: 'fastcgi_param REMOTE_USER alice;' },
  });
  const env = await gitEnv(t);
  const clones = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      startProcess(t, 'git', ['clone', '-q', nginx.url(0, '/r.git'), join(work, `clone-${i}`)], { env }),
    ),
  );
  const pushes = await Promise.all(
    commits.map((commit, i) =>
      startProcess(t, 'git', ['push', '--porcelain', nginx.url(0, '/r.git'), `${commit}:refs/heads/p${i}`], {
        cwd: work,
        env,
      }),
    ),
  );
  await waitFor(async () => (await listGitProcessesUnder(root)).length >= 4, {
    timeoutMs: 10_000,
    what: 'transfers to be under way',
  });
  const stopped = Date.now();
  const exit = await daemon.stop('SIGTERM');
  assert.equal(exit.code, 0, 'the daemon exits 0');
  const clients = [...clones, ...pushes];
  const statuses = await withDeadline(
    Promise.all(clients.map((c) => c.exited)),
    SHUTDOWN_TIMEOUT_MS + 10_000,
    'every client to end',
  );
  assert.ok(Date.now() - stopped < SHUTDOWN_TIMEOUT_MS + 10_000);
  for (const [i, status] of statuses.entries()) {
    const client = clients[i];
    if (client === undefined || status.code === 0) continue;
    // A clean failure: git exits with an error message (502 from nginx, a broken transfer), not a signal.
    assert.equal(status.signal, null, client.output());
    assert.match(client.stderr(), /error|fatal/i, client.output());
  }
  let completed = 0;
  for (const [i, push] of pushes.entries()) {
    const ref = await git(t, ['for-each-ref', '--format=%(objectname)', `refs/heads/p${i}`], {
      cwd: repo.path,
    });
    const now = ref.stdout.toString().trim();
    const accepted = push.exitStatus()?.code === 0 && /^\*/m.test(push.stdout());
    if (accepted) assert.equal(now, commits[i], `accepted push ${i} is there`);
    else assert.ok(now === '' || now === commits[i], `push ${i}: absent or whole`);
    if (accepted) completed++;
  }
  const fsck = await git(t, ['fsck', '--full', '--no-progress', '--no-dangling'], { cwd: repo.path });
  assert.equal(fsck.stdout.toString() + fsck.stderr.toString(), '');
  await assertNoGitProcesses(root, { withinMs: 2000 });
  const cloned = clones.filter((c) => c.exitStatus()?.code === 0).length;
  t.diagnostic(`${cloned}/10 clones and ${completed}/10 pushes completed, the rest failed cleanly`);
});

test('a request still running when shutdown_timeout runs out is aborted, its backend group killed', async (t) => {
  const root = await tmpDir(t, 'stop-timeout-');
  await createBareRepo(t, root, 'r.git');
  const sock = join(root, 'g.sock');
  const ini = join(root, 'git-fcgi.ini');
  const hang = join(repoRoot, 'test', 'fixtures', 'backends', 'hang.sh');
  await writeFile(ini, `[server]\nshutdown_timeout = 1s\n[git]\nbackend = ${hang}\nexport_all = true\n`);
  const daemon = await startGitFcgi(t, ['-c', ini, '--listen', `unix:${sock}`, '--project-root', root]);
  const nginx = await startNginx(t, { servers: [{ locations: gitLocation({ socket: sock }) }] });
  const pending = fetch(nginx.url(0, '/r.git/info/refs')).then(
    (r) => r.status,
    () => 'failed',
  );
  await waitFor(async () => (await backendsOf(root)).length >= 2, {
    timeoutMs: 5000,
    what: 'the hung backend (sh and its sleep) to run',
  });
  const started = Date.now();
  const exit = await daemon.stop('SIGTERM');
  const tookMs = Date.now() - started;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(tookMs >= 900 && tookMs < 5000, `exited ${tookMs} ms after SIGTERM, shutdown_timeout 1 s`);
  assert.match(daemon.logs(), /aborted 1 request\(s\) still running after the shutdown timeout/);
  assert.equal(await withDeadline(pending, 5000, 'the client to get an answer'), 503);
  await waitFor(async () => (await backendsOf(root)).length === 0, {
    timeoutMs: 4000,
    what: "the backend's process group to be gone",
  });
});

test('SIGTERM just after clients left: every access line is written before "stopped", exit 0', async (t) => {
  const root = await tmpDir(t, 'stop-aborted-');
  await createBareRepo(t, root, 'r.git');
  const sock = join(root, 'g.sock');
  const backend = join(repoRoot, 'test', 'fixtures', 'backends', 'slow-exit.sh');
  const daemon = await startGitFcgi(t, [
    '--listen',
    `unix:${sock}`,
    '--project-root',
    root,
    '--export-all',
    '--backend',
    backend,
    '--max-children',
    '6',
  ]);
  const clients = 6;
  const sockets = Array.from({ length: clients }, (_, i) => {
    const socket = net.connect(sock);
    socket.on('error', () => {});
    socket.write(
      Buffer.concat([
        beginRequest(1),
        paramsRecords(gitParams(`/r.git/info/refs?n=${i}`)),
        stdinRecords(Buffer.alloc(0)),
      ]),
    );
    return socket;
  });
  // Each backend has answered; then every client leaves, and the daemon is stopped at once,
  // while the backends are still taking their 300 ms to exit.
  await Promise.all(
    sockets.map((socket) =>
      withDeadline(new Promise((resolve) => socket.once('data', resolve)), 5000, 'the first response bytes'),
    ),
  );
  for (const socket of sockets) socket.destroy();
  const exit = await daemon.stop('SIGTERM');
  const logs = daemon.logs();
  assert.deepEqual(exit, { code: 0, signal: null }, logs);
  assert.doesNotMatch(logs, /write after end|internal error/);
  const stopped = logs.indexOf(' stopped');
  assert.ok(stopped > 0, logs);
  const accessLines = logs.slice(0, stopped).match(/ access .*status=499/g) ?? [];
  assert.equal(accessLines.length, clients, logs);
  assert.doesNotMatch(logs.slice(stopped), / access /);
});
