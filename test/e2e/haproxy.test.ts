import assert from 'node:assert/strict';
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
import {
  ALICE,
  TRUSTING_RULES,
  anonymousPushAsksForLogin,
  bigCommit,
  cloneV0,
  cloneV2,
  createFixtures,
  disconnectMidClone,
  dumbAndNotFound,
  dumbBigPack,
  forgedAuthorizationRefused,
  gitFcgiChecksPasswords,
  pushAsAlice,
  pushBigCommit,
  revParse,
  shallowClone,
  withLogin,
  type Fixtures,
  type Target,
} from '../helpers/front-end-cases.js';
import { htpasswd } from '../helpers/nginx.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { git, GIT_HTTP_BACKEND } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { skipWithout } from '../helpers/tools.js';

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
  let fx: Fixtures;
  /** Variant 1: HAProxy checks logins. */
  let daemon1: GitFcgi;
  let haproxy1: Haproxy;
  let target1: Target;
  /** Variant 2: git-fcgi checks logins. */
  let haproxy2: Haproxy;
  let target2: Target;
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
    const sections = shippedHaproxySections(shipped, { ...options, docroot: fx.root });
    const haproxy = await startHaproxy(t, { sections, jail });
    started.push(haproxy);
    return { daemon, haproxy };
  }

  async function ini(name: string, text: string): Promise<string> {
    const file = join(fx.work, name);
    await writeFile(file, `[git]\nproject_root = ${fx.root}\nexport_all = true\n\n${text}`);
    return file;
  }

  before(async () => {
    shipped = await readFile(SHIPPED_HAPROXY_CFG, 'utf8');
    fx = await createFixtures(
      suite,
      await tmpDir(suite, 'haproxy-repos-'),
      await tmpDir(suite, 'haproxy-work-'),
    );
    const alice = await sha512Crypt(ALICE.password);
    ({ daemon: daemon1, haproxy: haproxy1 } = await stack(suite, await ini('variant1.ini', TRUSTING_RULES), {
      variant: 1,
      users: { alice },
    }));
    target1 = { t: suite, fx, base: haproxy1.url(''), daemon: daemon1 };
    const users = await htpasswd(suite, fx.work, { alice: ALICE.password });
    // The forged-login test fails dozens of logins from 127.0.0.1: more than the default limit (429).
    const htpasswdMode = `[auth]\nmode = htpasswd\nhtpasswd = ${users}\nmax_failures = 1000\n\n${TRUSTING_RULES}`;
    const variant2 = await stack(suite, await ini('variant2.ini', htpasswdMode), { variant: 2 });
    haproxy2 = variant2.haproxy;
    target2 = { t: suite, fx, base: haproxy2.url(''), daemon: variant2.daemon };
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped every server by now.
    for (const haproxy of started) await assertNoHaproxyProcesses(haproxy, 5000);
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
  });

  const url = (haproxy: Haproxy, path: string, login = ''): string =>
    haproxy.url(path).replace('http://', login === '' ? 'http://' : `http://${login}@`);

  test('clone over protocol v2, verified in the packet trace', () => cloneV2(target1));

  test('clone over protocol v0', () => cloneV0(target1));

  test('shallow clone (--depth 1)', () => shallowClone(target1));

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
        GIT_PROJECT_ROOT: fx.root,
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

  test('push as a user HAProxy authenticated; the reflog names them', () => pushAsAlice(target1, 'feature'));

  test('an anonymous push is challenged (401), so git asks for credentials', () =>
    anonymousPushAsksForLogin(target1, 'anon'));

  test('variant 2: git-fcgi checks the passwords ([auth] mode = htpasswd)', () =>
    gitFcgiChecksPasswords(target2));

  for (const variant of [1, 2] as const) {
    test(`variant ${variant}: a forged Authorization header never gets a push or a protected read`, () =>
      forgedAuthorizationRefused(variant === 1 ? target1 : target2, `v${variant}`));
  }

  test('a 30 MB push: chunked, HAProxy refuses it (400); with http.postBuffer it has a length and arrives whole', async () => {
    const big = await bigCommit(target1);
    const chunkedTrace = join(fx.work, 'trace-chunked');
    // git sends a pack larger than http.postBuffer (1 MiB) chunked: HAProxy's FastCGI side
    // cannot, and answers 400 itself and closes. curl reads that 400 when it is still
    // reading, or fails its next write (broken pipe) when it is still sending, on a busy machine.
    await assert.rejects(
      git(suite, ['push', '-q', `${withLogin(target1.base)}/big.git`, 'HEAD:refs/heads/main'], {
        cwd: big.dir,
        env: { GIT_TRACE_CURL: chunkedTrace, GIT_TRACE_CURL_NO_DATA: '1' },
        timeoutMs: 180_000,
      }),
      /RPC failed; (HTTP 400|curl 55 Send failure: Broken pipe)/,
    );
    assert.match(await readFile(chunkedTrace, 'utf8'), /Transfer-Encoding: chunked/);
    assert.notEqual(await revParse(suite, join(fx.root, 'big.git'), 'refs/heads/main'), big.commit);
    // The client-side workaround: a buffer larger than the push makes git send Content-Length.
    const headers = await pushBigCommit(target1, big, ['-c', 'http.postBuffer=64m']);
    assert.match(headers, /=> Send header: POST \/big\.git\/git-receive-pack[^]*?Content-Length: \d{8}/);
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
  });

  test('dumb HTTP (HEAD, info/refs, a GIT_SMART_HTTP=0 clone, a 16 MB pack file) and 404s', async () => {
    await dumbAndNotFound(target1);
    await dumbBigPack(target1);
  });

  test('a client that leaves mid-clone leaves no git process behind', () =>
    disconnectMidClone(target1, { gitGoneWithinMs: 5000 }));

  test('keep-conn (the default): concurrent clones and advertisements share reused connections', async () => {
    const before = await haproxy1.serverStats();
    const clones = Array.from({ length: 6 }, (_, i) =>
      git(suite, ['clone', '-q', '--bare', url(haproxy1, '/demo.git'), join(fx.work, `kc-${i}`)], {
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
    const { haproxy } = await stack(t, await ini('mpx.ini', TRUSTING_RULES), {
      variant: 1,
      users: {},
      fcgiApp: ['option mpxs-conns', 'option max-reqs 8'],
      backend: ['http-reuse always'],
    });
    const started = Date.now();
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        git(t, ['clone', '-q', '--bare', url(haproxy, '/demo.git'), join(fx.work, `mpx-${i}`)], {
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
