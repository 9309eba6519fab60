/**
 * The quick start's whole loop (`npm start` = git-fcgi --demo): anonymous clone, a push refused with 401
 * so git asks for credentials, a push with the URL git-fcgi printed, and a new password at every start.
 * On port 0 instead of 8080, which other tests and people on the machine may hold.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Cleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { git, gitEnv } from '../helpers/repos.js';
import { run } from '../helpers/run.js';
import { tmpDir } from '../helpers/tmp.js';

const PUSH_LINE =
  /demo: push as demo \(a new password at every start\): git push (http:\/\/demo:(\S+)@127\.0\.0\.1:(\d+)\/demo\.git) main/;

interface Started {
  readonly daemon: GitFcgi;
  readonly pushUrl: string;
  readonly password: string;
  readonly anonymousUrl: string;
}

async function startDemo(t: Cleanup, root: string): Promise<Started> {
  const daemon = await startGitFcgi(t, ['--demo', root, '--http', '127.0.0.1:0']);
  await waitFor(() => PUSH_LINE.test(daemon.logs()), { timeoutMs: 10_000, what: 'the push line' });
  const [, pushUrl = '', password = '', port = ''] = PUSH_LINE.exec(daemon.logs()) ?? [];
  assert.equal(Number(port), daemon.httpPort);
  return { daemon, pushUrl, password, anonymousUrl: `http://127.0.0.1:${port}/demo.git` };
}

const commit = (t: Cleanup, cwd: string, message: string) =>
  git(
    t,
    [
      '-c',
      'user.name=New User',
      '-c',
      'user.email=new@example.invalid',
      'commit',
      '-q',
      '--allow-empty',
      '-m',
      message,
    ],
    { cwd },
  );

describe('npm start: the demo', () => {
  test('clone anonymously; push refused with 401 until the printed URL is used', async (t) => {
    const dir = await tmpDir(t, 'demo-');
    const root = join(dir, 'root');
    const { daemon, pushUrl, password, anonymousUrl } = await startDemo(t, root);
    assert.match(daemon.logs(), /demo: git clone http:\/\/127\.0\.0\.1:\d+\/demo\.git/);
    assert.match(password, /^[\w-]{16}$/);

    const clone = join(dir, 'clone');
    await git(t, ['clone', '-q', anonymousUrl, clone]);
    assert.match(await readFile(join(clone, 'README.md'), 'utf8'), /git-fcgi/);
    await commit(t, clone, 'first push');

    // Anonymous: git-fcgi answers 401 with a challenge, so git asks for a user name (here: cannot).
    const refused = await run('git', ['push', 'origin', 'main'], {
      cwd: clone,
      env: await gitEnv(t),
      timeoutMs: 30_000,
    });
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr.toString(),
      /could not read Username for 'http:\/\/127\.0\.0\.1:\d+': terminal prompts disabled/,
    );
    const challenge = await fetch(`${anonymousUrl}/info/refs?service=git-receive-pack`);
    assert.equal(challenge.status, 401);
    assert.equal(challenge.headers.get('www-authenticate'), 'Basic realm="git-fcgi demo", charset="UTF-8"');

    const wrong = await run('git', ['push', pushUrl.replace(password, 'not-the-password'), 'main'], {
      cwd: clone,
      env: await gitEnv(t),
      timeoutMs: 30_000,
    });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr.toString(), /Authentication failed/);

    await git(t, ['push', '-q', pushUrl, 'main'], { cwd: clone });
    const head = (await git(t, ['rev-parse', 'HEAD'], { cwd: clone })).stdout.toString().trim();
    const served = (await git(t, ['rev-parse', 'main'], { cwd: join(root, 'demo.git') })).stdout
      .toString()
      .trim();
    assert.equal(served, head);

    // Anonymous reads see the push.
    const again = join(dir, 'again');
    await git(t, ['clone', '-q', anonymousUrl, again]);
    assert.equal((await git(t, ['rev-parse', 'HEAD'], { cwd: again })).stdout.toString().trim(), head);
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('started again on the same directory: the repository stays, the password is new, the old one fails', async (t) => {
    const dir = await tmpDir(t, 'demo-');
    const root = join(dir, 'root');
    const first = await startDemo(t, root);
    const clone = join(dir, 'clone');
    await git(t, ['clone', '-q', first.anonymousUrl, clone]);
    await commit(t, clone, 'kept');
    await git(t, ['push', '-q', first.pushUrl, 'main'], { cwd: clone });
    await first.daemon.stop();

    const second = await startDemo(t, root);
    assert.notEqual(second.password, first.password);
    const oldCredentials = Buffer.from(`demo:${first.password}`).toString('base64');
    const res = await fetch(`${second.anonymousUrl}/info/refs?service=git-receive-pack`, {
      headers: { authorization: `Basic ${oldCredentials}` },
    });
    assert.equal(res.status, 401);
    const head = (await git(t, ['rev-parse', 'HEAD'], { cwd: clone })).stdout.toString().trim();
    const remote = (
      await git(t, ['ls-remote', second.anonymousUrl, 'main'], { cwd: clone })
    ).stdout.toString();
    assert.equal(remote.split('\t')[0], head);
  });
});
