import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CADDY,
  SHIPPED_CADDYFILE,
  assertNoCaddyProcesses,
  bcryptHash,
  caddySocketOwnerArgs,
  shippedCaddySite,
  startCaddy,
  type Caddy,
  type ShippedCaddyOptions,
} from '../helpers/caddy.js';
import { suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { UNCHECKED_USER_WARNING } from '../helpers/forged-user.js';
import { waitFor } from '../helpers/deadline.js';
import {
  ALICE,
  TRUSTING_RULES,
  anonymousPushAsksForLogin,
  bigPush,
  cloneV0,
  cloneV2,
  createFixtures,
  disconnectMidClone,
  dumbAndNotFound,
  dumbBigPack,
  forgedAuthorizationRefused,
  gitFcgiChecksPasswords,
  pushAsAlice,
  shallowClone,
  status,
  type Fixtures,
  type Target,
} from '../helpers/front-end-cases.js';
import { reachableDir } from '../helpers/front-end.js';
import { htpasswd } from '../helpers/nginx.js';
import { assertNoGitProcesses, listGitProcessesUnder, run } from '../helpers/proc.js';
import { git } from '../helpers/repos.js';
import { startSlowProxy } from '../helpers/slow-proxy.js';
import { tmpDir } from '../helpers/tmp.js';
import { skipWithout } from '../helpers/tools.js';

/**
 * Real git clients through Caddy 2 started from etc/caddy/Caddyfile (running as caddy, as Debian
 * runs it), to git http-backend via git-fcgi: the setup Caddy users were told does not exist
 * (caddyserver/caddy#5926). Variant 1: Caddy's basicauth checks logins and git-fcgi trusts its
 * REMOTE_USER (mode = nginx); variant 2: git-fcgi checks them ([auth] mode = htpasswd).
 */
const SUITE = 'git over Caddy reverse_proxy (transport fastcgi) and git-fcgi, from the shipped Caddyfile';
describe(SUITE, { skip: skipWithout('caddy') }, () => {
  const suite = suiteCleanup(after);
  let shipped: string;
  let fx: Fixtures;
  let daemon1: GitFcgi;
  /** Variant 1: Caddy checks logins. */
  let caddy1: Caddy;
  let target1: Target;
  /** Variant 2: git-fcgi checks logins. */
  let caddy2: Caddy;
  let target2: Target;
  const started: Caddy[] = [];

  /** git-fcgi with `ini` (plus `more` args) on a socket Caddy can reach, and Caddy in front of it. */
  async function stack(
    t: Cleanup,
    ini: string,
    options: Omit<ShippedCaddyOptions, 'socket' | 'projectRoot'>,
    more: readonly string[] = [],
  ): Promise<{ daemon: GitFcgi; caddy: Caddy }> {
    const socket = join(await reachableDir(t, 'caddy-sock-'), 'git-fcgi.sock');
    const daemon = await startGitFcgi(t, [
      '-c',
      ini,
      '--listen',
      `unix:${socket}`,
      ...caddySocketOwnerArgs(),
      ...more,
    ]);
    const site = shippedCaddySite(shipped, { ...options, socket, projectRoot: fx.root });
    const caddy = await startCaddy(t, { site });
    started.push(caddy);
    return { daemon, caddy };
  }

  async function ini(name: string, text: string): Promise<string> {
    const file = join(fx.work, name);
    // No project_root: GIT_PROJECT_ROOT comes from the Caddyfile's `env` line.
    await writeFile(file, `[git]\nexport_all = true\n\n${text}`);
    return file;
  }

  before(async () => {
    shipped = await readFile(SHIPPED_CADDYFILE, 'utf8');
    fx = await createFixtures(suite, await tmpDir(suite, 'caddy-repos-'), await tmpDir(suite, 'caddy-work-'));
    const alice = await bcryptHash(ALICE.password);
    ({ daemon: daemon1, caddy: caddy1 } = await stack(suite, await ini('variant1.ini', TRUSTING_RULES), {
      variant: 1,
      users: { alice },
    }));
    target1 = { t: suite, fx, base: caddy1.url(''), daemon: daemon1 };
    const users = await htpasswd(suite, fx.work, { alice: ALICE.password });
    // The forged-login test fails dozens of logins from 127.0.0.1: more than the default limit (429).
    const htpasswdMode = `[auth]\nmode = htpasswd\nhtpasswd = ${users}\nmax_failures = 1000\n\n${TRUSTING_RULES}`;
    const variant2 = await stack(suite, await ini('variant2.ini', htpasswdMode), { variant: 2 });
    caddy2 = variant2.caddy;
    target2 = { t: suite, fx, base: caddy2.url(''), daemon: variant2.daemon };
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped every server by now.
    for (const caddy of started) await assertNoCaddyProcesses(caddy, 5000);
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
    // The suite reads secret.git as alice and demo.git anonymously through the same Caddy: the
    // warning's conditions, but for AUTH_TYPE, which the shipped Caddyfile sends with a checked user.
    assert.doesNotMatch(daemon1.logs(), UNCHECKED_USER_WARNING, 'no forged-user warning for checked users');
  });

  const url = (caddy: Caddy, path: string, login = ''): string =>
    caddy.url(path).replace('http://', login === '' ? 'http://' : `http://${login}@`);

  test('clone over protocol v2, verified in the packet trace', () => cloneV2(target1));

  test('clone over protocol v0', () => cloneV0(target1));

  test('shallow clone (--depth 1)', () => shallowClone(target1));

  test('ref advertisements come from the ref cache (Caddy sends CONTENT_LENGTH=0)', async () => {
    const target = url(caddy1, '/demo.git/info/refs?service=git-upload-pack');
    const bodies: Buffer[] = [];
    for (let i = 0; i < 3; i++) bodies.push(Buffer.from(await (await fetch(target)).arrayBuffer()));
    await waitFor(
      () => /repo=demo\.git service=git-upload-pack status=200 .*cache=hit/.test(daemon1.logs()),
      {
        timeoutMs: 5000,
        what: `a cache hit in\n${daemon1.logs()}`,
      },
    );
    for (const body of bodies) assert.ok(body.equals(bodies[0] ?? Buffer.alloc(0)));
  });

  test('push as a user Caddy authenticated; the reflog names them', () => pushAsAlice(target1, 'feature'));

  test('an anonymous push is challenged (401), so git asks for credentials', () =>
    anonymousPushAsksForLogin(target1, 'anon'));

  test('variant 2: git-fcgi checks the passwords ([auth] mode = htpasswd)', () =>
    gitFcgiChecksPasswords(target2));

  for (const variant of [1, 2] as const) {
    test(`variant ${variant}: a forged Authorization header never gets a push or a protected read`, async () => {
      const target = variant === 1 ? target1 : target2;
      await forgedAuthorizationRefused(target, `v${variant}`);
      // Headers that name a user are only headers (HTTP_*), never REMOTE_USER.
      const named = { 'Remote-User': 'alice', 'X-Remote-User': 'alice', 'X-Forwarded-User': 'alice' };
      assert.equal(
        await status(`${target.base}/demo.git/info/refs?service=git-receive-pack`, { headers: named }),
        401,
      );
      assert.equal(
        await status(`${target.base}/secret.git/info/refs?service=git-upload-pack`, { headers: named }),
        401,
      );
    });
  }

  test('a 30 MB push goes out chunked (CONTENT_LENGTH=-1), is streamed, and arrives whole', async () => {
    const trace = await bigPush(target1);
    assert.match(trace, /=> Send header: POST \/big\.git\/git-receive-pack[^]*?Transfer-Encoding: chunked/);
    const line = /repo=big\.git service=git-receive-pack status=200 in=(\d+)/.exec(
      daemon1.logs().split('\n').reverse().join('\n'),
    );
    assert.ok(
      line && Number(line[1]) > 30 * 1024 * 1024,
      `the whole body reached git: ${line?.[0] ?? 'no line'}`,
    );
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
  });

  test('dumb HTTP (HEAD, info/refs, a GIT_SMART_HTTP=0 clone, a 16 MB pack file) and 404s', async () => {
    await dumbAndNotFound(target1);
    await dumbBigPack(target1);
  });

  test('a client that leaves mid-clone leaves no git process behind', () =>
    disconnectMidClone(target1, { gitGoneWithinMs: 5000 }));

  test('git’s output is forwarded as it is written (flush_interval -1), not when the response ends', async (t) => {
    const backend = join(repoRoot, 'test', 'fixtures', 'backends', 'progress.sh');
    const { caddy } = await stack(t, await ini('progress.ini', ''), { variant: 2 }, ['--backend', backend]);
    const started = Date.now();
    const res = await fetch(caddy.url('/demo.git/info/refs'));
    const arrivals: Array<[number, string]> = [];
    for await (const chunk of res.body ?? [])
      arrivals.push([Date.now() - started, Buffer.from(chunk).toString()]);
    const first = arrivals.find(([, text]) => text.includes('first'));
    const second = arrivals.find(([, text]) => text.includes('second'));
    assert.ok(first && second, JSON.stringify(arrivals));
    assert.ok(second[0] - first[0] >= 1500, `"first" arrived ${second[0] - first[0]} ms before "second"`);
  });

  test('a response that fails after its headers: Caddy < 2.8 ends it as if complete; git still fails the clone', async (t) => {
    const version = (await run(CADDY, ['version'], { timeoutMs: 10_000 })).stdout.toString();
    const [major = 0, minor = 0] = (/v(\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
    const fixed = major > 2 || (major === 2 && minor >= 8);
    const backend = join(repoRoot, 'test', 'fixtures', 'backends', 'fail-after-headers.sh');
    const { caddy } = await stack(t, await ini('fail.ini', ''), { variant: 2 }, ['--backend', backend]);
    const result = await run(
      'curl',
      ['-s', '-o', '/dev/null', '-w', '%{http_code}', caddy.url('/demo.git/info/refs')],
      {
        timeoutMs: 30_000,
      },
    );
    // git-fcgi cuts the FastCGI connection off with an invalid record; Caddy logs "aborting with
    // incomplete response" but before 2.8 (caddyserver/caddy#5951) still ends the chunked
    // response normally.
    if (fixed) assert.notEqual(result.code, 0, `curl sees a broken transfer (${version})`);
    else assert.equal(result.code, 0, `Caddy ${version.trim()} ends the response as complete (fixed in 2.8)`);
    await waitFor(() => /aborting with incomplete response/.test(caddy.output()), {
      timeoutMs: 5000,
      what: 'Caddy to log the abort',
    });
    // git's own framing still catches a pack cut short: upload-pack killed mid-clone fails the
    // clone. The client reads at 2 MB/s (through a throttling proxy), so git is still sending.
    const slow = await startSlowProxy(t, caddy1.port, 2 * 1024 * 1024);
    const clone = git(
      t,
      ['clone', '-q', '--bare', `http://127.0.0.1:${slow}/clone.git`, join(await tmpDir(t, 'cc-'), 'c')],
      {
        timeoutMs: 60_000,
      },
    ).then(
      () => 'cloned',
      (err: unknown) => String(err),
    );
    await waitFor(async () => (await listGitProcessesUnder(fx.root)).some((p) => p.comm === 'git'), {
      timeoutMs: 10_000,
      what: 'pack-objects to run',
    });
    await new Promise((r) => setTimeout(r, 500));
    for (const p of await listGitProcessesUnder(fx.root))
      if (p.comm === 'git') process.kill(p.pid, 'SIGKILL');
    const outcome = await clone;
    assert.notEqual(outcome, 'cloned', 'the clone fails');
    t.diagnostic(
      outcome
        .split('\n')
        .filter((l) => /fatal|error/.test(l))
        .join(' | '),
    );
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
  });
});
