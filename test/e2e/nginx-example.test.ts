import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startGitFcgi } from '../helpers/daemon.js';
import { assertForgedUsersRefused, forgedUserRepos, forgedUserRules } from '../helpers/forged-user.js';
import { htpasswd, startNginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import {
  fastcgiParamsWithoutRemoteUser,
  shippedNginx,
  basicAuth,
  shippedNginxConfig,
} from '../helpers/shipped-nginx.js';
import { tmpDir } from '../helpers/tmp.js';

/**
 * etc/nginx/git-fcgi.conf must work as pasted: only what its comments mark CHANGE (and the
 * listen address, for a test) is replaced; everything else runs as shipped.
 */
test('the shipped nginx example serves clones anonymously and pushes with a login', async (t) => {
  const root = await tmpDir(t, 'example-');
  const repo = await createBareRepo(t, root, 'project.git', { commits: 2 });
  const sock = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
  const dir = await tmpDir(t, 'ini-');
  const ini = join(dir, 'git-fcgi.ini');
  await writeFile(
    ini,
    `[server]\nallow_root = true\nping_path = /git-fcgi-ping\nstatus_path = /git-fcgi-status\n[git]\nexport_all = true\n`,
  );
  const daemon = await startGitFcgi(t, ['-c', ini, '--listen', `unix:${sock}`]);
  const users = await htpasswd(t, root, { alice: 'secret' });

  const shipped = await shippedNginx({ root, htpasswd: users, socket: sock });
  const nginx = await startNginx(t, shippedNginxConfig([shipped]));
  const url = nginx.url(0, '/project.git');

  const trace = join(root, 'trace');
  const clone = join(root, 'clone');
  await git(t, ['-c', 'protocol.version=2', 'clone', '-q', url, clone], {
    env: { GIT_TRACE_PACKET: trace },
  }).catch(async (err: unknown) => {
    throw new Error(`${String(err)}\n${daemon.logs()}\n${await nginx.errorLog()}`, { cause: err });
  });
  assert.match(await readFile(trace, 'utf8'), /version 2/, 'GIT_PROTOCOL reaches git');
  assert.equal((await git(t, ['rev-parse', 'HEAD'], { cwd: clone })).stdout.toString().trim(), repo.head);

  await writeFile(join(clone, 'new.txt'), 'x\n');
  await git(t, ['add', 'new.txt'], { cwd: clone });
  await git(t, ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '-m', 'n'], { cwd: clone });
  // Anonymous: nginx asks for a login (401), and git without a terminal gives up.
  await assert.rejects(
    git(t, ['push', '-q', url, 'HEAD:main'], { cwd: clone }),
    /Authentication failed|401|could not read Username/,
  );
  const withLogin = url.replace('http://', 'http://alice:secret@');
  await git(t, ['push', '-q', withLogin, 'HEAD:main'], { cwd: clone });
  const pushed = (await git(t, ['rev-parse', 'main'], { cwd: join(root, 'project.git') })).stdout
    .toString()
    .trim();
  assert.equal(pushed, (await git(t, ['rev-parse', 'HEAD'], { cwd: clone })).stdout.toString().trim());
  // The ping and status locations answer localhost (the test's client).
  const ping = await fetch(nginx.url(0, '/git-fcgi-ping'));
  assert.equal(await ping.text(), 'pong\n');
  const status = await (await fetch(nginx.url(0, '/git-fcgi-status?json'))).json();
  assert.ok(typeof status === 'object' && status !== null && 'accepted' in status);
  assert.doesNotMatch(daemon.logs(), /without AUTH_TYPE/, 'no unchecked-user warning for the example');
  await assertNoGitProcesses(root, { withinMs: 2000 });
});

/**
 * nginx fills $remote_user from any client's Authorization header, checked or not, and Debian's
 * fastcgi_params passes it on as REMOTE_USER. With git-fcgi's rules trusting REMOTE_USER (mode = nginx),
 * the shipped config must still give a forged header no user: neither with Debian's fastcgi_params (which
 * sends REMOTE_USER itself, so the param arrives twice) nor with nginx's own (which does not).
 */
test('the shipped nginx example gives forged Authorization headers no user (mode = nginx rules)', async (t) => {
  const root = await tmpDir(t, 'forged-');
  const repos = await forgedUserRepos(t, root);
  const sock = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
  const ini = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
  await writeFile(ini, `[server]\nallow_root = true\n[git]\nexport_all = true\n${forgedUserRules()}`);
  const daemon = await startGitFcgi(t, ['-c', ini, '--listen', `unix:${sock}`]);
  const users = await htpasswd(t, root, { alice: 'secret' });
  const common = { root, htpasswd: users, socket: sock } as const;
  const debian = await shippedNginx(common);
  const upstream = await shippedNginx({
    ...common,
    fastcgiParams: await fastcgiParamsWithoutRemoteUser(t),
    upstreamSuffix: 'b',
  });
  const nginx = await startNginx(t, shippedNginxConfig([debian, upstream]));
  for (const [index, which] of ['Debian', "nginx's own"].entries()) {
    await t.test(`with ${which} fastcgi_params`, async () => {
      const table = await assertForgedUsersRefused(t, nginx.url(index, '/'), repos, 'secret').catch(
        async (err: unknown) => {
          throw new Error(`${String(err)}\n${daemon.logs()}\n${await nginx.errorLog()}`, { cause: err });
        },
      );
      t.diagnostic(table.join('; '));
    });
  }
  assert.doesNotMatch(daemon.logs(), /without AUTH_TYPE/, 'no unchecked-user warning for the example');
  await assertNoGitProcesses(root, { withinMs: 2000 });
});

/** The variant for git-fcgi's `[auth] mode = htpasswd`: the FRONT-END AUTH block deleted, as the config says. */
test("the shipped nginx example's htpasswd-mode variant: git-fcgi refuses forged headers itself", async (t) => {
  const root = await tmpDir(t, 'forged-');
  const repos = await forgedUserRepos(t, root);
  const sock = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
  const users = await htpasswd(t, await tmpDir(t, 'users-'), { alice: 'secret' });
  const ini = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
  await writeFile(ini, `[server]\nallow_root = true\n[git]\nexport_all = true\n${forgedUserRules(users)}`);
  const daemon = await startGitFcgi(t, ['-c', ini, '--listen', `unix:${sock}`]);
  const shipped = await shippedNginx({ root, htpasswd: '/nonexistent', socket: sock, variant: 'htpasswd' });
  assert.doesNotMatch(shipped.server, /auth_basic/);
  const nginx = await startNginx(t, shippedNginxConfig([shipped]));
  await assertForgedUsersRefused(t, nginx.url(0, '/'), repos, 'secret').catch(async (err: unknown) => {
    throw new Error(`${String(err)}\n${daemon.logs()}\n${await nginx.errorLog()}`, { cause: err });
  });
  assert.match(daemon.logs(), /warn login failed .*user=mallory/);
  await assertNoGitProcesses(root, { withinMs: 2000 });
});

/**
 * The example as it was before it checked every Authorization header: auth_basic for pushes only, and
 * REMOTE_USER passed for every request. git-fcgi cannot stop that forged read, but it tells the admin,
 * once, when it sees an unchecked REMOTE_USER next to anonymous requests from the same front end.
 */
test('git-fcgi warns once about the old example, which passed unchecked users', async (t) => {
  const root = await tmpDir(t, 'forged-');
  await forgedUserRepos(t, root);
  const sock = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
  const ini = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
  await writeFile(ini, `[server]\nallow_root = true\n[git]\nexport_all = true\n${forgedUserRules()}`);
  const daemon = await startGitFcgi(t, ['-c', ini, '--listen', `unix:${sock}`]);
  const users = await htpasswd(t, root, { alice: 'secret' });
  const shipped = await shippedNginx({ root, htpasswd: users, socket: sock });
  const old = shipped.server
    .replace(/^\s*if \(\$http_authorization\).*\n/m, '')
    .replace(/^\s*fastcgi_param AUTH_TYPE .*\n/m, '');
  assert.notEqual(old, shipped.server);
  const nginx = await startNginx(t, shippedNginxConfig([{ ...shipped, server: old }]));
  const get = async (path: string, headers: Record<string, string> = {}): Promise<number> => {
    const res = await fetch(nginx.url(0, path), { headers });
    await res.arrayBuffer();
    return res.status;
  };
  const refs = '/project.git/info/refs?service=git-upload-pack';
  assert.equal(await get(refs), 200);
  assert.doesNotMatch(daemon.logs(), /without AUTH_TYPE/);
  const forged = basicAuth('alice', 'wrong');
  assert.equal(await get('/secret.git/info/refs?service=git-upload-pack', forged), 200, 'the old trap');
  for (let i = 0; i < 3; i++) {
    assert.equal(await get(refs), 200);
    assert.equal(await get(refs, forged), 200);
  }
  const warnings = daemon.logs().match(/warn REMOTE_USER came without AUTH_TYPE.*/g) ?? [];
  assert.equal(warnings.length, 1, daemon.logs());
  t.diagnostic(warnings[0] ?? '');
  assert.match(warnings[0] ?? '', new RegExp(`front_end=127\\.0\\.0\\.1:${nginx.ports[0]} user=alice`));
});
