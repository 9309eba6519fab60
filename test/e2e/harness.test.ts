import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startGitFcgi } from '../helpers/daemon.js';
import { DeadlineError, waitFor, withDeadline } from '../helpers/deadline.js';
import { isoClone, isoPush } from '../helpers/isogit.js';
import { gitLocation, htpasswd, startNginx } from '../helpers/nginx.js';
import {
  assertNoGitProcesses,
  gitProcessesUnder,
  listGitProcessesUnder,
  run,
  startProcess,
} from '../helpers/proc.js';
import { readStat } from '../helpers/procfs.js';
import { createBareRepo, git, GIT_HTTP_BACKEND } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { skipWithout } from '../helpers/tools.js';

const isAlive = async (pid: number): Promise<boolean> => {
  const s = await readStat(pid);
  return s !== undefined && s.state !== 'Z';
};

describe('deadline', () => {
  test('withDeadline names what timed out', async () => {
    await assert.rejects(withDeadline(new Promise(() => undefined), 20, 'the moon'), (error: unknown) => {
      assert.ok(error instanceof DeadlineError);
      assert.match(error.message, /the moon/);
      return true;
    });
  });

  test('waitFor polls until true and times out naming what', async () => {
    let n = 0;
    await waitFor(() => ++n >= 3, { timeoutMs: 1000, intervalMs: 1, what: 'three polls' });
    await assert.rejects(
      waitFor(() => false, { timeoutMs: 30, what: 'never' }),
      /never/,
    );
  });
});

describe('repos', () => {
  test('a bare repo with 3 commits clones with the git CLI, reproducibly', async (t) => {
    const root = await tmpDir(t, 'repos-');
    const repo = await createBareRepo(t, root, 'team/app.git', { commits: 3, files: { 'src/a.txt': 'a\n' } });
    const again = await createBareRepo(t, root, 'again.git', { commits: 3, files: { 'src/a.txt': 'a\n' } });
    assert.equal(again.head, repo.head);
    assert.match(repo.head, /^[0-9a-f]{40}$/);

    const clone = join(root, 'clone');
    await git(t, ['clone', '-q', repo.path, clone]);
    const log = (await git(t, ['log', '--format=%H %s'], { cwd: clone })).stdout
      .toString('utf8')
      .trim()
      .split('\n');
    assert.equal(log.length, 3);
    assert.equal(log[0], `${repo.head} commit 3`);
    assert.equal(await readFile(join(clone, 'src/a.txt'), 'utf8'), 'a\n');
    const branch = (await git(t, ['symbolic-ref', 'HEAD'], { cwd: repo.path })).stdout
      .toString('utf8')
      .trim();
    assert.equal(branch, 'refs/heads/main');
  });

  test('git() throws with stderr on failure', async (t) => {
    const dir = await tmpDir(t, 'notrepo-');
    await assert.rejects(git(t, ['rev-parse', 'HEAD'], { cwd: dir }), /not a git repository/);
  });
});

describe('nginx', () => {
  test('serves, reloads and leaves no process behind', async (t) => {
    const nginx = await startNginx(t, { servers: [{ locations: 'location / { return 200 "ok"; }' }] });
    const response = await fetch(nginx.url(0, '/'), { signal: AbortSignal.timeout(5000) });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), 'ok');

    await nginx.reload({ servers: [{ locations: 'location / { return 200 "reloaded"; }' }] });
    const after = await fetch(nginx.url(0, '/'), { signal: AbortSignal.timeout(5000) });
    assert.equal(await after.text(), 'reloaded');
    assert.match(await nginx.errorLog(), /reconfiguring/);

    const workers = (await run('pgrep', ['-g', String(nginx.pid)], { timeoutMs: 5000 })).stdout.toString(
      'utf8',
    );
    assert.ok(workers.trim().split('\n').length >= 2, `master and worker expected, got ${workers}`);
    await nginx.stop();
    assert.equal((await run('pgrep', ['-g', String(nginx.pid)], { timeoutMs: 5000 })).code, 1);
  });

  test('gitLocation and htpasswd produce a config nginx accepts', async (t) => {
    const dir = await tmpDir(t, 'auth-');
    const file = await htpasswd(t, dir, { alice: 'secret', bob: 'hunter2' }, 'B');
    assert.match(await readFile(file, 'utf8'), /^alice:\$2y\$/m);
    const location = gitLocation({
      socket: join(dir, 'git-fcgi.sock'),
      projectRoot: dir,
      exportAll: true,
      auth: { htpasswdFile: file },
    });
    assert.match(location, /fastcgi_param GIT_HTTP_EXPORT_ALL "";/);
    const nginx = await startNginx(t, { servers: [{ locations: location }, { locations: 'return 204;' }] });
    assert.equal(nginx.ports.length, 2);
    // Nothing listens on the socket: auth is checked first, then the upstream fails.
    const anonymous = await fetch(nginx.url(0, '/x.git/info/refs'), { signal: AbortSignal.timeout(5000) });
    assert.equal(anonymous.status, 401);
    const authorised = await fetch(nginx.url(0, '/x.git/info/refs'), {
      headers: { authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` },
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(authorised.status, 502);
    assert.equal((await fetch(nginx.url(1), { signal: AbortSignal.timeout(5000) })).status, 204);
  });
});

describe('processes', () => {
  test('run() kills the group on its deadline', async () => {
    await assert.rejects(
      run('sh', ['-c', 'sleep 100 & sleep 100'], { timeoutMs: 200 }),
      /timed out after 200 ms/,
    );
    const result = await run('cat', [], { input: 'hello', timeoutMs: 5000 });
    assert.equal(result.stdout.toString('utf8'), 'hello');
  });

  test('cleanup of startProcess kills the process and its group', async (t) => {
    const pids: number[] = [];
    await t.test('inner', async (inner) => {
      const sleeper = await startProcess(inner, 'sleep', ['100']);
      // The grandchild shares the group; the trap makes both ignore SIGTERM, forcing the SIGKILL path.
      const stubborn = await startProcess(inner, 'sh', ['-c', 'trap "" TERM; sleep 100 & echo $!; wait'], {
        killGraceMs: 200,
      });
      await waitFor(() => stubborn.stdout().includes('\n'), { timeoutMs: 5000, what: 'grandchild pid' });
      pids.push(sleeper.pid, stubborn.pid, Number(stubborn.stdout().trim()));
      for (const pid of pids) assert.ok(await isAlive(pid), `pid ${pid} should be running`);
    });
    for (const pid of pids) assert.equal(await isAlive(pid), false, `pid ${pid} survived cleanup`);
  });

  test('startProcess rejects for a missing command', async (t) => {
    await assert.rejects(startProcess(t, '/nonexistent/cmd', []), /cannot start/);
  });

  test('gitProcessesUnder finds git by cwd and by GIT_PROJECT_ROOT, and zombies we hold', async (t) => {
    const dir = await tmpDir(t, 'watched-');
    const elsewhere = await tmpDir(t, 'elsewhere-');
    const inside = await createBareRepo(t, dir, 'in.git');
    const outside = await createBareRepo(t, elsewhere, 'out.git');

    const byCwd = await startProcess(t, 'git', ['cat-file', '--batch'], { cwd: inside.path, stdin: 'pipe' });
    const byEnv = await startProcess(t, 'git', ['cat-file', '--batch'], {
      cwd: outside.path,
      env: { GIT_PROJECT_ROOT: dir },
      stdin: 'pipe',
    });
    const unrelated = await startProcess(t, 'git', ['cat-file', '--batch'], {
      cwd: outside.path,
      stdin: 'pipe',
    });
    await waitFor(async () => (await gitProcessesUnder(dir)).length === 2, {
      timeoutMs: 5000,
      what: 'both found',
    });
    const found = await gitProcessesUnder(dir);
    assert.deepEqual([...found].sort(), [byCwd.pid, byEnv.pid].sort());
    assert.ok(!found.includes(unrelated.pid));

    await assert.rejects(assertNoGitProcesses(dir, { withinMs: 100 }), (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.match(error.message, new RegExp(`pid ${byCwd.pid} git state S`));
      return true;
    });
    await byCwd.stop();
    await byEnv.stop();
    await assertNoGitProcesses(dir, { withinMs: 2000 });

    // sh does not reap the background git until `wait`, so git sits there as our zombie.
    const parent = await startProcess(t, 'sh', ['-c', 'git --version >/dev/null & read x; wait'], {
      cwd: elsewhere,
      stdin: 'pipe',
    });
    await waitFor(async () => (await listGitProcessesUnder(dir)).some((p) => p.state === 'Z'), {
      timeoutMs: 5000,
      what: 'the zombie git',
    });
    await assert.rejects(assertNoGitProcesses(dir, { withinMs: 50 }), /state Z/);
    parent.stdin?.end('go\n');
    await withDeadline(parent.exited, 5000, 'sh to reap git and exit');
    await assertNoGitProcesses(dir, { withinMs: 2000 });
  });
});

// Stands in for dist/cli.js so the readiness logic is tested without depending on the daemon's progress.
const FAKE_DAEMON = `
import net from 'node:net';
import http from 'node:http';
const args = process.argv.slice(2);
const value = (name) => args[args.indexOf(name) + 1];
if (args.includes('--hang')) setInterval(() => console.error('still starting'), 50);
else {
  if (args.includes('--listen')) net.createServer((s) => s.destroy()).listen(value('--listen').slice(5));
  if (args.includes('--http')) {
    const server = http.createServer((_q, r) => r.end('fake'));
    server.listen(0, '127.0.0.1', () => console.error('info: listening on http://127.0.0.1:' + server.address().port));
  }
}
process.on('SIGTERM', () => process.exit(3));
`;

describe('daemon readiness', () => {
  test('waits for the socket and parses the http port', async (t) => {
    const dir = await tmpDir(t, 'daemon-');
    const script = join(dir, 'fake-daemon.mjs');
    await writeFile(script, FAKE_DAEMON);
    const socket = join(dir, 'd.sock');
    const daemon = await startGitFcgi(t, ['--listen', `unix:${socket}`, '--http', '127.0.0.1:0'], { script });
    assert.equal(daemon.socket, socket);
    assert.ok(daemon.httpPort !== undefined && daemon.httpPort > 0);
    const body = await fetch(`http://127.0.0.1:${daemon.httpPort}/`, { signal: AbortSignal.timeout(5000) });
    assert.equal(await body.text(), 'fake');
    assert.deepEqual(await daemon.stop(), { code: 3, signal: null });
  });

  test('fails on its deadline with the logs', async (t) => {
    const dir = await tmpDir(t, 'daemon-');
    const script = join(dir, 'fake-daemon.mjs');
    await writeFile(script, FAKE_DAEMON);
    const args = ['--hang', `--listen=unix:${join(dir, 'never.sock')}`];
    await assert.rejects(
      startGitFcgi(t, args, { script, readyTimeoutMs: 2000 }), // node itself may take a second to start on a busy machine
      /timed out[\s\S]*still starting/,
    );
  });
});

// fcgiwrap is the reference git-fcgi replaces; serving git through it checks gitLocation, htpasswd and the
// isomorphic-git wrappers against a real git http-backend.
describe('through nginx and fcgiwrap', () => {
  test('git and isomorphic-git clone and push', { skip: skipWithout('fcgiwrap') }, async (t) => {
    const dir = await tmpDir(t, 'fcgiwrap-');
    const root = join(dir, 'repos');
    const repo = await createBareRepo(t, root, 'demo.git', { commits: 2 });
    const socket = join(dir, 'fcgiwrap.sock');
    const fcgiwrap = await startProcess(t, '/usr/sbin/fcgiwrap', ['-s', `unix:${socket}`]);
    await waitFor(async () => (await stat(socket).catch(() => undefined))?.isSocket() === true, {
      timeoutMs: 5000,
      what: 'fcgiwrap socket',
    });
    const users = await htpasswd(t, dir, { alice: 'secret' });
    const extra = `fastcgi_param SCRIPT_FILENAME ${GIT_HTTP_BACKEND};`;
    const common = { socket, projectRoot: root, exportAll: true, extra };
    const nginx = await startNginx(t, {
      servers: [
        { locations: gitLocation(common) },
        { locations: gitLocation({ ...common, auth: { htpasswdFile: users } }) },
      ],
    });

    const viaGit = join(dir, 'via-git');
    await git(t, ['-c', 'protocol.version=2', 'clone', '-q', nginx.url(0, '/demo.git'), viaGit]);
    assert.equal(
      (await git(t, ['rev-parse', 'HEAD'], { cwd: viaGit })).stdout.toString('utf8').trim(),
      repo.head,
    );

    const viaIso = join(dir, 'via-iso');
    await isoClone({ url: nginx.url(0, '/demo.git'), dir: viaIso, ref: 'main' });
    assert.equal(await readFile(join(viaIso, 'history.txt'), 'utf8'), 'commit 1\ncommit 2\n');
    const id = ['-c', 'user.name=t', '-c', 'user.email=t@t.invalid'];
    await git(t, [...id, 'commit', '-q', '--allow-empty', '-m', 'from iso'], { cwd: viaIso });
    await assert.rejects(isoPush({ url: nginx.url(1, '/demo.git'), dir: viaIso, ref: 'main' }));
    const pushed = await isoPush({
      url: nginx.url(1, '/demo.git'),
      dir: viaIso,
      ref: 'main',
      auth: { username: 'alice', password: 'secret' },
    });
    assert.equal(pushed.ok, true);
    const newHead = (await git(t, ['rev-parse', 'main'], { cwd: repo.path })).stdout.toString('utf8').trim();
    assert.equal(
      newHead,
      (await git(t, ['rev-parse', 'HEAD'], { cwd: viaIso })).stdout.toString('utf8').trim(),
    );

    await assertNoGitProcesses(root, { withinMs: 5000 });
    await nginx.stop();
    await fcgiwrap.stop();
  });
});

describe('isomorphic-git wrapper', () => {
  test('is loadable (exercised over HTTP in the git-fcgi tests)', async (t) => {
    const dir = await tmpDir(t, 'iso-');
    assert.equal(typeof isoClone, 'function');
    assert.equal(typeof isoPush, 'function');
    // A refused connection proves the module and its http client load and report errors.
    await assert.rejects(isoClone({ url: 'http://127.0.0.1:1/none.git', dir, timeoutMs: 5000 }));
    assert.ok((await stat(dir)).isDirectory());
  });
});
