import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CADDY,
  SHIPPED_CADDYFILE,
  assertNoCaddyProcesses,
  bcryptHash,
  caddyReachableDir,
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
import { htpasswd } from '../helpers/nginx.js';
import {
  assertNoGitProcesses,
  gitProcessesUnder,
  listGitProcessesUnder,
  run,
  startProcess,
} from '../helpers/proc.js';
import { createBareRepo, git, randomBlobRepo } from '../helpers/repos.js';
import { startSlowProxy } from '../helpers/slow-proxy.js';
import { tmpDir } from '../helpers/tmp.js';

const identity = ['-c', 'user.name=a', '-c', 'user.email=a@a'];
const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Access rules both variants run with: secret.git only for alice, everything else read by all. */
const RULES = `[repo:secret.git]\nread = alice\nwrite = alice\n\n[repo:**]\nread = anonymous\nwrite = *\n`;

/**
 * Real git clients through Caddy 2 started from etc/caddy/Caddyfile (running as caddy, as Debian
 * runs it), to git http-backend via git-fcgi: the setup Caddy users were told does not exist
 * (caddyserver/caddy#5926). Variant 1: Caddy's basicauth checks logins and git-fcgi trusts its
 * REMOTE_USER (mode = nginx); variant 2: git-fcgi checks them ([auth] mode = htpasswd).
 */
describe('git over Caddy reverse_proxy (transport fastcgi) and git-fcgi, from the shipped Caddyfile', () => {
  const suite = suiteCleanup(after);
  let shipped: string;
  let root: string;
  let work: string;
  let demoHead: string;
  let secretHead: string;
  let cutHead: string;
  let daemon1: GitFcgi;
  /** Variant 1: Caddy checks logins. */
  let caddy1: Caddy;
  /** Variant 2: git-fcgi checks logins. */
  let caddy2: Caddy;
  const started: Caddy[] = [];

  /** git-fcgi with `ini` (plus `more` args) on a socket Caddy can reach, and Caddy in front of it. */
  async function stack(
    t: Cleanup,
    ini: string,
    options: Omit<ShippedCaddyOptions, 'socket' | 'projectRoot'>,
    more: readonly string[] = [],
  ): Promise<{ daemon: GitFcgi; caddy: Caddy }> {
    const socket = join(await caddyReachableDir(t, 'caddy-sock-'), 'git-fcgi.sock');
    const daemon = await startGitFcgi(t, [
      '-c',
      ini,
      '--listen',
      `unix:${socket}`,
      ...caddySocketOwnerArgs(),
      ...more,
    ]);
    const site = shippedCaddySite(shipped, { ...options, socket, projectRoot: root });
    const caddy = await startCaddy(t, { site });
    started.push(caddy);
    return { daemon, caddy };
  }

  async function ini(name: string, text: string): Promise<string> {
    const file = join(work, name);
    // No project_root: GIT_PROJECT_ROOT comes from the Caddyfile's `env` line.
    await writeFile(file, `[git]\nexport_all = true\n\n${text}`);
    return file;
  }

  before(async () => {
    shipped = await readFile(SHIPPED_CADDYFILE, 'utf8');
    root = await tmpDir(suite, 'caddy-repos-');
    work = await tmpDir(suite, 'caddy-work-');
    const demo = await createBareRepo(suite, root, 'demo.git', { commits: 5, files: { 'a.txt': 'hello\n' } });
    demoHead = demo.head;
    await git(suite, ['config', 'core.logAllRefUpdates', 'true'], { cwd: demo.path });
    secretHead = (await createBareRepo(suite, root, 'secret.git', { commits: 2 })).head;
    await createBareRepo(suite, root, 'big.git', { commits: 1 });
    const cut = await randomBlobRepo(suite, root, 'cut.git', { bytes: 24 * 1024 * 1024 });
    cutHead = cut.head;
    await git(suite, ['repack', '-adq'], { cwd: cut.path });

    const alice = await bcryptHash('secret');
    ({ daemon: daemon1, caddy: caddy1 } = await stack(suite, await ini('variant1.ini', RULES), {
      variant: 1,
      users: { alice },
    }));
    const users = await htpasswd(suite, work, { alice: 'secret' });
    // The forged-login test fails dozens of logins from 127.0.0.1: more than the default limit (429).
    const htpasswdMode = `[auth]\nmode = htpasswd\nhtpasswd = ${users}\nmax_failures = 1000\n\n${RULES}`;
    ({ caddy: caddy2 } = await stack(suite, await ini('variant2.ini', htpasswdMode), { variant: 2 }));
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped every server by now.
    for (const caddy of started) await assertNoCaddyProcesses(caddy, 5000);
    await assertNoGitProcesses(root, { withinMs: 5000 });
    // The suite reads secret.git as alice and demo.git anonymously through the same Caddy: the
    // warning's conditions, but for AUTH_TYPE, which the shipped Caddyfile sends with a checked user.
    assert.doesNotMatch(daemon1.logs(), UNCHECKED_USER_WARNING, 'no forged-user warning for checked users');
  });

  const url = (caddy: Caddy, path: string, login = ''): string =>
    caddy.url(path).replace('http://', login === '' ? 'http://' : `http://${login}@`);
  const revParse = async (cwd: string, rev: string): Promise<string> =>
    (await git(suite, ['rev-parse', rev], { cwd })).stdout.toString().trim();

  async function cloneWithCommit(name: string): Promise<{ dir: string; commit: string }> {
    const dir = join(work, name);
    await git(suite, ['clone', '-q', url(caddy1, '/demo.git'), dir]);
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
      await git(suite, ['-c', `protocol.version=${version}`, 'clone', '-q', url(caddy1, '/demo.git'), dir], {
        env: { GIT_TRACE_PACKET: trace },
      });
      const packets = await readFile(trace, 'utf8');
      if (version === '2') assert.match(packets, /git< version 2/, 'Git-Protocol reaches git');
      else assert.doesNotMatch(packets, /version 2/);
      assert.equal(await revParse(dir, 'HEAD'), demoHead);
    }
  });

  test('shallow clone (--depth 1)', async () => {
    const dir = join(work, 'shallow');
    await git(suite, ['clone', '-q', '--depth', '1', url(caddy1, '/demo.git'), dir]);
    const { stdout } = await git(suite, ['rev-list', '--count', 'HEAD'], { cwd: dir });
    assert.equal(stdout.toString().trim(), '1');
  });

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

  test('push as a user Caddy authenticated; the reflog names them', async () => {
    const { dir, commit } = await cloneWithCommit('pusher');
    await git(suite, ['push', '-q', url(caddy1, '/demo.git', 'alice:secret'), 'HEAD:refs/heads/feature'], {
      cwd: dir,
    });
    assert.equal(await revParse(join(root, 'demo.git'), 'refs/heads/feature'), commit);
    const log = (await readFile(join(root, 'demo.git', 'logs', 'refs', 'heads', 'feature'), 'utf8')).trim();
    assert.match(
      log.split('\n').at(-1) ?? '',
      new RegExp(`^0{40} ${commit} alice <alice@http\\.127\\.0\\.0\\.1> \\d+ [+-]\\d{4}\\tpush$`),
    );
    await assert.rejects(
      git(suite, ['push', '-q', url(caddy1, '/demo.git'), 'HEAD:refs/heads/anon'], { cwd: dir }),
      /Authentication failed|could not read Username/,
    );
  });

  for (const variant of [1, 2] as const) {
    test(`variant ${variant}: a forged Authorization header never gets a push or a protected read`, async () => {
      const caddy = variant === 1 ? caddy1 : caddy2;
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
        ['GET', '/demo.git/info/refs?service=git-upload-pack'],
      ];
      for (const authorization of forged) {
        for (const [method, path] of targets) {
          const got = await status(
            caddy.url(path),
            { Authorization: authorization, 'Content-Type': 'application/x-git-receive-pack-request' },
            method,
          );
          assert.equal(got, 401, `${method} ${path} with ${authorization}`);
        }
      }
      // Headers that name a user are only headers (HTTP_*), never REMOTE_USER.
      const named = { 'Remote-User': 'alice', 'X-Remote-User': 'alice', 'X-Forwarded-User': 'alice' };
      assert.equal(await status(caddy.url('/demo.git/info/refs?service=git-receive-pack'), named), 401);
      assert.equal(await status(caddy.url('/secret.git/info/refs?service=git-upload-pack'), named), 401);
      const { dir } = await cloneWithCommit(`forger${variant}`);
      await assert.rejects(
        git(suite, ['push', '-q', url(caddy, '/demo.git', 'mallory:x'), `HEAD:refs/heads/forged${variant}`], {
          cwd: dir,
        }),
      );
      await assert.rejects(git(suite, ['ls-remote', url(caddy, '/secret.git', 'alice:wrong')]));
      await assert.rejects(
        git(suite, ['ls-remote', url(caddy, '/secret.git')]),
        /Authentication failed|Username/,
      );
      await assert.rejects(
        git(suite, ['rev-parse', '--verify', `refs/heads/forged${variant}`], { cwd: join(root, 'demo.git') }),
      );
      // The real login reads the protected repository (git sends it when challenged) and pushes.
      const { stdout } = await git(suite, ['ls-remote', url(caddy, '/secret.git', 'alice:secret'), 'HEAD']);
      assert.equal(stdout.toString().split('\t')[0], secretHead);
      await git(
        suite,
        ['push', '-q', url(caddy, '/demo.git', 'alice:secret'), `HEAD:refs/heads/real${variant}`],
        {
          cwd: dir,
        },
      );
    });
  }

  test('a 30 MB push goes out chunked (CONTENT_LENGTH=-1), is streamed, and arrives whole', async () => {
    const dir = join(work, 'big');
    await git(suite, ['clone', '-q', url(caddy1, '/big.git'), dir]);
    for (let i = 0; i < 6; i++) await writeFile(join(dir, `blob-${i}.bin`), randomBytes(5 * 1024 * 1024));
    await git(suite, ['add', '-A'], { cwd: dir });
    await git(suite, [...identity, 'commit', '-q', '-m', 'big'], { cwd: dir });
    const commit = await revParse(dir, 'HEAD');
    const trace = join(work, 'trace-big-push');
    await git(suite, ['push', '-q', url(caddy1, '/big.git', 'alice:secret'), 'HEAD:refs/heads/main'], {
      cwd: dir,
      env: { GIT_TRACE_CURL: trace, GIT_TRACE_CURL_NO_DATA: '1' },
      timeoutMs: 180_000,
    });
    assert.match(
      await readFile(trace, 'utf8'),
      /=> Send header: POST \/big\.git\/git-receive-pack[^]*?Transfer-Encoding: chunked/,
    );
    const server = join(root, 'big.git');
    assert.equal(await revParse(server, 'refs/heads/main'), commit);
    await git(suite, ['fsck', '--full', '--strict'], { cwd: server, timeoutMs: 180_000 });
    const line = /repo=big\.git service=git-receive-pack status=200 in=(\d+)/.exec(
      daemon1.logs().split('\n').reverse().join('\n'),
    );
    assert.ok(
      line && Number(line[1]) > 30 * 1024 * 1024,
      `the whole body reached git: ${line?.[0] ?? 'no line'}`,
    );
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });

  test('dumb HTTP GETs, and a 404', async () => {
    const head = await fetch(caddy1.url('/demo.git/HEAD'));
    assert.equal(head.status, 200);
    assert.equal(await head.text(), 'ref: refs/heads/main\n');
    const packs = await fetch(caddy1.url('/cut.git/objects/info/packs'));
    const pack = /P (pack-\w+\.pack)/.exec(await packs.text())?.[1];
    assert.ok(pack, 'objects/info/packs lists the pack');
    const got = await fetch(caddy1.url(`/cut.git/objects/pack/${pack}`));
    assert.equal(got.status, 200);
    assert.ok((await got.arrayBuffer()).byteLength > 24 * 1024 * 1024);
    assert.equal(await status(caddy1.url('/nothing-here.git/info/refs?service=git-upload-pack')), 404);
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
        caddy1.url('/cut.git/git-upload-pack'),
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
      ['clone', '-q', '--bare', `http://127.0.0.1:${slow}/cut.git`, join(await tmpDir(t, 'cc-'), 'c')],
      {
        timeoutMs: 60_000,
      },
    ).then(
      () => 'cloned',
      (err: unknown) => String(err),
    );
    await waitFor(async () => (await listGitProcessesUnder(root)).some((p) => p.comm === 'git'), {
      timeoutMs: 10_000,
      what: 'pack-objects to run',
    });
    await new Promise((r) => setTimeout(r, 500));
    for (const p of await listGitProcessesUnder(root)) if (p.comm === 'git') process.kill(p.pid, 'SIGKILL');
    const outcome = await clone;
    assert.notEqual(outcome, 'cloned', 'the clone fails');
    t.diagnostic(
      outcome
        .split('\n')
        .filter((l) => /fatal|error/.test(l))
        .join(' | '),
    );
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });
});
