import assert from 'node:assert/strict';
import { chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { gitLocation, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { isLocalFilesystem } from '../../src/advertisement/depends-on.js';

/** Longer than the cache's racy window on a filesystem with sub-second timestamps (100 ms). */
const SETTLE_MS = 250;

async function body(url: string, protocol: string | undefined): Promise<{ status: number; body: Buffer }> {
  return withDeadline(
    (async () => {
      const res = await fetch(url, { headers: protocol === undefined ? {} : { 'Git-Protocol': protocol } });
      return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
    })(),
    10_000,
    `GET ${url}`,
  );
}

/**
 * The cache may only ever answer what git says at that moment: after every kind of change git
 * makes to refs (and a few it does not make: an in-place rewrite), the cached daemon's answer
 * is compared with an uncached one's (itself compared with git http-backend byte for byte in
 * advertise-refs.test.ts), and the cache must have answered the repeated requests.
 */
describe('ref advertisement cache', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let repo: string;
  let work: string;
  let cached: GitFcgi;
  let nginx: Nginx;
  let home: string;

  const hits = async (): Promise<number> => {
    const res = await fetch(`http://127.0.0.1:${cached.httpPort ?? 0}/git-fcgi-status?json`);
    return ((await res.json()) as { ref_cache_hits: number }).ref_cache_hits;
  };

  before(async () => {
    const dir = await tmpDir(suite, 'refcache-');
    if (!isLocalFilesystem(dir))
      throw new Error(`${dir} is not on a local filesystem: the cache stays off there`);
    root = join(dir, 'repos');
    repo = (await createBareRepo(suite, root, 'r.git', { commits: 3 })).path;
    work = join(dir, 'work');
    await git(suite, ['clone', '-q', repo, work]);
    const ini = join(dir, 'cached.ini');
    home = join(dir, 'home');
    await mkdir(home);
    // Both daemons give git the same HOME, whose .gitconfig a test changes.
    await writeFile(ini, `[server]\nstatus_path = /git-fcgi-status\n[git]\nhome = ${home}\n`);
    const plainIni = join(dir, 'plain.ini');
    await writeFile(plainIni, `[git]\nhome = ${home}\n`);
    const common = ['--project-root', root, '--export-all', '--log-level', 'debug'];
    cached = await startGitFcgi(suite, [
      '-c',
      ini,
      '--allow-root',
      '--listen',
      `unix:${join(dir, 'cached.sock')}`,
      '--http',
      '127.0.0.1:0',
      ...common,
    ]);
    await startGitFcgi(suite, [
      '-c',
      plainIni,
      '--allow-root',
      '--listen',
      `unix:${join(dir, 'plain.sock')}`,
      '--ref-cache',
      '0',
      ...common,
    ]);
    nginx = await startNginx(suite, {
      servers: ['cached', 'plain'].map((which) => ({
        locations: gitLocation({ socket: join(dir, `${which}.sock`) }),
      })),
    });
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  /** Both protocols, twice each: every answer equals the uncached one, the repeats come from the cache. */
  async function compare(what: string): Promise<void> {
    await sleep(SETTLE_MS);
    const before = await hits();
    for (const protocol of [undefined, 'version=2']) {
      const path = '/r.git/info/refs?service=git-upload-pack';
      const reference = await body(nginx.url(1, path), protocol);
      assert.equal(reference.status, 200, what);
      for (let i = 0; i < 2; i++) {
        const answer = await body(nginx.url(0, path), protocol);
        assert.equal(answer.status, 200, what);
        assert.ok(
          answer.body.equals(reference.body),
          `${what} (${protocol ?? 'v0'}, request ${i + 1}): cached ${JSON.stringify(answer.body.toString('latin1'))}\n` +
            `git says ${JSON.stringify(reference.body.toString('latin1'))}`,
        );
      }
    }
    // The first request after a change runs git; the second of each protocol is a hit.
    assert.ok((await hits()) - before >= 2, `${what}: the repeated requests were answered from the cache`);
  }

  const inRepo = (args: string[]): Promise<unknown> => git(suite, args, { cwd: repo });
  const inWork = (args: string[]): Promise<unknown> =>
    git(suite, ['-c', 'user.name=T', '-c', 'user.email=t@example.invalid', ...args], { cwd: work });

  test('after every change to refs, HEAD, packed-refs, config and packs, the answer is what git says', async () => {
    await compare('at first');
    await inWork(['commit', '-q', '--allow-empty', '-m', 'pushed']);
    await inWork(['push', '-q', 'origin', 'HEAD:main']);
    await compare('after a push to main');
    await inRepo(['branch', 'topic', 'main~1']);
    await compare('after a new branch');
    await inRepo([
      '-c',
      'user.name=T',
      '-c',
      'user.email=t@example.invalid',
      'tag',
      '-a',
      '-m',
      'v1',
      'v1',
      'main',
    ]);
    await compare('after an annotated tag (peeled line)');
    await inRepo(['pack-refs', '--all']);
    await compare('after pack-refs');
    await inRepo(['update-ref', 'refs/heads/topic', 'main']);
    await compare('after updating a packed ref');
    await inRepo(['branch', '-D', 'topic']);
    await compare('after deleting a branch');
    await inRepo(['symbolic-ref', 'HEAD', 'refs/heads/other']);
    await inRepo(['branch', 'other', 'main~2']);
    await compare('after moving HEAD to another branch');
    await inRepo(['config', 'uploadpack.hideRefs', 'refs/tags']);
    await compare('after hiding tags in the config');
    await inRepo(['config', 'uploadpack.allowFilter', 'true']);
    await compare('after a capability changed in the config');
    await inRepo(['gc', '-q']);
    await compare('after gc');
    // Not how git writes a ref, but a hand-made change must show too: same file, same size.
    await inRepo(['update-ref', 'refs/heads/loose', 'main']);
    await compare('after a new loose ref');
    const loose = join(repo, 'refs', 'heads', 'loose');
    const older = (await git(suite, ['rev-parse', 'main~1'], { cwd: repo })).stdout.toString();
    await writeFile(loose, older, { flag: 'r+' });
    assert.equal(await readFile(loose, 'utf8'), older);
    await compare('after a loose ref rewritten in place');
  });

  test("the serving user's global config (HOME) is read, and a change to it is seen", async () => {
    await inRepo(['branch', 'only-without-global-config', 'main']);
    await compare('with a new branch');
    await writeFile(
      join(home, '.gitconfig'),
      '[uploadpack]\n\thideRefs = refs/heads/only-without-global-config\n',
    );
    await compare('after ~/.gitconfig hid a branch');
    const answer = await body(nginx.url(0, '/r.git/info/refs?service=git-upload-pack'), undefined);
    assert.doesNotMatch(answer.body.toString(), /only-without-global-config/, 'git read ~/.gitconfig');
    await rm(join(home, '.gitconfig'));
    await compare('after ~/.gitconfig went away');
    await inRepo(['branch', '-D', 'only-without-global-config']);
  });

  test('a repository whose owner changes is answered as git answers it (dubious ownership), not from the cache', async () => {
    const path = '/r.git/info/refs?service=git-upload-pack';
    await compare('before the owner changes');
    const { uid, gid } = await stat(repo);
    try {
      await chown(repo, 65534, 65534);
      const reference = await body(nginx.url(1, path), undefined);
      const answer = await body(nginx.url(0, path), undefined);
      // As root, git refuses a repository owned by someone else (safe.directory): 500.
      assert.equal(reference.status, process.getuid?.() === 0 ? 500 : 200);
      assert.equal(answer.status, reference.status, 'the cache must not answer for a repository git refuses');
      assert.ok(answer.body.equals(reference.body));
    } finally {
      await chown(repo, uid, gid);
    }
    await compare('after the owner changed back');
  });

  test('a ref rewritten in place (same inode, same size) right after it was cached is seen at once', async () => {
    const path = '/r.git/info/refs?service=git-upload-pack';
    const ref = join(repo, 'refs', 'heads', 'racy');
    const shas = await Promise.all(
      ['main', 'main~1'].map(async (rev) =>
        (await git(suite, ['rev-parse', rev], { cwd: repo })).stdout.toString(),
      ),
    );
    await writeFile(ref, shas[0] ?? '');
    for (let i = 0; i < 4; i++) {
      await sleep(SETTLE_MS); // old enough to be kept: the first request fills the cache
      await body(nginx.url(0, path), undefined);
      // Same inode, same size: only the times tell.
      await writeFile(ref, shas[(i + 1) % 2] ?? '', { flag: 'r+' });
      const answer = await body(nginx.url(0, path), undefined);
      const reference = await body(nginx.url(1, path), undefined);
      assert.ok(answer.body.equals(reference.body), `round ${i}`);
    }
  });

  test('a reload (SIGHUP) empties the cache', async () => {
    const path = '/r.git/info/refs?service=git-upload-pack';
    await sleep(SETTLE_MS);
    await body(nginx.url(0, path), undefined);
    const warm = await hits();
    await body(nginx.url(0, path), undefined);
    assert.equal(await hits(), warm + 1, 'cached before the reload');
    const reloads = (cached.logs().match(/configuration reloaded/g) ?? []).length;
    process.kill(cached.pid, 'SIGHUP');
    await waitFor(() => (cached.logs().match(/configuration reloaded/g) ?? []).length > reloads, {
      timeoutMs: 5000,
      what: 'the reload',
    });
    await body(nginx.url(0, path), undefined);
    assert.equal(await hits(), warm + 1, 'the first request after the reload ran git');
    await body(nginx.url(0, path), undefined);
    assert.equal(await hits(), warm + 2, 'and the next one was a hit again');
  });

  test('clones and fetches go through cached advertisements with both protocols', async () => {
    const dir = await tmpDir(suite, 'refcache-clone-');
    for (const version of ['0', '2']) {
      const dest = join(dir, `v${version}`);
      await sleep(SETTLE_MS);
      const before = await hits();
      await git(suite, ['-c', `protocol.version=${version}`, 'clone', '-q', nginx.url(0, '/r.git'), dest]);
      await git(suite, ['-c', `protocol.version=${version}`, 'fetch', '-q'], { cwd: dest });
      assert.ok((await hits()) > before, `protocol v${version}: the fetch used the cache`);
      const theirs = (await git(suite, ['rev-parse', 'HEAD'], { cwd: repo })).stdout.toString();
      assert.equal((await git(suite, ['rev-parse', 'HEAD'], { cwd: dest })).stdout.toString(), theirs);
    }
    // A hit says so in its access line, with no exit code (no backend ran).
    assert.match(cached.logs(), /service=git-upload-pack status=200\b.* cache=hit/);
  });
});
