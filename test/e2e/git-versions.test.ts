import assert from 'node:assert/strict';
import { cp, readFile, readlink, realpath, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { answeredBy, requestsInLog, type AnsweredBy, type LoggedRequest } from '../helpers/daemon-log.js';
import { waitFor } from '../helpers/deadline.js';
import {
  findGitsUnderTest,
  refFormatOption,
  type GitUnderTest,
  type RefFormat,
} from '../helpers/git-versions.js';
import { assertSameAnswer, postUploadPack, v0Fetch, v2Fetch } from '../helpers/git-wire.js';
import { capture, firstDifference, type Captured } from '../helpers/http-capture.js';
import { gitLocation, htpasswd, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git, type GitOptions } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

/**
 * git-fcgi against every git an admin may run (the system git and the builds of
 * scripts/build-git.sh, each as if installed), with each ref storage that git has, through
 * real nginx, with the system git as the client. git http-backend's own answer is the
 * reference throughout: where git-fcgi answers instead of it (the direct ref advertisement,
 * the ref cache), the bytes must be the same.
 */

const selection = findGitsUnderTest();

/** Longer than the ref cache's racy window on a filesystem with sub-second timestamps (100 ms). */
const SETTLE_MS = 250;
const PROTOCOLS = [undefined, 'version=1', 'version=2'] as const;
const SERVICES = ['git-upload-pack', 'git-receive-pack'] as const;
type Service = (typeof SERVICES)[number];
/** nginx servers 0-2 reach the daemon under test, 3-5 the reference one, in this order. */
const SERVERS = ['anonymous', 'authenticated', 'export-all'] as const;
const AUTH = { Authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` };
const IDENTITY = ['-c', 'user.name=Pusher', '-c', 'user.email=pusher@git-fcgi.invalid'];

interface AdvertisedRepo {
  /** Has git-daemon-export-ok. */
  readonly exported: boolean;
  readonly config?: readonly [string, string];
  readonly kind?: 'empty' | 'include' | 'broken';
}

/** The repositories of the differential, one set per ref storage. */
const ADVERTISED: Readonly<Record<string, AdvertisedRepo>> = {
  'plain.git': { exported: true },
  'hidden.git': { exported: false },
  'empty.git': { exported: true, kind: 'empty' },
  'upload-off.git': { exported: true, config: ['http.uploadpack', 'false'] },
  'receive-on.git': { exported: true, config: ['http.receivepack', 'true'] },
  'receive-off.git': { exported: true, config: ['http.receivepack', 'false'] },
  'filter.git': { exported: true, config: ['uploadpack.allowFilter', 'true'] },
  'include.git': { exported: true, kind: 'include' },
  // Passes git-fcgi's checks but not git's: the direct run fails and git http-backend answers.
  'broken.git': { exported: true, kind: 'broken' },
};

/**
 * Where the README says git-fcgi certainly runs git directly for a ref advertisement: when git
 * http-backend would certainly answer 200 (exported, the service on, no config mentioning the
 * service's switch or an include). It may take the direct path in more cases as it learns to
 * read more; the differential guards the bytes wherever it does.
 */
function certainlyDirect(repo: AdvertisedRepo, service: Service, server: number): boolean {
  const exported = repo.exported || SERVERS[server] === 'export-all';
  const serviceSwitch = service === 'git-upload-pack' ? 'http.uploadpack' : 'http.receivepack';
  const uncertain = repo.kind === 'include' || repo.kind === 'broken' || repo.config?.[0] === serviceSwitch;
  const enabled = service === 'git-upload-pack' || SERVERS[server] === 'authenticated';
  return exported && enabled && !uncertain;
}

interface Compared {
  readonly what: string;
  readonly id: string;
  /** The README says git-fcgi runs git directly for this one. */
  readonly certain: boolean;
  readonly direct: Captured;
  readonly reference: Captured;
}

describe('the gits under test', () => {
  test('every vendored git has a complete build (a failure in CI, a note elsewhere)', (t) => {
    assert.deepEqual(selection.unknown, [], `GIT_FCGI_TEST_GITS names gits that are not here`);
    t.diagnostic(`gits under test: ${selection.gits.map((g) => g.version).join(', ')}`);
    if (selection.unbuilt.length === 0) return;
    const message =
      `no complete build in ${selection.cacheDir} of git ${selection.unbuilt.join(', ')} ` +
      `(vendored in ${selection.vendorDir}): run scripts/build-git.sh`;
    if (process.env.CI === 'true') assert.fail(message);
    t.skip(message);
  });
});

for (const gitUnderTest of selection.gits) {
  describe(`git ${gitUnderTest.version}`, () => defineSuite(gitUnderTest));
}

function defineSuite(under: GitUnderTest): void {
  const suite = suiteCleanup(after);
  let root: string;
  let work: string;
  let fastLog: string;
  /** What git-fcgi runs for a direct ref advertisement: `git` in the exec-path (/usr/lib/git-core on Debian). */
  let directProgram: string;
  let daemon: GitFcgi;
  let nginx: Nginx;
  const heads = new Map<RefFormat, string>();
  let requestSeq = 0;

  /** A server-side git command (making repositories, config, rev-parse) with the git under test. */
  const serverGit = (args: readonly string[], opts: GitOptions = {}) =>
    git(suite, args, { ...opts, git: under });
  const client = (args: readonly string[], opts: GitOptions = {}) => git(suite, args, opts);
  const repoUrl = (format: RefFormat, server = 0): string => nginx.url(server, `/${format}/demo.git`);
  const pushUrl = (format: RefFormat): string =>
    repoUrl(format, SERVERS.indexOf('authenticated')).replace('http://', 'http://alice:secret@');
  const advertisement = (format: RefFormat, server: number, protocol: string | undefined) =>
    capture(
      nginx.url(server, `/${format}/demo.git/info/refs?service=git-upload-pack`),
      protocol === undefined ? {} : { 'Git-Protocol': protocol },
    );
  const hits = async (): Promise<number> => {
    const res = await fetch(nginx.url(0, '/git-fcgi-status?json'));
    return ((await res.json()) as { ref_cache_hits: number }).ref_cache_hits;
  };
  const packFigures = async (): Promise<{ hits: number; misses: number; bypassed: number }> => {
    const res = await fetch(nginx.url(0, '/git-fcgi-status?json'));
    const figures = ((await res.json()) as { pack_cache?: Record<string, number> }).pack_cache;
    assert.ok(figures, 'the pack cache is on by default');
    return { hits: figures.hits ?? 0, misses: figures.misses ?? 0, bypassed: figures.bypassed ?? 0 };
  };
  const fetchHits = async (): Promise<number> => {
    const res = await fetch(nginx.url(0, '/git-fcgi-status?json'));
    return ((await res.json()) as { fetch_cache_hits: number }).fetch_cache_hits;
  };
  const remoteMain = async (format: RefFormat): Promise<string> =>
    (await serverGit(['rev-parse', 'refs/heads/main'], { cwd: join(root, format, 'demo.git') })).stdout
      .toString()
      .trim();

  before(async () => {
    root = await tmpDir(suite, `gv-${under.version}-repos-`);
    work = await tmpDir(suite, `gv-${under.version}-work-`);
    for (const format of under.refFormats) await makeRepos(format);
    const execPath = (await serverGit(['--exec-path'])).stdout.toString().trim();
    directProgram = join(execPath, 'git');
    const bin = await tmpDir(suite, 'gv-bin-');
    // The same git http-backend (resolved in the daemon's mount namespace), under a name that
    // keeps git-fcgi from taking the direct path: the reference.
    const renamed = join(bin, 'http-backend-by-another-name');
    await symlink(join(execPath, 'git-http-backend'), renamed);
    const sockets = await tmpDir(suite, 'gv-sock-');
    fastLog = join(work, 'git-fcgi.log');
    const ini = join(work, 'git-fcgi.ini');
    await writeFile(
      ini,
      `[server]\nstatus_path = /git-fcgi-status\n[log]\nlevel = debug\nformat = json\nfile = ${fastLog}\n`,
    );
    const fast = ['-c', ini, '--listen', `unix:${join(sockets, 'fast.sock')}`, '--project-root', root];
    daemon = await startGitFcgi(suite, fast, { git: under });
    const reference = ['--listen', `unix:${join(sockets, 'ref.sock')}`, '--project-root', root];
    await startGitFcgi(suite, [...reference, '--backend', renamed, '--ref-cache', '0'], { git: under });
    const users = await htpasswd(suite, work, { alice: 'secret' });
    // The differential tags its requests so that the log tells which program answered each.
    const tagged = 'fastcgi_param REQUEST_ID $http_x_test_request_id;';
    nginx = await startNginx(suite, {
      servers: ['fast', 'ref'].flatMap((which) => {
        const socket = join(sockets, `${which}.sock`);
        const extra = which === 'fast' ? { extra: tagged } : {};
        return [
          { locations: gitLocation({ socket, ...extra }) },
          { locations: gitLocation({ socket, auth: { htpasswdFile: users }, ...extra }) },
          { locations: gitLocation({ socket, exportAll: true, ...extra }) },
        ];
      }),
    });
  });

  async function makeRepos(format: RefFormat): Promise<void> {
    const dir = join(root, format);
    const made = { git: under, refFormat: format };
    const demo = await createBareRepo(suite, dir, 'demo.git', {
      commits: 3,
      files: { 'a.txt': 'hello\n', 'dir/b.txt': 'world\n' },
      ...made,
    });
    heads.set(format, demo.head);
    await serverGit(['config', 'uploadpack.allowFilter', 'true'], { cwd: demo.path });
    await writeFile(join(demo.path, 'git-daemon-export-ok'), '');
    // One seeded repository, copied: far fewer git runs than seeding each.
    const seed = await createBareRepo(suite, dir, 'seed.git', { commits: 2, ...made });
    for (const [name, setup] of Object.entries(ADVERTISED)) {
      const path = join(dir, name);
      if (setup.kind === 'empty')
        await serverGit(['init', '-q', '--bare', ...refFormatOption(under, format), path]);
      else await cp(seed.path, path, { recursive: true });
      if (setup.exported) await writeFile(join(path, 'git-daemon-export-ok'), '');
      if (setup.config !== undefined) await serverGit(['config', ...setup.config], { cwd: path });
      if (setup.kind === 'broken') await writeFile(join(path, 'HEAD'), 'not a ref\n');
      if (setup.kind === 'include') {
        const extra = join(work, `${format}-extra.config`);
        await writeFile(extra, '[http]\n\tuploadpack = false\n');
        await serverGit(['config', 'include.path', extra], { cwd: path });
      }
    }
    await serverGit(['tag', 'v1', 'main'], { cwd: join(dir, 'plain.git') });
  }

  test('the daemons run this git, and their pid is the daemon', async () => {
    const version = await serverGit(['--version']);
    assert.equal(version.stdout.toString().trim(), `git version ${under.version}`);
    assert.equal(await readlink(`/proc/${daemon.pid}/exe`), await realpath(process.execPath));
    const theirs = await readlink(`/proc/${daemon.pid}/ns/mnt`);
    const ours = await readlink('/proc/self/ns/mnt');
    if (under.system) assert.equal(theirs, ours, 'the system git runs without a mount namespace');
    else assert.notEqual(theirs, ours, 'a build runs in its own mount namespace');
    // What upload-pack says of itself is what git http-backend runs.
    const [format = 'files'] = under.refFormats;
    const { body } = await advertisement(format, 3, 'version=2');
    assert.match(body.toString('latin1'), new RegExp(`agent=git/${under.version.replaceAll('.', '\\.')}\\b`));
  });

  for (const format of under.refFormats) defineFormat(format);

  test('no git process outlives its request', async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  function defineFormat(format: RefFormat): void {
    const dir = (name: string): string => join(work, `${format}-${name}`);
    const fetchers = new Map<string, string>();
    let pusher: string;
    let pushed: string;

    test(`${format}: clone over protocol v0 (packet trace)`, async () => {
      const trace = dir('trace-v0');
      await client(['-c', 'protocol.version=0', 'clone', '-q', repoUrl(format), dir('v0')], {
        env: { GIT_TRACE_PACKET: trace },
      });
      const traced = await readFile(trace, 'utf8');
      assert.match(traced, /< # service=git-upload-pack/);
      assert.doesNotMatch(traced, /< version 2/);
      assert.equal(
        (await client(['rev-parse', 'HEAD'], { cwd: dir('v0') })).stdout.toString().trim(),
        heads.get(format),
      );
    });

    test(`${format}: clone over protocol v2 (packet trace)`, async () => {
      const trace = dir('trace-v2');
      await client(['-c', 'protocol.version=2', 'clone', '-q', repoUrl(format), dir('v2')], {
        env: { GIT_TRACE_PACKET: trace },
      });
      assert.match(await readFile(trace, 'utf8'), /< version 2/);
      assert.equal(
        (await client(['rev-parse', 'HEAD'], { cwd: dir('v2') })).stdout.toString().trim(),
        heads.get(format),
      );
    });

    test(`${format}: shallow clone (--depth 1)`, async () => {
      await client(['clone', '-q', '--depth', '1', repoUrl(format), dir('shallow')]);
      const count = await client(['rev-list', '--count', 'HEAD'], { cwd: dir('shallow') });
      assert.equal(count.stdout.toString().trim(), '1');
      const shallow = await client(['rev-parse', '--is-shallow-repository'], { cwd: dir('shallow') });
      assert.equal(shallow.stdout.toString().trim(), 'true');
    });

    test(`${format}: the pack cache: a repeated shallow clone gets the kept pack, and both pass fsck`, async () => {
      // git-fcgi-pack-hook runs under this git's upload-pack (uploadpack.packObjectsHook from
      // GIT_CONFIG_COUNT), and the pack it serves is this git's pack-objects output. Each
      // clone names itself differently (agent=): the fetch cache, keyed by the request body,
      // does not answer them, while pack-objects gets the same input.
      const before = await packFigures();
      for (const name of ['pack-1', 'pack-2']) {
        await client(['clone', '-q', '--depth', '1', repoUrl(format), dir(name)], {
          env: { GIT_USER_AGENT: `git/git-fcgi-test-${name}` },
        });
        await client(['fsck', '--strict'], { cwd: dir(name) });
      }
      const now = await packFigures();
      // The shallow clone test before this one asked for the same pack: both may be hits.
      assert.ok(now.misses - before.misses <= 1, 'at most one pack-objects for the two clones');
      assert.equal(now.misses + now.hits - before.misses - before.hits, 2, 'both asked the cache');
      assert.ok(now.hits - before.hits >= 1, 'the second clone was served the kept pack');
      assert.equal(now.bypassed, before.bypassed, 'the hook never fell back to git');
    });

    test(`${format}: the fetch cache: a repeated fetch (v0, v2) is what this git answered, and a clone from it is sound`, async () => {
      // A copy of demo.git whose packs this git makes with one thread: deterministic, so that
      // the reference server's run of git and the cached answer can be compared pack for pack.
      const name = 'fetch-cache.git';
      const path = join(root, format, name);
      await cp(join(root, format, 'demo.git'), path, { recursive: true });
      await serverGit(['config', 'pack.threads', '1'], { cwd: path });
      const want = (await serverGit(['rev-parse', 'main'], { cwd: path })).stdout.toString().trim();
      const have = (await serverGit(['rev-parse', 'main~2'], { cwd: path })).stdout.toString().trim();
      await sleep(SETTLE_MS);
      const url = (server: number): string => nginx.url(server, `/${format}/${name}/git-upload-pack`);
      for (const [protocol, body] of [
        ['version=2', v2Fetch(want, [have])],
        [undefined, v0Fetch(want, [have])],
      ] as const) {
        const label = protocol ?? 'v0';
        const reference = await postUploadPack(url(3), body, protocol);
        const before = await fetchHits();
        const first = await postUploadPack(url(0), body, protocol);
        const second = await postUploadPack(url(0), body, protocol);
        assertSameAnswer(first, reference, label);
        assert.ok(second.body.equals(first.body), `${label}: the repeat is byte for byte git's first answer`);
        assert.equal((await fetchHits()) - before, 1, `${label}: the repeat came from the cache`);
      }
      for (const clone of ['fetch-1', 'fetch-2']) {
        await client(['clone', '-q', repoUrl(format).replace('/demo.git', `/${name}`), dir(clone)]);
        await client(['fsck', '--strict'], { cwd: dir(clone) });
      }
    });

    test(`${format}: partial clone (--filter=blob:none)`, async () => {
      const dest = dir('partial');
      await client(['clone', '-q', '--no-checkout', '--filter=blob:none', repoUrl(format), dest]);
      const filter = await client(['config', 'remote.origin.partialclonefilter'], { cwd: dest });
      assert.equal(filter.stdout.toString().trim(), 'blob:none');
      const objects = await client(['rev-list', '--objects', '--missing=print', 'HEAD'], { cwd: dest });
      const missing = objects.stdout
        .toString()
        .split('\n')
        .filter((line) => line.startsWith('?'));
      assert.ok(missing.length >= 2, 'the server left the blobs out');
      await client(['reset', '-q', '--hard', 'HEAD'], { cwd: dest }); // fetches them now
      assert.equal(await readFile(join(dest, 'a.txt'), 'utf8'), 'hello\n');
      assert.equal(await readFile(join(dest, 'dir', 'b.txt'), 'utf8'), 'world\n');
    });

    test(`${format}: the ref cache answers repeated advertisements (v0, v2) with git's bytes`, async () => {
      await sleep(SETTLE_MS);
      const before = await hits();
      for (const protocol of [undefined, 'version=2']) {
        const reference = await advertisement(format, 3, protocol);
        assert.equal(reference.status, 200);
        for (let i = 0; i < 2; i++) {
          const answer = await advertisement(format, 0, protocol);
          assert.equal(
            firstDifference(answer.body, reference.body),
            null,
            `${protocol ?? 'v0'}, request ${i + 1}`,
          );
        }
      }
      assert.ok((await hits()) - before >= 2, 'the repeated requests were answered from the cache');
    });

    test(`${format}: push by a user nginx authenticated`, async () => {
      // Fetchers cloned before the push, so that their fetches after it must see the new commit.
      for (const version of ['0', '2']) {
        const fetcher = dir(`fetcher-v${version}`);
        await client(['-c', `protocol.version=${version}`, 'clone', '-q', repoUrl(format), fetcher]);
        fetchers.set(version, fetcher);
      }
      pusher = dir('pusher');
      await client(['clone', '-q', repoUrl(format), pusher]);
      pushed = await commitAndPush(pusher, 'first push');
      assert.equal(await remoteMain(format), pushed);
    });

    test(`${format}: after the push, the advertisement is the new one, not the one cached before (v0, v2)`, async () => {
      await sleep(SETTLE_MS);
      assert.ok(pushed, 'pushed');
      assert.deepEqual(await staleAdvertisements(pushed), []);
    });

    for (const version of ['0', '2']) {
      test(`${format}: after the push, a protocol v${version} fetch sees it, through the ref cache`, async () => {
        assert.ok(pushed, 'pushed');
        const fetcher = fetchers.get(version);
        assert.ok(fetcher, 'the fetcher was cloned before the push');
        const before = await hits();
        await fetchAndCheck(fetcher, version, pushed);
        assert.ok((await hits()) > before, 'the fetch got its ref advertisement from the cache');
      });
    }

    test(`${format}: a second push, then v0 and v2 fetches see it, through the ref cache`, async () => {
      assert.ok(pusher, 'the first push was made');
      const second = await commitAndPush(pusher, 'second push');
      assert.equal(await remoteMain(format), second);
      await sleep(SETTLE_MS);
      for (const version of ['0', '2']) {
        const fetcher = fetchers.get(version);
        assert.ok(fetcher, 'the fetcher was cloned before the push');
        const before = await hits();
        // The first after the push must run git, the second may come from the cache: both see it.
        await fetchAndCheck(fetcher, version, second);
        await fetchAndCheck(fetcher, version, second);
        assert.ok((await hits()) > before, `protocol v${version}: a fetch was answered from the cache`);
      }
      assert.deepEqual(await staleAdvertisements(second), []);
    });

    test(`${format}: ref advertisements: the direct run matches git http-backend byte for byte`, async (t) => {
      const rows = await differential();
      const mismatches = { status: [] as string[], headers: [] as string[], body: [] as string[] };
      for (const { what, direct, reference } of rows) {
        if (direct.status !== reference.status)
          mismatches.status.push(
            `${what}: status ${direct.status} where git http-backend says ${reference.status}`,
          );
        if (JSON.stringify(direct.headers) !== JSON.stringify(reference.headers))
          mismatches.headers.push(
            `${what}: headers ${JSON.stringify(direct.headers)} where git http-backend sends ${JSON.stringify(reference.headers)}`,
          );
        const body = firstDifference(direct.body, reference.body);
        if (body !== null) mismatches.body.push(`${what}: ${body}`);
      }
      const statuses = [...new Set(rows.map((row) => row.reference.status))].sort();
      const count = Object.values(mismatches).reduce((n, list) => n + list.length, 0);
      t.diagnostic(`git ${under.version} ${format}: ${rows.length} requests compared, ${count} mismatches`);
      const report = Object.entries(mismatches)
        .filter(([, list]) => list.length > 0)
        .map(([kind, list]) => `${list.length} ${kind} mismatches, the first: ${list[0] ?? ''}`);
      assert.deepEqual(
        report,
        [],
        `git ${under.version} ${format}: the direct run differs from git http-backend`,
      );
      assert.equal(
        rows.length,
        Object.keys(ADVERTISED).length * SERVICES.length * PROTOCOLS.length * SERVERS.length,
      );
      // Answers and refusals alike.
      assert.deepEqual(statuses, [200, 403, 404]);
    });

    test(`${format}: the direct path is taken wherever git-fcgi says it is, and only where git answers 200`, async (t) => {
      const rows = await differential();
      const logged = await waitForAccessLines(rows.map((row) => row.id));
      const tally = new Map<AnsweredBy, number>();
      const wrong: string[] = [];
      for (const row of rows) {
        const request = logged.get(row.id);
        const by = request === undefined ? 'nothing' : answeredBy(request, directProgram);
        tally.set(by, (tally.get(by) ?? 0) + 1);
        const direct = by === 'direct' || by === 'cache';
        if (row.certain && !direct) wrong.push(`${row.what}: answered by ${by}, not by git run directly`);
        if (direct && row.reference.status !== 200)
          wrong.push(`${row.what}: answered directly where git http-backend says ${row.reference.status}`);
      }
      const certain = rows.filter((row) => row.certain).length;
      const counts = [...tally].map(([by, n]) => `${by} ${n}`).join(', ');
      t.diagnostic(
        `git ${under.version} ${format}: ${rows.length} requests, ${certain} certain to be direct; answered by: ${counts}`,
      );
      assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} requests took the wrong path`);
      assert.ok(certain > 0);
    });

    let compared: Promise<Compared[]> | undefined;
    /** The same requests to the daemon under test and to the reference, once per format. */
    function differential(): Promise<Compared[]> {
      compared ??= (async () => {
        const rows: Compared[] = [];
        for (const [name, repo] of Object.entries(ADVERTISED)) {
          for (const service of SERVICES) {
            for (const protocol of PROTOCOLS) {
              for (const [server, who] of SERVERS.entries()) {
                const id = `gv-${format}-${++requestSeq}`;
                const headers = {
                  ...(who === 'authenticated' ? AUTH : {}),
                  ...(protocol === undefined ? {} : { 'Git-Protocol': protocol }),
                  'X-Test-Request-Id': id,
                };
                const path = `/${format}/${name}/info/refs?service=${service}`;
                const [direct, reference] = await Promise.all([
                  capture(nginx.url(server, path), headers),
                  capture(nginx.url(server + SERVERS.length, path), headers),
                ]);
                const what = `${path} ${who} protocol ${protocol ?? '-'}`;
                rows.push({ what, id, certain: certainlyDirect(repo, service, server), direct, reference });
              }
            }
          }
        }
        return rows;
      })();
      return compared;
    }

    async function commitAndPush(clone: string, message: string): Promise<string> {
      await writeFile(join(clone, 'pushed.txt'), `${message}\n`, { flag: 'a' });
      await client(['add', 'pushed.txt'], { cwd: clone });
      await client([...IDENTITY, 'commit', '-q', '-m', message], { cwd: clone });
      await client(['push', '-q', pushUrl(format), 'HEAD:refs/heads/main'], { cwd: clone });
      return (await client(['rev-parse', 'HEAD'], { cwd: clone })).stdout.toString().trim();
    }

    async function fetchAndCheck(fetcher: string, version: string, expected: string): Promise<void> {
      await client(['-c', `protocol.version=${version}`, 'fetch', '-q', 'origin'], { cwd: fetcher });
      const fetched = (await client(['rev-parse', 'origin/main'], { cwd: fetcher })).stdout.toString().trim();
      assert.equal(fetched, expected, `a protocol v${version} fetch sees the pushed commit`);
    }

    /** Advertisements from the daemon under test (cached or not) that are not what git says now. */
    async function staleAdvertisements(head: string): Promise<string[]> {
      const stale: string[] = [];
      for (const protocol of [undefined, 'version=2']) {
        const before = await hits();
        const answer = await advertisement(format, 0, protocol);
        const fromCache = (await hits()) > before;
        const reference = await advertisement(format, 3, protocol);
        if (protocol === undefined)
          assert.ok(reference.body.includes(head), 'git advertises the pushed commit');
        const difference = firstDifference(answer.body, reference.body);
        if (difference !== null)
          stale.push(`${protocol ?? 'v0'} (${fromCache ? 'from the cache' : 'from git'}): ${difference}`);
      }
      return stale;
    }
  }

  async function waitForAccessLines(ids: readonly string[]): Promise<Map<string, LoggedRequest>> {
    let logged = requestsInLog('');
    await waitFor(
      async () => {
        logged = requestsInLog(await readFile(fastLog, 'utf8').catch(() => ''));
        return ids.every((id) => logged.get(id)?.access !== undefined);
      },
      { timeoutMs: 10_000, what: 'the access lines of the differential' },
    );
    return logged;
  }
}
