import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defer, suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { isAlive } from '../helpers/daemon-health.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { uploadPackRequest } from '../helpers/git-wire.js';
import { gitLocation, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, listGitProcessesUnder, run, startProcess } from '../helpers/proc.js';
import { createBareRepo, git, randomBlobRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { startGitStack } from '../helpers/stack.js';

const backend = (name: string): string => join(repoRoot, 'test', 'fixtures', 'backends', name);

/** curl fetching the pack at `rate` per second, so that git is still running when the test acts. */
async function slowClone(t: Cleanup, nginx: Nginx, head: string, rate: string) {
  const dir = await tmpDir(t, 'curl-');
  const body = join(dir, 'request');
  await writeFile(body, uploadPackRequest(head));
  return startProcess(t, 'curl', [
    '-sS',
    '--fail',
    '--limit-rate',
    rate,
    '-o',
    join(dir, 'pack'),
    '-w',
    '%{size_download}',
    '-H',
    'Content-Type: application/x-git-upload-pack-request',
    '--data-binary',
    `@${body}`,
    nginx.url(0, '/big.git/git-upload-pack'),
  ]);
}

test('a backend killed by a signal mid-response: the transfer breaks, 502 and the signal logged', async (t) => {
  const root = await tmpDir(t, 'killed-');
  await createBareRepo(t, root, 'r.git');
  const { daemon, nginx } = await startGitStack(t, root, {
    args: ['--export-all', '--backend', backend('killed-mid-response.sh')],
  });
  const result = await run('curl', ['-s', '-o', '/dev/null', nginx.url(0, '/r.git/info/refs')], {
    timeoutMs: 10_000,
  });
  assert.notEqual(result.code, 0, 'curl sees a broken transfer, not a complete response');
  await waitFor(() => /status=502 .*exit=SIGKILL/.test(daemon.logs()), {
    timeoutMs: 5000,
    what: 'status=502 exit=SIGKILL in the access log',
  });
});

describe('a big clone meets faults in the backend and the front end', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let head: string;
  let daemon: GitFcgi;
  let location: string;

  before(async () => {
    root = await tmpDir(suite, 'xfer-');
    // 24 MB: more than the kernel buffers between git and a slow client can hold, so git is
    // still sending when the test acts.
    const repo = await randomBlobRepo(suite, root, 'big.git', { bytes: 24 * 1024 * 1024 });
    head = repo.head;
    await git(suite, ['repack', '-adq'], { cwd: repo.path });
    const sock = join(await tmpDir(suite, 'sock-'), 'g.sock');
    // The relay's faults, with git's own pack-objects under the backend: the pack cache's
    // generations are not the request's processes (test/e2e/pack-cache.test.ts has its faults).
    daemon = await startGitFcgi(suite, [
      '--listen',
      `unix:${sock}`,
      '--project-root',
      root,
      '--export-all',
      '--pack-cache',
      '0',
    ]);
    location = gitLocation({ socket: sock });
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('git killed mid-clone: the client fails, nothing is left, the daemon keeps serving', async (t) => {
    const nginx = await startNginx(t, { servers: [{ locations: location }] });
    const curl = await slowClone(t, nginx, head, '1M');
    // Killed as soon as seen: a second listing (slow under load, it reads /proc of every git on
    // the machine) let git finish the whole pack first in CI.
    const kill = (pid: number): boolean => {
      try {
        process.kill(pid, 'SIGKILL');
        return true;
      } catch (err) {
        // Ended between the listing and the kill.
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        return false;
      }
    };
    await waitFor(
      async () => {
        if (curl.exitStatus() !== undefined)
          throw new Error(`curl ended early (${JSON.stringify(curl.exitStatus())}): ${curl.output()}`);
        // upload-pack and its pack-objects, running: a zombie (the listing includes those of
        // any git this test process started) takes no signal, and counting one as killed let
        // git send the whole pack once in CI.
        const gits = (await listGitProcessesUnder(root)).filter((p) => p.comm === 'git' && p.state !== 'Z');
        let landed = 0;
        for (const p of gits) if (kill(p.pid)) landed++;
        return landed > 0;
      },
      { timeoutMs: 5000, what: 'upload-pack to run' },
    );
    // nginx may already hold part of the 24 MB in its buffers when git dies: curl, at 1 MB/s,
    // reads those before it sees the broken end.
    const status = await withDeadline(curl.exited, 40_000, 'curl to end');
    assert.notEqual(status.code, 0, `the clone fails at the client: ${curl.output()} ${daemon.logs()}`);
    await assertNoGitProcesses(root, { withinMs: 2000 });
    await waitFor(() => /status=502/.test(daemon.logs()), { timeoutMs: 2000, what: 'the failure logged' });
    assert.ok(isAlive(daemon.pid));
    await git(t, ['clone', '-q', nginx.url(0, '/big.git'), join(await tmpDir(t, 'c-'), 'c')]);
  });

  test('nginx stopped mid-clone: git is gone within 2 s; a new nginx serves again', async (t) => {
    const nginx = await startNginx(t, { servers: [{ locations: location }] });
    const curl = await slowClone(t, nginx, head, '2M');
    await waitFor(async () => (await listGitProcessesUnder(root)).length > 0, {
      timeoutMs: 5000,
      what: 'git to run',
    });
    await nginx.stop();
    assert.notEqual((await withDeadline(curl.exited, 10_000, 'curl to end')).code, 0);
    await assertNoGitProcesses(root, { withinMs: 2000 });
    const again = await startNginx(t, { servers: [{ locations: location }] });
    await git(t, ['clone', '-q', again.url(0, '/big.git'), join(await tmpDir(t, 'c-'), 'c')]);
  });

  test('nginx reloaded mid-clone: the transfer completes', async (t) => {
    const nginx = await startNginx(t, { servers: [{ locations: location }] });
    const curl = await slowClone(t, nginx, head, '20M');
    await waitFor(async () => (await listGitProcessesUnder(root)).length > 0, {
      timeoutMs: 5000,
      what: 'git to run',
    });
    await nginx.reload(undefined, { drain: false });
    const status = await withDeadline(curl.exited, 20_000, 'curl to end');
    assert.equal(status.code, 0, curl.output());
    assert.ok(Number(curl.stdout()) > 24 * 1024 * 1024, `the whole pack arrived (${curl.stdout()} bytes)`);
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });
});

test('a push that does not fit on the disk fails cleanly at the client; the repository stays sound', async (t) => {
  const mnt = await tmpDir(t, 'tmpfs-');
  const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mnt], { timeoutMs: 10_000 });
  if (mounted.code !== 0) {
    t.skip(`cannot mount a tmpfs (${mounted.stderr.toString().trim()}): needs root or CAP_SYS_ADMIN`);
    return;
  }
  defer(t, () => run('umount', ['-l', mnt], { timeoutMs: 10_000 }));
  const repo = await createBareRepo(t, mnt, 'r.git');
  const sock = join(await tmpDir(t, 'sock-'), 'g.sock');
  await startGitFcgi(t, ['--listen', `unix:${sock}`, '--project-root', mnt, '--export-all']);
  const nginx = await startNginx(t, {
    servers: [{ locations: gitLocation({ socket: sock, extra: 'fastcgi_param REMOTE_USER alice;' }) }],
  });
  const work = await tmpDir(t, 'work-');
  await git(t, ['clone', '-q', nginx.url(0, '/r.git'), work]);
  const commit = async (name: string, bytes: number): Promise<void> => {
    await writeFile(join(work, name), (await import('node:crypto')).randomBytes(bytes));
    await git(t, ['add', name], { cwd: work });
    await git(t, ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '-m', name], { cwd: work });
  };
  await commit('big.bin', 24 * 1024 * 1024);
  const pushed = await run('git', ['push', nginx.url(0, '/r.git'), 'HEAD:refs/heads/big'], {
    cwd: work,
    env: { GIT_TERMINAL_PROMPT: '0' },
    timeoutMs: 60_000,
  });
  const stderr = pushed.stderr.toString();
  assert.notEqual(pushed.code, 0, 'the push fails');
  assert.match(stderr, /unpack|index-pack|No space left|rejected|error/i, stderr);
  await assertNoGitProcesses(mnt, { withinMs: 2000 });
  await git(t, ['fsck', '--no-progress'], { cwd: repo.path });
  await assert.rejects(git(t, ['rev-parse', '--verify', 'refs/heads/big'], { cwd: repo.path }));
  // The failed push's quarantine is gone, so a small one fits again.
  await git(t, ['reset', '-q', '--hard', 'HEAD~1'], { cwd: work });
  await commit('small.txt', 1000);
  await git(t, ['push', '-q', nginx.url(0, '/r.git'), 'HEAD:refs/heads/small'], { cwd: work });
  await git(t, ['fsck', '--no-progress'], { cwd: repo.path });
});
