import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { GitFcgiError } from '../../../src/errors.js';
import { isHeadRefText, locateRepository } from '../../../src/request/locate-repository.js';

const isError =
  (code: string, status: number) =>
  (err: unknown): boolean =>
    err instanceof GitFcgiError && err.code === code && err.status === status;

describe('locateRepository', () => {
  let base = '';
  let root = '';
  let outside = '';

  const git = promisify(execFile);
  const expectNotFound = isError('ERR_NOT_FOUND', 404);
  const locate = (repo: string, followSymlinks: boolean, from = root) =>
    locateRepository(from, repo, { followSymlinks });
  const gitDirOf = (repo: string, followSymlinks: boolean, from = root) =>
    locate(repo, followSymlinks, from).gitDir;

  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'git-fcgi-locate-'));
    root = path.join(base, 'root');
    outside = path.join(base, 'outside');
    await mkdir(path.join(root, 'team'), { recursive: true });
    await mkdir(outside);
    const init = (dir: string, ...flags: string[]) => git('git', ['init', '--quiet', ...flags, dir]);
    await init(path.join(root, 'team', 'app.git'), '--bare');
    await init(path.join(root, 'top.git'), '--bare');
    await init(path.join(outside, 'secret.git'), '--bare');
    await init(path.join(root, 'worktree'));
    // Both `both` (a bare repository) and `both.git` exist: git takes `both` (suffix '' before '.git').
    await init(path.join(root, 'both'), '--bare');
    await init(path.join(root, 'both.git'), '--bare');
    await mkdir(path.join(root, 'plain'));
    await mkdir(path.join(root, 'half.git'));
    await writeFile(path.join(root, 'half.git', 'HEAD'), 'ref: refs/heads/main\n');
    await mkdir(path.join(root, 'dirhead.git', 'HEAD'), { recursive: true });
    await mkdir(path.join(root, 'dirhead.git', 'objects'));
    await writeFile(path.join(root, 'file.git'), 'not a gitfile\n');
    await mkdir(path.join(root, 'linked'));
    await writeFile(path.join(root, 'linked', '.git'), 'gitdir: ../team/app.git\n');
    await mkdir(path.join(root, 'escaping'));
    await writeFile(path.join(root, 'escaping', '.git'), `gitdir: ${path.join(outside, 'secret.git')}\n`);
    await init(path.join(root, 'nested.git'), '--bare');
    await symlink(path.join(outside, 'secret.git'), path.join(root, 'nested.git', '.git'));
    await init(path.join(root, 'common.git'), '--bare');
    await writeFile(path.join(root, 'common.git', 'commondir'), `${path.join(outside, 'secret.git')}\n`);
    await symlink(path.join(outside, 'secret.git'), path.join(root, 'escape.git'));
    await symlink('..', path.join(root, 'team', 'up'));
    await symlink(path.join('team', 'app.git'), path.join(root, 'alias.git'));
    await symlink('team', path.join(root, 'teamlink'));
    await symlink('loop.git', path.join(root, 'loop.git'));
    await symlink('.', path.join(root, 'self.git'));
    await symlink(root, path.join(outside, 'root-link'));
  });
  after(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  for (const followSymlinks of [false, true]) {
    describe(`followSymlinks: ${followSymlinks}`, () => {
      it('finds a bare repository, with or without .git, and names it by its real path', async () => {
        const expected = await realpath(path.join(root, 'team', 'app.git'));
        for (const asked of ['team/app.git', 'team/app']) {
          const found = locate(asked, followSymlinks);
          assert.equal(found.gitDir, expected, asked);
          assert.equal(found.commonDir, expected, asked);
          assert.equal(found.name, 'team/app.git', asked);
        }
      });

      it("takes git's suffixes in git's order: /.git, as is, .git/.git, .git", async () => {
        assert.equal(gitDirOf('both', followSymlinks), await realpath(path.join(root, 'both')));
        assert.equal(gitDirOf('both.git', followSymlinks), await realpath(path.join(root, 'both.git')));
        const work = locate('worktree', followSymlinks);
        assert.equal(work.gitDir, await realpath(path.join(root, 'worktree', '.git')));
        assert.equal(work.name, 'worktree');
        assert.equal(work.entered, `${root}/worktree/.git`);
      });

      it('accepts a project root that is itself a symlink', async () => {
        const expected = await realpath(path.join(root, 'team', 'app.git'));
        assert.equal(gitDirOf('team/app.git', followSymlinks, path.join(outside, 'root-link')), expected);
      });

      const missing: Array<[string, string]> = [
        ['nope.git', 'a missing repository'],
        ['team/nope.git', 'a missing repository in a group'],
        ['plain', 'a directory without HEAD'],
        ['half.git', 'a directory with HEAD but no objects/'],
        ['dirhead.git', 'a directory whose HEAD is a directory'],
        ['file.git/x', 'a path through a regular file'],
        ['team', 'a group directory'],
        ['escape.git', 'a symlink pointing outside the root'],
        ['team/up/outside/secret.git', 'a symlink climbing out of the root'],
        ['loop.git', 'a symlink loop'],
        ['self.git', 'a symlink to the root itself'],
        ['escaping', 'a gitfile pointing outside the root'],
        ['nested.git', 'a repository whose own .git leads outside the root'],
        ['common.git', 'a commondir outside the root'],
      ];
      for (const [repo, what] of missing) {
        it(`${what} is ERR_NOT_FOUND (404)`, () => {
          assert.throws(() => locate(repo, followSymlinks), expectNotFound);
        });
      }

      it('refuses a repository that is not a clean relative path', () => {
        for (const repo of ['', '../outside/secret.git', 'team/../top.git', '/etc', 'a//b', 'a\0b']) {
          assert.throws(() => locate(repo, followSymlinks), isError('ERR_BAD_PATH', 400));
        }
      });

      it('reports a missing project root as ERR_CONFIG (500)', () => {
        assert.throws(
          () => locate('top.git', followSymlinks, path.join(base, 'no-such-root')),
          isError('ERR_CONFIG', 500),
        );
      });
    });
  }

  it('explains the escape in the message', () => {
    assert.throws(() => locate('escape.git', true), /outside the project root/);
    assert.throws(() => locate('escape.git', false), /symlink/);
    assert.throws(() => locate('escaping', true), /outside the project root/);
    assert.throws(() => locate('nested.git', true), /outside the project root|\.git of its own/);
  });

  it('follows a symlink or a gitfile to a repository inside the root only with followSymlinks; the name is the target', async () => {
    const expected = await realpath(path.join(root, 'team', 'app.git'));
    for (const alias of ['alias.git', 'linked', 'teamlink/app.git']) {
      assert.throws(() => locate(alias, false), expectNotFound, alias);
      const found = locate(alias, true);
      assert.equal(found.gitDir, expected, alias);
      assert.equal(found.name, 'team/app.git', `${alias}: rules see the repository, not the alias`);
    }
    assert.equal(locate('linked', true).viaGitfile, true);
  });

  it('a regular file where git expects a gitfile: git dies (500) when followed, 404 otherwise', () => {
    assert.throws(() => locate('file.git', true), isError('ERR_GIT_REFUSES', 500));
    assert.throws(() => locate('file.git', false), expectNotFound);
  });

  it('HEAD as validate_headref() reads it', () => {
    for (const ok of [
      'ref: refs/heads/main\n',
      'ref:refs/x',
      'ref: \t refs/heads/x',
      `${'a'.repeat(40)}\n`,
      `${'A'.repeat(40)}x`,
    ]) {
      assert.equal(isHeadRefText(ok), true, ok);
    }
    for (const bad of ['', 'ref: heads/main', 'refs/heads/main', 'a'.repeat(39), 'ref:', 'xref: refs/']) {
      assert.equal(isHeadRefText(bad), false, bad);
    }
  });
});
