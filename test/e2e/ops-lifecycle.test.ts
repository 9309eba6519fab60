import assert from 'node:assert/strict';
import { chmod, chown, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ensureTestUser, TEST_USER } from '../helpers/accounts.js';
import { cliPath, repoRoot, startGitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { gitLocation, startNginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, gitProcessesUnder, run } from '../helpers/proc.js';
import { listProcesses } from '../helpers/procfs.js';
import { createBareRepo, git, randomBlobRepo } from '../helpers/repos.js';
import { startSlowProxy } from '../helpers/slow-proxy.js';
import { tmpDir } from '../helpers/tmp.js';
import { startGitStack } from '../helpers/stack.js';

const backend = (name: string): string => join(repoRoot, 'test', 'fixtures', 'backends', name);

async function procStatus(pid: number, field: string): Promise<string> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  return new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
}

async function groupId(name: string): Promise<number> {
  const result = await run('getent', ['group', name], { timeoutMs: 5000 });
  return Number(result.stdout.toString().split(':')[2]);
}

describe('socket, privileges and pid file', () => {
  test('socket mode and owner set while root; then the daemon and its backends run as user', async (t) => {
    const account = await ensureTestUser();
    const daemonGid = await groupId('daemon');
    const root = await tmpDir(t, 'priv-');
    // The dropped user must be able to reach the repositories, as on a real host.
    await chmod(root, 0o755);
    await createBareRepo(t, root, 'r.git');
    const sock = join(await tmpDir(t, 'sock-'), 'g.sock');
    const runDir = await tmpDir(t, 'run-');
    await chown(runDir, account.uid, account.gid); // like /run/git-fcgi owned by git
    const pidFile = join(runDir, 'git-fcgi.pid');
    const daemon = await startGitFcgi(t, [
      '--listen',
      `unix:${sock}`,
      '--socket-mode',
      '0640',
      '--socket-owner',
      `${TEST_USER}:daemon`,
      '--user',
      TEST_USER,
      '--pid-file',
      pidFile,
      '--project-root',
      root,
      '--backend',
      backend('print-id.sh'),
    ]);
    // The socket accepts from listen(2) on, a moment before its owner and mode are set; the
    // listening line comes after both (umask 022 meanwhile: 0755, no one else may connect).
    await waitFor(() => / listening on fastcgi unix:/.test(daemon.logs()), {
      timeoutMs: 5000,
      what: 'the listening line',
    });
    const s = await stat(sock);
    assert.equal(s.mode & 0o777, 0o640);
    assert.equal(s.uid, account.uid);
    assert.equal(s.gid, daemonGid);
    // The pid file follows the bind by a moment.
    await waitFor(
      async () => (await readFile(pidFile, 'utf8').catch(() => '')).trim() === String(daemon.pid),
      {
        timeoutMs: 5000,
        what: `the pid file to hold ${daemon.pid}`,
      },
    );
    // Ready (the socket accepts) comes a moment before the switch; requests wait for it.
    await waitFor(async () => (await procStatus(daemon.pid, 'Uid')).startsWith(`${account.uid}\t`), {
      timeoutMs: 5000,
      what: 'the privilege drop',
    });
    assert.equal(
      await procStatus(daemon.pid, 'Uid'),
      `${account.uid}\t${account.uid}\t${account.uid}\t${account.uid}`,
    );
    assert.equal(
      await procStatus(daemon.pid, 'Gid'),
      `${account.gid}\t${account.gid}\t${account.gid}\t${account.gid}`,
    );
    assert.equal(
      await procStatus(daemon.pid, 'Groups'),
      String(account.gid),
      'initgroups: no root groups left',
    );

    const nginx = await startNginx(t, { servers: [{ locations: gitLocation({ socket: sock }) }] });
    const res = await fetch(nginx.url(0, '/r.git/info/refs?service=git-upload-pack'));
    assert.equal(res.status, 200);
    assert.equal((await res.text()).trim(), `uid=${account.uid} gid=${account.gid} groups=${account.gid}`);
    // ... started by the spawn helper, itself running as the dropped user (not by a fallback).
    const helper = (await listProcesses()).find((p) => p.ppid === daemon.pid && p.comm === 'git-fcgi-spawnd');
    assert.ok(helper, `a spawn helper under the daemon; logs: ${daemon.logs()}`);
    assert.equal(
      await procStatus(helper.pid, 'Uid'),
      `${account.uid}\t${account.uid}\t${account.uid}\t${account.uid}`,
    );
    assert.doesNotMatch(daemon.logs(), /spawn helper/);

    assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
    await assert.rejects(stat(pidFile), /ENOENT/, 'pid file removed at exit');
  });

  test('with a config file, refuses to run as root without user or allow_root, before binding anything', async (t) => {
    const dir = await tmpDir(t, 'sock-');
    const sock = join(dir, 'g.sock');
    const ini = join(dir, 'git-fcgi.ini');
    await writeFile(ini, `[server]\nlisten = unix:${sock}\n`);
    const result = await run(process.execPath, [cliPath, '-c', ini], { timeoutMs: 10_000 });
    assert.equal(result.code, 1);
    assert.match(result.stderr.toString(), /refusing to run as root: set user .*allow_root/);
    await assert.rejects(stat(sock), /ENOENT/);
  });

  test('a user that does not exist is an error at startup', async (t) => {
    const sock = join(await tmpDir(t, 'sock-'), 'g.sock');
    const args = [cliPath, '--listen', `unix:${sock}`, '--user', 'no-such-user-x'];
    const result = await run(process.execPath, args, { timeoutMs: 10_000 });
    assert.equal(result.code, 1);
    assert.match(result.stderr.toString(), /ERR_PRIVILEGES: \[server\] user: no such user: no-such-user-x/);
    await assert.rejects(stat(sock), /ENOENT/);
  });
});

describe('signals', () => {
  test('SIGTERM during a clone: the socket goes at once, the clone completes, then git-fcgi exits 0', async (t) => {
    const root = await tmpDir(t, 'term-');
    const repo = await randomBlobRepo(t, root, 'big.git', { bytes: 12 * 1024 * 1024 });
    const { sock, daemon, nginx } = await startGitStack(t, root, { args: ['--export-all'] });
    // The client reads at 3 MB/s, so the clone takes a few seconds and is mid-pack at SIGTERM.
    const nginxPort = nginx.ports[0] ?? assert.fail('no nginx port');
    const slowPort = await startSlowProxy(t, nginxPort, 3 * 1024 * 1024);
    const dest = join(await tmpDir(t, 'clone-'), 'big');
    const cloneStarted = Date.now();
    const clone = git(t, ['clone', '-q', `http://127.0.0.1:${slowPort}/big.git`, dest]);
    await waitFor(
      async () => /status=200/.test(daemon.logs()) && (await gitProcessesUnder(root)).length > 0,
      { timeoutMs: 10_000, what: 'the refs to be served and the pack to start' },
    );
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok((await gitProcessesUnder(root)).length > 0, 'the pack is still being sent');
    const termAt = Date.now();
    const stopped = daemon.stop('SIGTERM');
    await waitFor(
      () =>
        stat(sock).then(
          () => false,
          () => true,
        ),
      {
        timeoutMs: 2000,
        what: 'the socket to be removed',
      },
    );
    await clone;
    const cloneDone = Date.now();
    const exit = await stopped;
    const exitedAt = Date.now();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(exitedAt >= cloneDone - 50, 'git-fcgi exited after the clone finished');
    const head = (await git(t, ['rev-parse', 'HEAD'], { cwd: dest })).stdout.toString().trim();
    assert.equal(head, repo.head);
    assert.match(daemon.logs(), /SIGTERM: stopping, waiting up to 30000 ms for 1 request/);
    assert.doesNotMatch(daemon.logs(), /aborted \d+ request/);
    t.diagnostic(
      `clone ${cloneDone - cloneStarted} ms; SIGTERM -> exit ${exitedAt - termAt} ms (clone finished ${cloneDone - termAt} ms after SIGTERM)`,
    );
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('SIGHUP applies a good config, refuses a bad one (old kept), and reopens log files', async (t) => {
    const dir = await tmpDir(t, 'hup-');
    const root = await tmpDir(t, 'repos-');
    await createBareRepo(t, root, 'r.git');
    const sock = join(dir, 'g.sock');
    const ini = join(dir, 'git-fcgi.ini');
    const logFile = join(dir, 'git-fcgi.log');
    const config = (server: string): string =>
      `[server]\nstatus_path = /status\n${server}\n[git]\nproject_root = ${root}\nexport_all = true\n[log]\nfile = ${logFile}\n`;
    await writeFile(ini, config('max_children = 1'));
    const daemon = await startGitFcgi(t, ['-c', ini, '--listen', `unix:${sock}`, '--allow-root']);
    const nginx = await startNginx(t, { servers: [{ locations: gitLocation({ socket: sock }) }] });
    const status = async (): Promise<string> => (await fetch(nginx.url(0, '/status'))).text();
    const log = (): Promise<string> => readFile(logFile, 'utf8').catch(() => '');
    assert.match(await status(), /^max children: +1$/m);

    // logrotate moves the file away, then reloads.
    await rename(logFile, `${logFile}.1`);
    await writeFile(ini, config('max_children = 3\nqueue = 7\nhttp = 127.0.0.1:1'));
    process.kill(daemon.pid, 'SIGHUP');
    await waitFor(async () => /configuration reloaded/.test(await log()), {
      timeoutMs: 5000,
      what: 'the reload, logged in a new log file',
    });
    assert.match(await status(), /^max children: +3$/m);
    assert.match(await status(), /^queue size: +7$/m);
    assert.match(await log(), /warn reload: \[server\] http changed; restart git-fcgi to apply/);
    assert.match(await readFile(`${logFile}.1`, 'utf8'), /SIGHUP: reloading/);

    await writeFile(ini, config('max_children = 3\nmax_children_typo = 9'));
    process.kill(daemon.pid, 'SIGHUP');
    await waitFor(async () => /reload refused/.test(await log()), { timeoutMs: 5000, what: 'the refusal' });
    assert.match(
      await log(),
      new RegExp(`reload refused.*${ini}:4: unknown key \\\\"max_children_typo\\\\" in \\[server\\]`),
    );
    assert.match(await status(), /^max children: +3$/m, 'the running config is kept');
    assert.equal((await fetch(nginx.url(0, '/r.git/info/refs'))).status, 200);
    assert.deepEqual(await daemon.stop(), { code: 0, signal: null });
  });
});

test('started from flags alone as root, it serves (the documented one-liner) and warns', async (t) => {
  const dir = await tmpDir(t, 'root-flags-');
  const sock = join(dir, 'g.sock');
  const daemon = await startGitFcgi(t, ['--listen', `unix:${sock}`, '--project-root', dir], {
    allowRoot: false,
  });
  await waitFor(() => /running as root/.test(daemon.logs()), { timeoutMs: 5000, what: 'the root warning' });
});
