import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import {
  beginRequest,
  fcgiExchange,
  gitParams,
  paramsRecords,
  stdinRecords,
} from '../helpers/fcgi-client.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { createBareRepo, git, GIT_HTTP_BACKEND } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

interface Answer {
  readonly status: number;
  readonly body: string;
}

/**
 * Repository lookup, differentially: every path goes to git http-backend run as a plain CGI
 * program (the reference) and to git-fcgi, and the answers must be the same, status and body.
 * Each repository has a HEAD of its own, so the dumb `HEAD` route names the one that was
 * entered. Where git-fcgi refuses on purpose (a path that leads outside the project root), it
 * must answer 404 and never show the outside repository.
 */
describe("repository lookup: git-fcgi vs git http-backend's enter_repo()", () => {
  const suite = suiteCleanup(after);
  let root: string;
  let daemon: GitFcgi;
  let socket: string;

  before(async () => {
    const base = await tmpDir(suite, 'lookup-');
    root = join(base, 'root');
    const outside = join(base, 'outside');
    await mkdir(root);
    await mkdir(outside);
    const bare = async (dir: string, head: string): Promise<void> => {
      await createBareRepo(suite, dirname(dir), basename(dir), { branch: head });
    };
    const work = async (dir: string, head: string): Promise<void> => {
      await git(suite, ['init', '-q', '-b', head, dir]);
      await git(
        suite,
        ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '--allow-empty', '-m', head],
        {
          cwd: dir,
        },
      );
    };
    await bare(join(outside, 'secret.git'), 'outside-secret');
    await bare(join(root, 'bare.git'), 'bare');
    await bare(join(root, 'both'), 'both-plain');
    await bare(join(root, 'both.git'), 'both-dotgit');
    await work(join(root, 'work'), 'work');
    await work(join(root, 'deep.git'), 'deep');
    await mkdir(join(root, 'viafile'));
    await writeFile(join(root, 'viafile', '.git'), 'gitdir: ../bare.git\n');
    await symlink(join(root, 'bare.git'), join(root, 'alias.git'));
    await mkdir(join(root, 'plain'));
    await mkdir(join(root, 'brokenfile'));
    await writeFile(join(root, 'brokenfile', '.git'), 'not a gitfile\n');
    // Leading outside the root: refused by git-fcgi, served by git.
    await symlink(join(outside, 'secret.git'), join(root, 'escape.git'));
    await mkdir(join(root, 'escapefile'));
    await writeFile(join(root, 'escapefile', '.git'), `gitdir: ${join(outside, 'secret.git')}\n`);
    // Bare repositories inside the root whose `.git` (a symlink, a gitfile) git enters first.
    await bare(join(root, 'inner.git'), 'inner');
    await symlink(join(outside, 'secret.git'), join(root, 'inner.git', '.git'));
    await bare(join(root, 'innerfile.git'), 'innerfile');
    await writeFile(join(root, 'innerfile.git', '.git'), `gitdir: ${join(outside, 'secret.git')}\n`);
    // git http-backend enters work2/.git; upload-pack then enters work2/.git/.git: outside.
    await work(join(root, 'work2'), 'work2');
    await writeFile(join(root, 'work2', '.git', '.git'), `gitdir: ${join(outside, 'secret.git')}\n`);
    const sockets = await tmpDir(suite, 'lookup-sock-');
    socket = join(sockets, 'g.sock');
    const config = join(sockets, 'git-fcgi.ini');
    await writeFile(config, '[git]\nfollow_symlinks = true\n');
    daemon = await startGitFcgi(suite, [
      '-c',
      config,
      '--listen',
      `unix:${socket}`,
      '--project-root',
      root,
      '--export-all',
    ]);
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  const params = (uri: string): Record<string, string> => gitParams(uri);

  async function reference(uri: string): Promise<Answer> {
    const p = params(uri);
    // As git-fcgi runs it: HOME is the serving user's home.
    const env = Object.entries({
      ...p,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      HOME: userInfo().homedir,
    })
      .filter(([, value]) => value !== '')
      .map(([name, value]) => `${name}=${value}`);
    const result = await run('env', ['-i', 'PATH=/usr/bin:/bin', ...env, GIT_HTTP_BACKEND], {
      timeoutMs: 10_000,
    });
    const out = result.stdout.toString('latin1');
    const sep = out.indexOf('\r\n\r\n');
    const head = sep === -1 ? out : out.slice(0, sep);
    const status = /^Status: (\d{3})/m.exec(head)?.[1];
    return {
      status: status === undefined ? 200 : Number(status),
      body: sep === -1 ? '' : out.slice(sep + 4),
    };
  }

  async function ours(uri: string): Promise<Answer> {
    const reply = await fcgiExchange(
      socket,
      Buffer.concat([beginRequest(), paramsRecords(params(uri)), stdinRecords(Buffer.alloc(0))]),
    );
    return { status: reply.status ?? 200, body: reply.body.toString('latin1') };
  }

  const same = [
    'bare.git',
    'bare',
    'both',
    'both.git',
    'work',
    'work/.git',
    'deep',
    'deep.git',
    'viafile',
    'alias.git',
    'nope',
    'plain',
    'brokenfile',
  ];
  const refusedHere = ['escape.git', 'escapefile', 'inner.git', 'innerfile.git', 'work2'];

  test('the same repository, or the same refusal, for every layout git knows', async () => {
    const seen = new Map<string, string>();
    for (const repo of same) {
      for (const route of ['HEAD', 'info/refs?service=git-upload-pack']) {
        const uri = `/${repo}/${route}`;
        const expected = await reference(uri);
        const actual = await ours(uri);
        assert.equal(actual.status, expected.status, `${uri}: status`);
        assert.equal(actual.body, expected.body, `${uri}: body`);
        if (route === 'HEAD') seen.set(repo, `${expected.status} ${expected.body.trim()}`);
      }
    }
    // The layouts do exercise every suffix and refusal (git's own answers, as compared above).
    assert.equal(seen.get('both'), '200 ref: refs/heads/both-plain');
    assert.equal(seen.get('both.git'), '200 ref: refs/heads/both-dotgit');
    assert.equal(seen.get('deep'), '200 ref: refs/heads/deep');
    assert.equal(seen.get('work'), '200 ref: refs/heads/work');
    assert.equal(seen.get('viafile'), '200 ref: refs/heads/bare');
    assert.equal(seen.get('nope'), '404 ');
    assert.match(seen.get('brokenfile') ?? '', /^500/);
  });

  test('what leads outside the project root: git serves it, git-fcgi answers 404 and never shows it', async () => {
    for (const repo of refusedHere) {
      for (const route of ['HEAD', 'info/refs?service=git-upload-pack']) {
        const uri = `/${repo}/${route}`;
        const expected = await reference(uri);
        const actual = await ours(uri);
        assert.equal(actual.status, 404, uri);
        assert.equal(actual.body, '', uri);
        if (repo !== 'work2' || route !== 'HEAD') {
          assert.match(
            expected.body,
            /outside-secret/,
            `${uri}: git itself does serve the outside repository`,
          );
        }
      }
    }
    assert.doesNotMatch(daemon.logs(), /status=200 .*repo=\.\./);
  });
});
