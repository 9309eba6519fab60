import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, startGitFcgi } from '../helpers/daemon.js';
import { htpasswd, startNginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
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

  const example = await readFile(join(repoRoot, 'etc', 'nginx', 'git-fcgi.conf'), 'utf8');
  const body = /^server \{\n([\s\S]*)\n\}\s*$/m.exec(example)?.[1];
  assert.ok(body, 'the example is one server block');
  const replaced = body
    .replace(/^\s*listen 80;$/m, '')
    .replaceAll('/srv/git;', `${root};`)
    .replaceAll('/etc/nginx/git.htpasswd', users)
    .replaceAll('unix:/run/git-fcgi/git-fcgi.sock', `unix:${sock}`)
    // nginx resolves relative includes against its prefix; the test runs with its own prefix.
    .replace(/include\s+fastcgi_params;/g, 'include /etc/nginx/fastcgi_params;');
  for (const original of ['/srv/git;', '/etc/nginx/git.htpasswd', 'unix:/run/git-fcgi/git-fcgi.sock']) {
    assert.ok(!replaced.includes(original), `${original} was substituted`);
  }
  const nginx = await startNginx(t, { servers: [{ locations: replaced }] });
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
  await assertNoGitProcesses(root, { withinMs: 2000 });
});
