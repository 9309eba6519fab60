import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  apacheHtpasswd,
  apacheReachableDir,
  assertNoApacheProcesses,
  socketOwnerArgs,
  startApache,
} from '../helpers/apache.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { assertForgedUsersRefused, forgedUserRepos, forgedUserRules } from '../helpers/forged-user.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { shippedApache } from '../helpers/shipped-apache.js';
import { tmpDir } from '../helpers/tmp.js';

const identity = ['-c', 'user.name=a', '-c', 'user.email=a@a'];

/** git-fcgi with `ini` (and allow_root) on a socket Apache's children can reach. */
async function daemonFor(t: TestContext, ini: string): Promise<{ sock: string; daemon: GitFcgi }> {
  const sock = join(await apacheReachableDir(t, 'sock-'), 'git-fcgi.sock');
  const file = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
  await writeFile(file, `[server]\nallow_root = true\n${ini}`);
  const daemon = await startGitFcgi(t, ['-c', file, '--listen', `unix:${sock}`, ...socketOwnerArgs()]);
  return { sock, daemon };
}

const revParse = async (t: TestContext, cwd: string, rev: string): Promise<string> =>
  (await git(t, ['rev-parse', rev], { cwd })).stdout.toString().trim();

/**
 * etc/apache/git-fcgi.conf must work as pasted: only what its comments mark CHANGE is replaced; the
 * harness adds what a temp-dir Apache needs around the virtual host (Listen and port, LoadModule, User).
 */
test('the shipped Apache example serves clones anonymously and pushes with a login', async (t) => {
  const root = await tmpDir(t, 'example-');
  const repo = await createBareRepo(t, root, 'project.git', { commits: 2 });
  await git(t, ['config', 'core.logAllRefUpdates', 'true'], { cwd: repo.path });
  // Served without export_all: the example leaves GIT_HTTP_EXPORT_ALL commented out.
  await writeFile(join(repo.path, 'git-daemon-export-ok'), '');
  const { sock, daemon } = await daemonFor(t, 'ping_path = /git-fcgi-ping\nstatus_path = /git-fcgi-status\n');
  const users = await apacheHtpasswd(t, { alice: 'secret' });
  const apache = await startApache(t, {
    vhosts: [{ body: await shippedApache({ root, htpasswd: users, socket: sock }) }],
  });
  const url = apache.url(0, '/project.git');
  const work = await tmpDir(t, 'work-');
  const failed = async (err: unknown): Promise<never> => {
    throw new Error(`${String(err)}\n${daemon.logs()}\n${await apache.errorLog()}`, { cause: err });
  };

  const trace = join(work, 'trace');
  const clone = join(work, 'clone');
  await git(t, ['-c', 'protocol.version=2', 'clone', '-q', url, clone], {
    env: { GIT_TRACE_PACKET: trace },
  }).catch(failed);
  assert.match(await readFile(trace, 'utf8'), /git< version 2/, 'the Git-Protocol header reaches git');
  assert.equal(await revParse(t, clone, 'HEAD'), repo.head);

  // More than http.postBuffer (1 MiB): git sends it chunked, Apache streams it without a length.
  await writeFile(join(clone, 'big.bin'), randomBytes(3 * 1024 * 1024));
  await git(t, ['add', 'big.bin'], { cwd: clone });
  await git(t, [...identity, 'commit', '-q', '-m', 'n'], { cwd: clone });
  const commit = await revParse(t, clone, 'HEAD');
  // Anonymous: the advertisement is challenged (401), and git without a terminal gives up.
  await assert.rejects(
    git(t, ['push', '-q', url, 'HEAD:main'], { cwd: clone }),
    /Authentication failed|401|could not read Username/,
  );
  const withLogin = url.replace('http://', 'http://alice:secret@');
  const curl = join(work, 'curl');
  await git(t, ['push', '-q', withLogin, 'HEAD:main'], {
    cwd: clone,
    env: { GIT_TRACE_CURL: curl, GIT_TRACE_CURL_NO_DATA: '1' },
  }).catch(failed);
  assert.match(await readFile(curl, 'utf8'), /=> Send header: Transfer-Encoding: chunked/);
  assert.equal(await revParse(t, repo.path, 'main'), commit);
  const reflog = (await readFile(join(repo.path, 'logs', 'refs', 'heads', 'main'), 'utf8')).trim();
  assert.match(reflog.split('\n').at(-1) ?? '', / alice <alice@http\.127\.0\.0\.1> /, 'the pusher is alice');

  // The ping and status pages answer localhost (the test's client), with or without a login.
  assert.equal(await (await fetch(apache.url(0, '/git-fcgi-ping'))).text(), 'pong\n');
  const status = await fetch(apache.url(0, '/git-fcgi-status?json'), {
    headers: { Authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` },
  });
  assert.ok('accepted' in ((await status.json()) as object));
  assert.doesNotMatch(daemon.logs(), /without AUTH_TYPE/, 'Apache sends AUTH_TYPE with the users it checked');
  await daemon.stop();
  await apache.stop();
  await assertNoApacheProcesses(apache, { withinMs: 5000 });
  await assertNoGitProcesses(root, { withinMs: 2000 });
});

/**
 * Apache sets REMOTE_USER only for a user one of its auth modules checked; the shipped config checks every
 * request that brings an Authorization header. With git-fcgi's rules trusting REMOTE_USER (mode = nginx),
 * a forged header gets Apache's 401 and never a user.
 */
test('the shipped Apache example gives forged Authorization headers no user (mode = nginx rules)', async (t) => {
  const root = await tmpDir(t, 'forged-');
  const repos = await forgedUserRepos(t, root);
  const { sock, daemon } = await daemonFor(t, `[git]\nexport_all = true\n${forgedUserRules()}`);
  const users = await apacheHtpasswd(t, { alice: 'secret' });
  const apache = await startApache(t, {
    vhosts: [{ body: await shippedApache({ root, htpasswd: users, socket: sock }) }],
  });
  const table = await assertForgedUsersRefused(t, apache.url(0, '/'), repos, 'secret').catch(
    async (err: unknown) => {
      throw new Error(`${String(err)}\n${daemon.logs()}\n${await apache.errorLog()}`, { cause: err });
    },
  );
  t.diagnostic(table.join('; '));
  assert.doesNotMatch(daemon.logs(), /user=mallory/, 'no forged request reached git-fcgi as mallory');
  assert.doesNotMatch(daemon.logs(), /without AUTH_TYPE/, 'Apache sends AUTH_TYPE with the users it checked');
  await assertNoGitProcesses(root, { withinMs: 2000 });
});

/**
 * The variant for git-fcgi's `[auth] mode = htpasswd`: FRONT-END AUTH deleted, HTPASSWD MODE uncommented
 * (CGIPassAuth, without which Apache passes no Authorization header to FastCGI).
 */
test("the shipped Apache example's htpasswd-mode variant: git-fcgi refuses forged headers itself", async (t) => {
  const root = await tmpDir(t, 'forged-');
  const repos = await forgedUserRepos(t, root);
  const users = await apacheHtpasswd(t, { alice: 'secret' });
  const { sock, daemon } = await daemonFor(t, `[git]\nexport_all = true\n${forgedUserRules(users)}`);
  const body = await shippedApache({ root, htpasswd: '/nonexistent', socket: sock, variant: 'htpasswd' });
  assert.doesNotMatch(body, /^\s*Auth/m, 'no auth directives left');
  assert.match(body, /^\s*CGIPassAuth On$/m);
  const apache = await startApache(t, { vhosts: [{ body }] });
  await assertForgedUsersRefused(t, apache.url(0, '/'), repos, 'secret').catch(async (err: unknown) => {
    throw new Error(`${String(err)}\n${daemon.logs()}\n${await apache.errorLog()}`, { cause: err });
  });
  assert.match(daemon.logs(), /warn login failed .*user=mallory/);
  await assertNoGitProcesses(root, { withinMs: 2000 });
});
