import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup } from '../helpers/cleanup.js';
import { cliPath, repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
}

/** One GET, from a chosen loopback address (the failure limit is per address), with a deadline. */
function get(
  port: number,
  path: string,
  opts: { user?: string; password?: string; from?: string } = {},
): Promise<Answer> {
  const auth = opts.user === undefined ? {} : { auth: `${opts.user}:${opts.password ?? ''}` };
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path, localAddress: opts.from ?? '127.0.0.1', timeout: 10_000, ...auth },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
  });
}

const rules = (team: string): string => `
[groups]
team = ${team}

[repo:public/*]
read = anonymous
write = alice

[repo:team/*]
read = @team
`;

/**
 * htpasswd mode on the quick-start HTTP listener (no nginx at all): anonymous read with
 * authenticated push, the failure limit, reloads of the htpasswd file and of the rules.
 */
describe('access control without nginx (htpasswd mode, HTTP listener)', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let work: string;
  let users: string;
  let config: string;
  let daemon: GitFcgi;
  let port: number;

  const setUsers = async (entries: Record<string, string>): Promise<void> => {
    await writeFile(users, '');
    for (const [user, password] of Object.entries(entries)) {
      const r = await run('htpasswd', ['-i', '-B', users, user], { input: password, timeoutMs: 10_000 });
      assert.equal(r.code, 0, r.stderr.toString());
    }
  };
  const writeConfig = (extra: string): Promise<void> =>
    writeFile(
      config,
      `[git]\nproject_root = ${root}\nexport_all = true\n[auth]\nmode = htpasswd\nhtpasswd = ${users}\nrealm = Test Git\n${extra}`,
    );

  before(async () => {
    root = await tmpDir(suite, 'acl-http-');
    work = await tmpDir(suite, 'acl-http-work-');
    await createBareRepo(suite, root, 'public/site.git');
    await createBareRepo(suite, root, 'team/app.git');
    users = join(work, 'htpasswd');
    config = join(work, 'git-fcgi.ini');
    await setUsers({ alice: 'alice-pw' });
    await writeConfig(rules('alice'));
    daemon = await startGitFcgi(suite, ['-c', config, '--http', '127.0.0.1:0']);
    port = daemon.httpPort ?? 0;
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 3000 });
  });

  test('anonymous clone and authenticated push, with no front end at all', async () => {
    const dir = join(work, 'clone');
    await git(suite, ['clone', '-q', `http://127.0.0.1:${port}/public/site.git`, dir]);
    await git(
      suite,
      ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '--allow-empty', '-m', 'x'],
      {
        cwd: dir,
      },
    );
    await git(
      suite,
      ['push', '-q', `http://alice:alice-pw@127.0.0.1:${port}/public/site.git`, 'HEAD:refs/heads/x'],
      {
        cwd: dir,
      },
    );
    const refs = (
      await git(suite, ['for-each-ref', '--format=%(refname)'], { cwd: join(root, 'public/site.git') })
    ).stdout.toString();
    assert.match(refs, /^refs\/heads\/x$/m);
  });

  test("the rules never turn on what a repository's own config turned off", async () => {
    await createBareRepo(suite, root, 'public/locked.git');
    await git(suite, ['config', 'http.receivepack', 'false'], { cwd: join(root, 'public/locked.git') });
    await createBareRepo(suite, root, 'public/closed.git');
    await git(suite, ['config', 'http.uploadpack', 'false'], { cwd: join(root, 'public/closed.git') });
    const alice = { user: 'alice', password: 'alice-pw' };
    // alice may write public/* by the rules; git http-backend still says no to this repository.
    const push = await get(port, '/public/locked.git/info/refs?service=git-receive-pack', alice);
    assert.equal(push.status, 403);
    assert.equal((await get(port, '/public/site.git/info/refs?service=git-receive-pack', alice)).status, 200);
    // anonymous may read public/* by the rules; the repository turned upload-pack off.
    assert.equal((await get(port, '/public/closed.git/info/refs?service=git-upload-pack')).status, 403);
  });

  test('401 carries the realm; a 401 for a missing repository looks like one for an existing one', async () => {
    const existing = await get(port, '/team/app.git/info/refs?service=git-upload-pack');
    const missing = await get(port, '/team/nope.git/info/refs?service=git-upload-pack');
    for (const answer of [existing, missing]) {
      assert.equal(answer.status, 401);
      assert.equal(answer.headers['www-authenticate'], 'Basic realm="Test Git", charset="UTF-8"');
    }
  });

  test('429 after 10 failed logins a minute from one address; other addresses go on', async () => {
    const path = '/team/app.git/info/refs?service=git-upload-pack';
    for (let i = 0; i < 10; i++) {
      const answer = await get(port, path, { user: 'alice', password: `wrong${i}`, from: '127.0.0.3' });
      assert.equal(answer.status, 401, `attempt ${i + 1}`);
    }
    const blocked = await get(port, path, { user: 'alice', password: 'alice-pw', from: '127.0.0.3' });
    assert.equal(blocked.status, 429, 'even the right password, once the limit is reached');
    const retryAfter = Number(blocked.headers['retry-after']);
    assert.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.equal(
      (await get(port, path, { user: 'alice', password: 'alice-pw', from: '127.0.0.4' })).status,
      200,
    );
    assert.equal(
      (await get(port, '/public/site.git/info/refs', { from: '127.0.0.3' })).status,
      200,
      'anonymous reads go on',
    );
    assert.match(daemon.logs(), /warn login failed .*user=alice addr=127\.0\.0\.3/);
  });

  test('the htpasswd file is re-read when it changes', async () => {
    const path = '/team/app.git/info/refs?service=git-upload-pack';
    assert.equal(
      (await get(port, path, { user: 'alice', password: 'alice-pw', from: '127.0.0.5' })).status,
      200,
    );
    await setUsers({ alice: 'new-pw' });
    assert.equal(
      (await get(port, path, { user: 'alice', password: 'alice-pw', from: '127.0.0.5' })).status,
      401,
    );
    assert.equal(
      (await get(port, path, { user: 'alice', password: 'new-pw', from: '127.0.0.5' })).status,
      200,
    );
  });

  test('SIGHUP reloads rules and groups; a broken config is refused and the old rules stay', async () => {
    const path = '/team/app.git/info/refs?service=git-upload-pack';
    await setUsers({ alice: 'new-pw', dave: 'dave-pw' });
    await writeConfig(rules('alice'));
    process.kill(daemon.pid, 'SIGHUP');
    await waitFor(() => /configuration reloaded/.test(daemon.logs()), {
      timeoutMs: 5000,
      what: 'reload',
    });
    const dave = { user: 'dave', password: 'dave-pw', from: '127.0.0.6' };
    assert.equal((await get(port, path, dave)).status, 403);
    await writeConfig(rules('alice, dave'));
    process.kill(daemon.pid, 'SIGHUP');
    await waitFor(async () => (await get(port, path, dave)).status === 200, {
      timeoutMs: 5000,
      what: 'dave to be let in after the reload',
    });
    await writeConfig(`${rules('alice')}\n[repo:broken]\nread = @nobody\n`);
    process.kill(daemon.pid, 'SIGHUP');
    await waitFor(() => /reload refused, keeping the running configuration/.test(daemon.logs()), {
      timeoutMs: 5000,
      what: 'the reload error',
    });
    assert.match(daemon.logs(), /git-fcgi\.ini:\d+: \[repo:broken\] read: unknown group @nobody/);
    assert.equal((await get(port, path, dave)).status, 200, 'still the previous rules');
  });
});

describe('access control from the command line', () => {
  test('--check-config names file and line of a bad rule, and accepts dotted patterns', async (t) => {
    const dir = await tmpDir(t, 'acl-cli-');
    const file = join(dir, 'git-fcgi.ini');
    await writeFile(
      file,
      '[git]\nexport_all = true\n\n[repo:docs.example/*.git]\nread = *\nwrite = @ghosts\n',
    );
    const bad = await run(process.execPath, [cliPath, '-c', file, '--allow-root', '--check-config'], {
      timeoutMs: 10_000,
    });
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr.toString(),
      new RegExp(`${file}:6: \\[repo:docs\\.example/\\*\\.git\\] write: unknown group @ghosts`),
    );
    await writeFile(file, '[git]\nexport_all = true\n\n[repo:docs.example/*.git]\nread = *\n');
    const good = await run(process.execPath, [cliPath, '-c', file, '--allow-root', '--check-config'], {
      timeoutMs: 10_000,
    });
    assert.equal(good.code, 0, good.stderr.toString());
  });

  test('the access rules documented in etc/git-fcgi.ini are valid once uncommented', async (t) => {
    const dir = await tmpDir(t, 'acl-cli-');
    const users = join(dir, 'htpasswd');
    const r0 = await run('htpasswd', ['-i', '-c', '-B', users, 'alice'], { input: 'pw', timeoutMs: 10_000 });
    assert.equal(r0.code, 0);
    const shipped = await readFile(join(repoRoot, 'etc/git-fcgi.ini'), 'utf8');
    const marker = shipped.indexOf('; Access control (off until');
    assert.ok(marker > 0, 'the reference config has the access control part');
    // Commented-out settings are `;key = value` / `;[section]`; explanations are `; text`.
    const example = shipped.slice(marker).replace(/^;(?=\S)/gm, '');
    assert.match(example, /^\[repo:team\/\*\.git\]$/m);
    const file = join(dir, 'git-fcgi.ini');
    await writeFile(file, `[git]\nexport_all = true\n${example.replace('/etc/git-fcgi/htpasswd', users)}`);
    const r = await run(process.execPath, [cliPath, '-c', file, '--allow-root', '--check-config'], {
      timeoutMs: 10_000,
    });
    assert.equal(r.code, 0, r.stderr.toString());
  });

  test('--check-config reports htpasswd entries git-fcgi refuses', async (t) => {
    const dir = await tmpDir(t, 'acl-cli-');
    const users = join(dir, 'htpasswd');
    await writeFile(users, 'plain:secret\n');
    const file = join(dir, 'git-fcgi.ini');
    await writeFile(file, `[auth]\nmode = htpasswd\nhtpasswd = ${users}\n[repo:**]\nread = *\n`);
    const r = await run(process.execPath, [cliPath, '-c', file, '--allow-root', '--check-config'], {
      timeoutMs: 10_000,
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr.toString(), /htpasswd:1: plain: plain-text or crypt\(\) password refused/);
  });

  test('install-hooks: refuses what is not a repository, updates its own hook in place', async (t) => {
    const root = await tmpDir(t, 'acl-hooks-');
    const repo = await createBareRepo(t, root, 'a.git');
    await mkdir(join(root, 'plain'));
    const notRepo = await run(process.execPath, [cliPath, 'install-hooks', join(root, 'plain')], {
      timeoutMs: 10_000,
    });
    assert.equal(notRepo.code, 1);
    assert.match(notRepo.stderr.toString(), /not a bare git repository/);
    const first = await run(process.execPath, [cliPath, 'install-hooks', repo.path], { timeoutMs: 10_000 });
    assert.match(first.stdout.toString(), /pre-receive: installed\n/);
    const again = await run(process.execPath, [cliPath, 'install-hooks', repo.path], { timeoutMs: 10_000 });
    assert.match(again.stdout.toString(), /pre-receive: installed \(updated\)/);
    const script = await readFile(join(repo.path, 'hooks/pre-receive'), 'utf8');
    assert.ok(script.includes(`'${process.execPath}' '${cliPath}' hook pre-receive`), script);
  });
});
