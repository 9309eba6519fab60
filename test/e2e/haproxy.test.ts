import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import {
  SHIPPED_HAPROXY_CFG,
  assertNoHaproxyProcesses,
  haproxyJail,
  haproxySocketOwnerArgs,
  sha512Crypt,
  shippedHaproxySections,
  startHaproxy,
  type Haproxy,
  type ShippedHaproxyOptions,
} from '../helpers/haproxy.js';
import { htpasswd } from '../helpers/nginx.js';
import { assertNoGitProcesses, gitProcessesUnder, run, startProcess } from '../helpers/proc.js';
import { createBareRepo, git, GIT_HTTP_BACKEND, randomBlobRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { skipWithout } from '../helpers/tools.js';

const identity = ['-c', 'user.name=a', '-c', 'user.email=a@a'];
const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Access rules both variants run with: secret.git only for alice, everything else read by all. */
const RULES = `[repo:secret.git]\nread = alice\nwrite = alice\n\n[repo:**]\nread = anonymous\nwrite = *\n`;

/**
 * Real git clients through HAProxy 2.6 started from etc/haproxy/git-fcgi.cfg (below Debian's own
 * global and defaults sections, chrooted and running as haproxy as Debian runs it), to git
 * http-backend via git-fcgi. Variant 1: HAProxy checks logins and git-fcgi trusts its REMOTE_USER
 * (mode = nginx); variant 2: git-fcgi checks them ([auth] mode = htpasswd).
 */
const SUITE = 'git over HAProxy fcgi-app and git-fcgi, from the shipped config';
describe(SUITE, { skip: skipWithout('haproxy') }, () => {
  const suite = suiteCleanup(after);
  let shipped: string;
  let root: string;
  let work: string;
  let demoHead: string;
  let secretHead: string;
  let cutHead: string;
  /** Variant 1: HAProxy checks logins. */
  let daemon1: GitFcgi;
  let haproxy1: Haproxy;
  /** Variant 2: git-fcgi checks logins. */
  let haproxy2: Haproxy;
  const started: Haproxy[] = [];

  /** git-fcgi with `ini` (plus `more` args) on a jail's socket, and HAProxy in front of it. */
  async function stack(
    t: Cleanup,
    ini: string,
    options: Omit<ShippedHaproxyOptions, 'docroot'>,
    more: readonly string[] = [],
  ): Promise<{ daemon: GitFcgi; haproxy: Haproxy }> {
    const jail = await haproxyJail(t);
    const daemon = await startGitFcgi(t, [
      '-c',
      ini,
      '--listen',
      `unix:${jail.socket}`,
      ...haproxySocketOwnerArgs(),
      ...more,
    ]);
    const sections = shippedHaproxySections(shipped, { ...options, docroot: root });
    const haproxy = await startHaproxy(t, { sections, jail });
    started.push(haproxy);
    return { daemon, haproxy };
  }

  async function ini(name: string, text: string): Promise<string> {
    const file = join(work, name);
    await writeFile(file, `[git]\nproject_root = ${root}\nexport_all = true\n\n${text}`);
    return file;
  }

  before(async () => {
    shipped = await readFile(SHIPPED_HAPROXY_CFG, 'utf8');
    root = await tmpDir(suite, 'haproxy-repos-');
    work = await tmpDir(suite, 'haproxy-work-');
    const demo = await createBareRepo(suite, root, 'demo.git', { commits: 5, files: { 'a.txt': 'hello\n' } });
    demoHead = demo.head;
    await git(suite, ['config', 'core.logAllRefUpdates', 'true'], { cwd: demo.path });
    secretHead = (await createBareRepo(suite, root, 'secret.git', { commits: 2 })).head;
    await createBareRepo(suite, root, 'big.git', { commits: 1 });
    const cut = await randomBlobRepo(suite, root, 'cut.git', { bytes: 24 * 1024 * 1024 });
    cutHead = cut.head;
    await git(suite, ['repack', '-adq'], { cwd: cut.path });

    const alice = await sha512Crypt('secret');
    ({ daemon: daemon1, haproxy: haproxy1 } = await stack(suite, await ini('variant1.ini', RULES), {
      variant: 1,
      users: { alice },
    }));
    const users = await htpasswd(suite, work, { alice: 'secret' });
    // The forged-login test fails dozens of logins from 127.0.0.1: more than the default limit (429).
    const htpasswdMode = `[auth]\nmode = htpasswd\nhtpasswd = ${users}\nmax_failures = 1000\n\n${RULES}`;
    ({ haproxy: haproxy2 } = await stack(suite, await ini('variant2.ini', htpasswdMode), { variant: 2 }));
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped every server by now.
    for (const haproxy of started) await assertNoHaproxyProcesses(haproxy, 5000);
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });

  const url = (haproxy: Haproxy, path: string, login = ''): string =>
    haproxy.url(path).replace('http://', login === '' ? 'http://' : `http://${login}@`);
  const revParse = async (cwd: string, rev: string): Promise<string> =>
    (await git(suite, ['rev-parse', rev], { cwd })).stdout.toString().trim();

  async function cloneWithCommit(name: string): Promise<{ dir: string; commit: string }> {
    const dir = join(work, name);
    await git(suite, ['clone', '-q', url(haproxy1, '/demo.git'), dir]);
    await writeFile(join(dir, `${name}.txt`), `${name}\n`);
    await git(suite, ['add', '-A'], { cwd: dir });
    await git(suite, [...identity, 'commit', '-q', '-m', name], { cwd: dir });
    return { dir, commit: await revParse(dir, 'HEAD') };
  }

  async function status(
    target: string,
    headers: Record<string, string> = {},
    method = 'GET',
  ): Promise<number> {
    const res = await fetch(target, { method, headers });
    await res.arrayBuffer();
    return res.status;
  }

  test('clone over protocol v2 and v0, verified in the packet trace', async () => {
    for (const version of ['2', '0']) {
      const trace = join(work, `trace-v${version}`);
      const dir = join(work, `v${version}`);
      await git(
        suite,
        ['-c', `protocol.version=${version}`, 'clone', '-q', url(haproxy1, '/demo.git'), dir],
        {
          env: { GIT_TRACE_PACKET: trace },
        },
      );
      const packets = await readFile(trace, 'utf8');
      if (version === '2') assert.match(packets, /git< version 2/, 'Git-Protocol reaches git');
      else assert.doesNotMatch(packets, /version 2/);
      assert.equal(await revParse(dir, 'HEAD'), demoHead);
    }
  });

  test('shallow clone (--depth 1)', async () => {
    const dir = join(work, 'shallow');
    await git(suite, ['clone', '-q', '--depth', '1', url(haproxy1, '/demo.git'), dir]);
    const { stdout } = await git(suite, ['rev-list', '--count', 'HEAD'], { cwd: dir });
    assert.equal(stdout.toString().trim(), '1');
  });

  test('ref advertisements come from the ref cache (HAProxy sends CONTENT_LENGTH=0) with git http-backend’s bytes', async () => {
    const target = url(haproxy1, '/demo.git/info/refs?service=git-upload-pack');
    const bodies: Buffer[] = [];
    for (let i = 0; i < 3; i++) bodies.push(Buffer.from(await (await fetch(target)).arrayBuffer()));
    await waitFor(
      () => /repo=demo\.git service=git-upload-pack status=200 .*cache=hit/.test(daemon1.logs()),
      {
        timeoutMs: 5000,
        what: `a cache hit in\n${daemon1.logs()}`,
      },
    );
    // git http-backend itself, run as a CGI with what HAProxy sends.
    const cgi = await run(GIT_HTTP_BACKEND, [], {
      env: {
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        REQUEST_METHOD: 'GET',
        PATH_INFO: '/demo.git/info/refs',
        QUERY_STRING: 'service=git-upload-pack',
        CONTENT_LENGTH: '0',
      },
      timeoutMs: 20_000,
    });
    const expected = cgi.stdout.subarray(cgi.stdout.indexOf('\r\n\r\n') + 4);
    for (const body of bodies) assert.ok(body.equals(expected), 'the same bytes as git http-backend');
  });

  test('push as a user HAProxy authenticated; the reflog names them', async () => {
    const { dir, commit } = await cloneWithCommit('pusher');
    await git(suite, ['push', '-q', url(haproxy1, '/demo.git', 'alice:secret'), 'HEAD:refs/heads/feature'], {
      cwd: dir,
    });
    assert.equal(await revParse(join(root, 'demo.git'), 'refs/heads/feature'), commit);
    const log = (await readFile(join(root, 'demo.git', 'logs', 'refs', 'heads', 'feature'), 'utf8')).trim();
    assert.match(
      log.split('\n').at(-1) ?? '',
      new RegExp(`^0{40} ${commit} alice <alice@http\\.127\\.0\\.0\\.1> \\d+ [+-]\\d{4}\\tpush$`),
    );
    // Anonymous: HAProxy asks for a login, and git without a terminal gives up.
    await assert.rejects(
      git(suite, ['push', '-q', url(haproxy1, '/demo.git'), 'HEAD:refs/heads/anon'], { cwd: dir }),
      /Authentication failed|could not read Username/,
    );
  });

  for (const variant of [1, 2] as const) {
    test(`variant ${variant}: a forged Authorization header never gets a push or a protected read`, async () => {
      const haproxy = variant === 1 ? haproxy1 : haproxy2;
      const forged = [
        basic('alice', 'wrong'),
        basic('mallory', 'x'),
        basic('mallory', ''),
        'Basic !!!not-base64!!!',
        'Bearer token',
      ];
      const targets: Array<[string, string]> = [
        ['GET', '/demo.git/info/refs?service=git-receive-pack'],
        ['POST', '/demo.git/git-receive-pack'],
        ['GET', '/secret.git/info/refs?service=git-upload-pack'],
        ['GET', '/secret.git/HEAD'],
      ];
      for (const authorization of forged) {
        for (const [method, path] of targets) {
          const got = await status(
            haproxy.url(path),
            { Authorization: authorization, 'Content-Type': 'application/x-git-receive-pack-request' },
            method,
          );
          assert.equal(got, 401, `${method} ${path} with ${authorization}`);
        }
        // On a path anyone may read, a forged header is refused too (variant 1: by HAProxy; variant
        // 2: git-fcgi checks every login it is sent).
        const read = await status(haproxy.url('/demo.git/info/refs?service=git-upload-pack'), {
          Authorization: authorization,
        });
        assert.equal(read, 401, `anonymous read with ${authorization}`);
      }
      const { dir } = await cloneWithCommit(`forger${variant}`);
      await assert.rejects(
        git(
          suite,
          ['push', '-q', url(haproxy, '/demo.git', 'mallory:x'), `HEAD:refs/heads/forged${variant}`],
          {
            cwd: dir,
          },
        ),
      );
      await assert.rejects(git(suite, ['ls-remote', url(haproxy, '/secret.git', 'alice:wrong')]));
      await assert.rejects(
        git(suite, ['ls-remote', url(haproxy, '/secret.git')]),
        /Authentication failed|Username/,
      );
      await assert.rejects(
        git(suite, ['rev-parse', '--verify', `refs/heads/forged${variant}`], { cwd: join(root, 'demo.git') }),
      );
      // The real login reads the protected repository (git sends it when challenged) and pushes.
      const { stdout } = await git(suite, ['ls-remote', url(haproxy, '/secret.git', 'alice:secret'), 'HEAD']);
      assert.equal(stdout.toString().split('\t')[0], secretHead);
      await git(
        suite,
        ['push', '-q', url(haproxy, '/demo.git', 'alice:secret'), `HEAD:refs/heads/real${variant}`],
        {
          cwd: dir,
        },
      );
    });
  }

  test('a 30 MB push: chunked, HAProxy refuses it (400); with http.postBuffer it has a length and arrives whole', async () => {
    const dir = join(work, 'big');
    await git(suite, ['clone', '-q', url(haproxy1, '/big.git'), dir]);
    for (let i = 0; i < 6; i++) await writeFile(join(dir, `blob-${i}.bin`), randomBytes(5 * 1024 * 1024));
    await git(suite, ['add', '-A'], { cwd: dir });
    await git(suite, [...identity, 'commit', '-q', '-m', 'big'], { cwd: dir });
    const commit = await revParse(dir, 'HEAD');
    const target = url(haproxy1, '/big.git', 'alice:secret');
    const chunkedTrace = join(work, 'trace-chunked');
    // git sends a pack larger than http.postBuffer (1 MiB) chunked: HAProxy's FastCGI side
    // cannot, and answers 400 itself and closes. curl reads that 400 when it is still
    // reading, or fails its next write (broken pipe) when it is still sending, on a busy machine.
    await assert.rejects(
      git(suite, ['push', '-q', target, 'HEAD:refs/heads/main'], {
        cwd: dir,
        env: { GIT_TRACE_CURL: chunkedTrace, GIT_TRACE_CURL_NO_DATA: '1' },
        timeoutMs: 180_000,
      }),
      /RPC failed; (HTTP 400|curl 55 Send failure: Broken pipe)/,
    );
    assert.match(await readFile(chunkedTrace, 'utf8'), /Transfer-Encoding: chunked/);
    const server = join(root, 'big.git');
    assert.notEqual(await revParse(server, 'refs/heads/main'), commit);
    // The client-side workaround: a buffer larger than the push makes git send Content-Length.
    const trace = join(work, 'trace-length');
    await git(suite, ['-c', 'http.postBuffer=64m', 'push', '-q', target, 'HEAD:refs/heads/main'], {
      cwd: dir,
      env: { GIT_TRACE_CURL: trace, GIT_TRACE_CURL_NO_DATA: '1' },
      timeoutMs: 180_000,
    });
    const headers = await readFile(trace, 'utf8');
    assert.match(headers, /=> Send header: POST \/big\.git\/git-receive-pack[^]*?Content-Length: \d{8}/);
    assert.equal(await revParse(server, 'refs/heads/main'), commit);
    await git(suite, ['fsck', '--full', '--strict'], { cwd: server, timeoutMs: 180_000 });
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });

  test('dumb HTTP GETs, and a 404', async () => {
    const head = await fetch(haproxy1.url('/demo.git/HEAD'));
    assert.equal(head.status, 200);
    assert.equal(await head.text(), 'ref: refs/heads/main\n');
    const packs = await fetch(haproxy1.url('/cut.git/objects/info/packs'));
    const pack = /P (pack-\w+\.pack)/.exec(await packs.text())?.[1];
    assert.ok(pack, 'objects/info/packs lists the pack');
    const got = await fetch(haproxy1.url(`/cut.git/objects/pack/${pack}`));
    assert.equal(got.status, 200);
    assert.ok((await got.arrayBuffer()).byteLength > 24 * 1024 * 1024);
    assert.equal(await status(haproxy1.url('/nothing-here.git/info/refs?service=git-upload-pack')), 404);
  });

  test('a client that goes away mid-clone leaves no git process', async (t) => {
    const dir = await tmpDir(t, 'cut-');
    const clone = await startProcess(
      t,
      'curl',
      [
        '-s',
        '--limit-rate',
        '1M',
        '-o',
        '/dev/null',
        '-H',
        'Content-Type: application/x-git-upload-pack-request',
        '--data-binary',
        '@-',
        haproxy1.url('/cut.git/git-upload-pack'),
      ],
      { cwd: dir, stdin: 'pipe' },
    );
    clone.stdin?.end(`0032want ${cutHead}\n00000009done\n`);
    await waitFor(async () => (await gitProcessesUnder(root)).length > 0, {
      timeoutMs: 10_000,
      what: 'git to start',
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await gitProcessesUnder(root)).length > 0, 'git is still sending the pack');
    await clone.stop();
    await waitFor(() => /repo=cut\.git service=git-upload-pack status=499/.test(daemon1.logs()), {
      timeoutMs: 10_000,
      what: `a 499 in the access log\n${daemon1.logs()}`,
    });
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });

  test('keep-conn (the default): concurrent clones and advertisements share reused connections', async () => {
    const before = await haproxy1.serverStats();
    const clones = Array.from({ length: 6 }, (_, i) =>
      git(suite, ['clone', '-q', '--bare', url(haproxy1, '/demo.git'), join(work, `kc-${i}`)], {
        timeoutMs: 120_000,
      }),
    );
    const target = haproxy1.url('/demo.git/info/refs?service=git-upload-pack');
    const expected = Buffer.from(await (await fetch(target)).arrayBuffer());
    for (let round = 0; round < 10; round++) {
      const bodies = await Promise.all(
        Array.from({ length: 16 }, async () => Buffer.from(await (await fetch(target)).arrayBuffer())),
      );
      for (const body of bodies) assert.ok(body.equals(expected));
    }
    await Promise.all(clones);
    const after = await haproxy1.serverStats();
    const requests = Number(after['stot']) - Number(before['stot']);
    const opened = Number(after['connect']) - Number(before['connect']);
    assert.ok(requests >= 6 * 2 + 161, `requests: ${requests}`);
    assert.ok(opened < requests / 2, `${opened} connections opened for ${requests} requests`);
    assert.equal(Number(after['hrsp_5xx']) - Number(before['hrsp_5xx']), 0);
  });

  test('option mpxs-conns (not shipped): concurrent clones multiplexed on shared connections all succeed', async (t) => {
    const { haproxy } = await stack(t, await ini('mpx.ini', RULES), {
      variant: 1,
      users: {},
      fcgiApp: ['option mpxs-conns', 'option max-reqs 8'],
      backend: ['http-reuse always'],
    });
    const started = Date.now();
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        git(t, ['clone', '-q', '--bare', url(haproxy, '/demo.git'), join(work, `mpx-${i}`)], {
          timeoutMs: 120_000,
        }),
      ),
    );
    const failed = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(
      failed,
      [],
      'no clone failed (git-fcgi once answered CANT_MPX_CONN: 504 after timeout server)',
    );
    const stats = await haproxy.serverStats();
    // More requests at once than connections ever opened: some shared a connection.
    assert.ok(
      Number(stats['connect']) < Number(stats['smax']),
      `connect ${stats['connect']}, smax ${stats['smax']}`,
    );
    t.diagnostic(
      `8 clones in ${Date.now() - started} ms; ${stats['connect']} connections, ${stats['stot']} requests, at most ${stats['smax']} at once`,
    );
  });

  test('a response that fails after its headers reaches the client broken, not complete', async (t) => {
    const backend = join(repoRoot, 'test', 'fixtures', 'backends', 'fail-after-headers.sh');
    const { haproxy } = await stack(t, await ini('fail.ini', ''), { variant: 1, users: {} }, [
      '--backend',
      backend,
    ]);
    const result = await run(
      'curl',
      ['-s', '-o', '/dev/null', '-w', '%{http_code}', haproxy.url('/demo.git/info/refs')],
      {
        timeoutMs: 30_000,
      },
    );
    assert.notEqual(result.code, 0, `curl sees a broken transfer (${result.stdout.toString()})`);
  });
});
