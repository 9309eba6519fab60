import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { RefAdvertisementCache, refCacheKey } from '../../../src/advertisement/cache.js';
import { MAX_WATCHED_PATHS, takeSnapshot, type Dependencies } from '../../../src/advertisement/depends-on.js';

/** What the cache watches of a plain repository (depends-on.ts), plus `extra` files. */
function depsOf(repo: string, extra: readonly string[] = []): Dependencies {
  const files = ['', 'HEAD', 'packed-refs', 'config', 'objects/pack'].map((f) => join(repo, f));
  return { links: [], files: [...files, ...extra], trees: [join(repo, 'refs')] };
}

const SHA_A = `${'a'.repeat(40)}\n`;
const SHA_B = `${'b'.repeat(40)}\n`;

describe('advertisement cache: keys', () => {
  const env = {
    PATH: '/usr/bin',
    GIT_PROTOCOL: 'version=2',
    REMOTE_ADDR: '10.0.0.1',
    REMOTE_PORT: '5000',
    GIT_FCGI_REQUEST_ID: 'abc',
    HTTP_USER_AGENT: 'git/2.39',
    GIT_COMMITTER_EMAIL: 'anonymous@http.10.0.0.1',
  };

  test('what differs per request is not part of the key', () => {
    const other = {
      ...env,
      REMOTE_ADDR: '10.0.0.2',
      REMOTE_PORT: '6000',
      GIT_FCGI_REQUEST_ID: 'def',
      HTTP_USER_AGENT: 'git/2.45',
      GIT_COMMITTER_EMAIL: 'anonymous@http.10.0.0.2',
    };
    assert.equal(refCacheKey('/srv/git/r.git', other), refCacheKey('/srv/git/r.git', env));
  });

  test('the repository, the protocol, the user and git config from the environment are', () => {
    const key = refCacheKey('/srv/git/r.git', env);
    assert.notEqual(refCacheKey('/srv/git/s.git', env), key);
    assert.notEqual(refCacheKey('/srv/git/r.git', { ...env, GIT_PROTOCOL: 'version=1' }), key);
    assert.notEqual(refCacheKey('/srv/git/r.git', { ...env, REMOTE_USER: 'alice' }), key);
    const hidden = {
      ...env,
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'uploadpack.hideRefs',
      GIT_CONFIG_VALUE_0: 'refs/x',
    };
    assert.notEqual(refCacheKey('/srv/git/r.git', hidden), key);
    assert.notEqual(refCacheKey('/srv/git/r.git', { ...hidden, GIT_CONFIG_VALUE_0: 'refs/y' }), key);
  });

  test('the order variables come in does not matter', () => {
    assert.equal(refCacheKey('/r', { A: '1', B: '2' }), refCacheKey('/r', { B: '2', A: '1' }));
  });
});

describe('advertisement cache: snapshots', () => {
  let dir: string;
  let repo: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'git-fcgi-refcache-'));
    repo = join(dir, 'r.git');
    await mkdir(join(repo, 'refs', 'heads'), { recursive: true });
    await mkdir(join(repo, 'refs', 'tags'), { recursive: true });
    await mkdir(join(repo, 'objects', 'pack'), { recursive: true });
    await writeFile(join(repo, 'HEAD'), 'ref: refs/heads/main\n');
    await writeFile(join(repo, 'refs', 'heads', 'main'), SHA_A);
    await sleep(150);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('a snapshot covers the repository files, every directory and ref under refs/, and the extra files', () => {
    const extra = join(dir, 'gitconfig-missing');
    const snapshot = takeSnapshot(depsOf(repo, [extra]), repo);
    assert.ok(snapshot !== null);
    for (const path of [
      'HEAD',
      'packed-refs',
      'config',
      'objects/pack',
      'refs',
      'refs/heads',
      'refs/heads/main',
      'refs/tags',
    ]) {
      assert.ok(snapshot.paths.includes(join(repo, path)), path);
    }
    assert.ok(snapshot.paths.includes(extra));
    assert.equal(snapshot.stats.length, snapshot.paths.length * 4);
  });

  test('a change within the racy window is not kept; the same files a moment later are', async () => {
    await writeFile(join(repo, 'refs', 'heads', 'main'), SHA_B, { flag: 'r+' });
    const changedAt = Date.now();
    assert.equal(takeSnapshot(depsOf(repo, []), repo, changedAt), null);
    assert.equal(takeSnapshot(depsOf(repo, []), repo, changedAt + 90), null);
    assert.ok(takeSnapshot(depsOf(repo, []), repo, changedAt + 1000) !== null);
  });

  test('too many loose refs: not kept', async () => {
    const many = join(dir, 'many.git');
    await mkdir(join(many, 'refs', 'tags'), { recursive: true });
    for (let i = 0; i < MAX_WATCHED_PATHS; i++) await writeFile(join(many, 'refs', 'tags', `t${i}`), SHA_A);
    assert.equal(takeSnapshot(depsOf(many, []), many, Date.now() + 60_000), null);
  });

  test('a filesystem that is not known to be local (here /proc): not kept', () => {
    assert.equal(takeSnapshot(depsOf('/proc/self', []), '/proc/self', Date.now() + 60_000), null);
  });

  test('a lookup sees a ref rewritten in place, a new ref, a removed file, a new file', async () => {
    const cache = new RefAdvertisementCache(1 << 20);
    const body = Buffer.from('advertisement');
    const changes: Array<[string, () => Promise<unknown>]> = [
      ['in place', () => writeFile(join(repo, 'refs', 'heads', 'main'), SHA_A, { flag: 'r+' })],
      ['new ref', () => writeFile(join(repo, 'refs', 'tags', 'v1'), SHA_A)],
      ['packed-refs appears', () => writeFile(join(repo, 'packed-refs'), `${SHA_A.trim()} refs/tags/v0\n`)],
      ['packed-refs removed', () => rm(join(repo, 'packed-refs'))],
      ['a pack', () => writeFile(join(repo, 'objects', 'pack', 'pack-1.idx'), '')],
      ['extra file', () => writeFile(join(dir, 'gitconfig'), '[x]\n')],
    ];
    for (const [what, change] of changes) {
      await sleep(150);
      const snapshot = takeSnapshot(depsOf(repo, [join(dir, 'gitconfig')]), repo);
      assert.ok(snapshot !== null, what);
      cache.store('k', snapshot, body);
      assert.equal(cache.lookup('k'), body, `${what}: unchanged, a hit`);
      await change();
      assert.equal(cache.lookup('k'), null, `${what}: a miss`);
      assert.equal(cache.lookup('k'), null, `${what}: and gone`);
    }
    assert.equal(cache.hits, changes.length);
  });
});

describe('advertisement cache: memory', () => {
  const snapshot = { paths: [], lstat: [], stats: new Float64Array(0) };
  /** What an entry with a one-letter key and an empty snapshot counts: body, key, overhead. */
  const cost = (bodyBytes: number): number => bodyBytes + 2 + 256;

  test('least recently used entries leave first, within the byte budget', () => {
    const cache = new RefAdvertisementCache(4 * cost(250));
    for (const key of ['a', 'b', 'c', 'd']) cache.store(key, snapshot, Buffer.alloc(250));
    assert.equal(cache.storedBytes, 4 * cost(250));
    assert.ok(cache.lookup('a') !== null); // a is now the most recent
    cache.store('e', snapshot, Buffer.alloc(250));
    assert.equal(cache.lookup('b'), null);
    for (const key of ['a', 'c', 'd', 'e']) assert.ok(cache.lookup(key) !== null, key);
    assert.equal(cache.storedBytes, 4 * cost(250));
  });

  test('an entry over a quarter of the budget is not kept; replacing an entry frees the old one', () => {
    const cache = new RefAdvertisementCache(4 * cost(250));
    cache.store('b', snapshot, Buffer.alloc(251));
    assert.equal(cache.size, 0);
    cache.store('k', snapshot, Buffer.alloc(200));
    cache.store('k', snapshot, Buffer.alloc(100));
    assert.equal(cache.storedBytes, cost(100));
    cache.clear();
    assert.equal(cache.storedBytes, 0);
    assert.equal(cache.lookup('k'), null);
  });

  test('small advertisements with large snapshots are counted whole: the budget holds', () => {
    const budget = 1 << 20;
    const cache = new RefAdvertisementCache(budget);
    const paths = Array.from(
      { length: 40 },
      (_, i) => `/srv/git/some/deep/path/repository-${i}.git/refs/heads/x`,
    );
    const big = { paths, lstat: paths.map(() => false), stats: new Float64Array(paths.length * 4) };
    for (let i = 0; i < 10_000; i++) cache.store(`/srv/git/r${i}.git`, big, Buffer.alloc(10));
    assert.ok(cache.storedBytes <= budget, `${cache.storedBytes} bytes counted`);
    assert.ok(cache.size < 10_000 && cache.size > 100, `${cache.size} entries kept`);
  });
});
