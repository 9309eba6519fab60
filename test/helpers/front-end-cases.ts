import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import type { GitFcgi } from './daemon.js';
import type { ForgedUserTarget } from './forged-user.js';
import { waitFor, withDeadline } from './deadline.js';
import { uploadPackRequest } from './git-wire.js';
import { assertNoGitProcesses, gitProcessesUnder } from './proc.js';
import { createBareRepo, git, randomBlobRepo } from './repos.js';

/**
 * The cases every FastCGI front end in front of git-fcgi must pass (issue 13), written once: each e2e file
 * (lighttpd, h2o, Apache, HAProxy, Caddy) builds the fixtures, starts git-fcgi and its server from the shipped config, and runs these
 * against it under its own test names.
 */

export const ALICE = { user: 'alice', password: 'secret' } as const;
const identity = ['-c', 'user.name=a', '-c', 'user.email=a@a'];

/**
 * git-fcgi's rules in `mode = nginx` (trust the front end's REMOTE_USER): everyone reads, alice pushes, and
 * secret.git is alice's alone. A forged Authorization header must never make anyone alice here.
 */
export const TRUSTING_RULES = `
[server]
ping_path = /git-fcgi-ping
status_path = /git-fcgi-status

[repo:**]
read = anonymous
write = alice

[repo:secret.git]
read = alice
write = alice
`;

export interface Fixtures {
  readonly root: string;
  readonly work: string;
  /** demo.git's main: 5 commits; core.logAllRefUpdates on, so pushes leave a reflog. */
  readonly demoHead: string;
  readonly secretHead: string;
  /** clone.git's main: 16 MB of random bytes, packed, for clients that leave mid-clone. */
  readonly cloneHead: string;
  /** app.git and team/app.git: two repositories a split path would confuse. */
  readonly appHead: string;
  readonly teamAppHead: string;
}

export async function createFixtures(t: Cleanup, root: string, work: string): Promise<Fixtures> {
  const demo = await createBareRepo(t, root, 'demo.git', { commits: 5, files: { 'a.txt': 'hello\n' } });
  await git(t, ['config', 'core.logAllRefUpdates', 'true'], { cwd: demo.path });
  const secret = await createBareRepo(t, root, 'secret.git', { commits: 1, files: { 's.txt': 'secret\n' } });
  await createBareRepo(t, root, 'big.git', { commits: 1 });
  const clone = await randomBlobRepo(t, root, 'clone.git', { bytes: 16 * 1024 * 1024 });
  // Packed, so that pack-objects streams at once instead of compressing loose objects first.
  await git(t, ['repack', '-adq'], { cwd: clone.path });
  const app = await createBareRepo(t, root, 'app.git', { commits: 1, files: { 'which.txt': 'app.git\n' } });
  const teamApp = await createBareRepo(t, root, 'team/app.git', {
    commits: 2,
    files: { 'which.txt': 'team/app.git\n' },
  });
  return {
    root,
    work,
    demoHead: demo.head,
    secretHead: secret.head,
    cloneHead: clone.head,
    appHead: app.head,
    teamAppHead: teamApp.head,
  };
}

export interface Target {
  readonly t: Cleanup;
  readonly fx: Fixtures;
  /** `http://127.0.0.1:PORT` of the front end. */
  readonly base: string;
  readonly daemon: GitFcgi;
}

/** The forged-user checks' target (forged-user.ts) on these fixtures: everyone reads demo.git, only alice secret.git. */
export const forgedUserTarget = (fx: Fixtures, base: string): ForgedUserTarget => ({
  base,
  root: fx.root,
  publicRepo: 'demo.git',
  secretRepo: 'secret.git',
  secretHead: fx.secretHead,
});

export const withLogin = (base: string, login: { user: string; password: string } = ALICE): string =>
  base.replace('http://', `http://${login.user}:${login.password}@`);

export const basic = (user: string, password: string): string =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

export async function revParse(t: Cleanup, cwd: string, rev: string): Promise<string> {
  return (await git(t, ['rev-parse', rev], { cwd })).stdout.toString().trim();
}

/** The newest reflog line of `ref` in the server's repository `repo`. */
export async function lastReflogLine(root: string, repo: string, ref: string): Promise<string> {
  const lines = (await readFile(join(root, repo, 'logs', ref), 'utf8')).trim().split('\n');
  return lines.at(-1) ?? '';
}

/** A clone of `repo` with one new commit on top; returns the directory and the commit. */
export async function cloneWithCommit(
  { t, fx, base }: Target,
  name: string,
  repo = 'demo.git',
): Promise<{ dir: string; commit: string }> {
  const dir = join(fx.work, name);
  await git(t, ['clone', '-q', `${base}/${repo}`, dir]);
  await writeFile(join(dir, `${name}.txt`), `${name}\n`);
  await git(t, ['add', '-A'], { cwd: dir });
  await git(t, [...identity, 'commit', '-q', '-m', name], { cwd: dir });
  return { dir, commit: await revParse(t, dir, 'HEAD') };
}

export async function cloneV2({ t, fx, base }: Target): Promise<void> {
  const trace = join(fx.work, 'trace-v2');
  const dir = join(fx.work, 'v2');
  await git(t, ['-c', 'protocol.version=2', 'clone', '-q', `${base}/demo.git`, dir], {
    env: { GIT_TRACE_PACKET: trace },
  });
  assert.match(await readFile(trace, 'utf8'), /git< version 2/, 'the server answered in protocol v2');
  assert.equal(await revParse(t, dir, 'HEAD'), fx.demoHead);
}

export async function cloneV0({ t, fx, base }: Target): Promise<void> {
  const trace = join(fx.work, 'trace-v0');
  const dir = join(fx.work, 'v0');
  await git(t, ['-c', 'protocol.version=0', 'clone', '-q', `${base}/demo.git`, dir], {
    env: { GIT_TRACE_PACKET: trace },
  });
  const packets = await readFile(trace, 'utf8');
  assert.match(packets, /git< # service=git-upload-pack/);
  assert.doesNotMatch(packets, /version 2/);
  assert.equal(await revParse(t, dir, 'HEAD'), fx.demoHead);
}

export async function shallowClone({ t, fx, base }: Target): Promise<void> {
  const dir = join(fx.work, 'shallow');
  await git(t, ['clone', '-q', '--depth', '1', `${base}/demo.git`, dir]);
  const { stdout } = await git(t, ['rev-list', '--count', 'HEAD'], { cwd: dir });
  assert.equal(stdout.toString().trim(), '1');
  assert.equal(await revParse(t, dir, 'HEAD'), fx.demoHead);
}

/** alice pushes with the password the front end checks; git http-backend names her in the reflog. */
export async function pushAsAlice(target: Target, branch: string, base = target.base): Promise<void> {
  const { t, fx } = target;
  const { dir, commit } = await cloneWithCommit(target, branch);
  await git(t, ['push', '-q', `${withLogin(base)}/demo.git`, `HEAD:refs/heads/${branch}`], { cwd: dir });
  assert.equal(await revParse(t, join(fx.root, 'demo.git'), `refs/heads/${branch}`), commit);
  // git http-backend: GIT_COMMITTER_NAME=REMOTE_USER, GIT_COMMITTER_EMAIL=REMOTE_USER@http.REMOTE_ADDR.
  const line = await lastReflogLine(fx.root, 'demo.git', `refs/heads/${branch}`);
  assert.match(
    line,
    new RegExp(`^0{40} ${commit} alice <alice@http\\.127\\.0\\.0\\.1> \\d+ [+-]\\d{4}\\tpush$`),
  );
}

/** Without credentials the push is challenged (401), and git without a terminal gives up. */
export async function anonymousPushAsksForLogin(target: Target, branch: string): Promise<void> {
  const { t, fx, base } = target;
  const { dir } = await cloneWithCommit(target, branch);
  await assert.rejects(
    git(t, ['push', '-q', `${base}/demo.git`, `HEAD:refs/heads/${branch}`], { cwd: dir }),
    /Authentication failed|401|could not read Username/,
  );
  const challenged = await fetch(`${base}/demo.git/info/refs?service=git-receive-pack`);
  assert.equal(challenged.status, 401);
  assert.match(challenged.headers.get('www-authenticate') ?? '', /^Basic realm=/);
  await challenged.arrayBuffer();
  await assert.rejects(
    git(t, ['rev-parse', '--verify', '-q', `refs/heads/${branch}`], { cwd: join(fx.root, 'demo.git') }),
  );
}

/** 30 MB of random bytes (incompressible) in six files, committed on a clone of big.git. */
export async function bigCommit({ t, fx, base }: Target): Promise<{ dir: string; commit: string }> {
  const dir = join(fx.work, 'big');
  await git(t, ['clone', '-q', `${base}/big.git`, dir]);
  for (let i = 0; i < 6; i++) await writeFile(join(dir, `blob-${i}.bin`), randomBytes(5 * 1024 * 1024));
  await git(t, ['add', '-A'], { cwd: dir });
  await git(t, [...identity, 'commit', '-q', '-m', 'big'], { cwd: dir });
  return { dir, commit: await revParse(t, dir, 'HEAD') };
}

/**
 * alice pushes `big` (from bigCommit); git sends a body this size chunked unless `gitArgs` raise
 * http.postBuffer. It arrives whole: fsck clean, every blob its size. Returns git's curl trace (headers only)
 * for the caller's front-end-specific checks.
 */
export async function pushBigCommit(
  { t, fx, base }: Target,
  big: { readonly dir: string; readonly commit: string },
  gitArgs: readonly string[] = [],
): Promise<string> {
  const trace = join(fx.work, 'trace-big-push');
  await git(t, [...gitArgs, 'push', '-q', `${withLogin(base)}/big.git`, 'HEAD:refs/heads/main'], {
    cwd: big.dir,
    env: { GIT_TRACE_CURL: trace, GIT_TRACE_CURL_NO_DATA: '1' },
    timeoutMs: 300_000,
  });
  const server = join(fx.root, 'big.git');
  assert.equal(await revParse(t, server, 'refs/heads/main'), big.commit);
  await git(t, ['fsck', '--full', '--strict', '--no-progress'], { cwd: server, timeoutMs: 300_000 });
  const { stdout } = await git(t, ['ls-tree', '-r', '--long', 'refs/heads/main'], { cwd: server });
  const sizes = stdout
    .toString()
    .trim()
    .split('\n')
    .filter((l) => l.includes('blob-'))
    .map((l) => Number(l.split(/\s+/)[3]));
  assert.deepEqual(
    sizes,
    Array.from({ length: 6 }, () => 5 * 1024 * 1024),
  );
  return readFile(trace, 'utf8');
}

/** A 30 MB push by alice (bigCommit, then pushBigCommit); returns git's curl trace (headers only). */
export async function bigPush(target: Target, gitArgs: readonly string[] = []): Promise<string> {
  return pushBigCommit(target, await bigCommit(target), gitArgs);
}

/** The dumb protocol: HEAD, info/refs without a service, a whole clone with GIT_SMART_HTTP=0; and 404s. */
export async function dumbAndNotFound({ t, fx, base }: Target): Promise<void> {
  const head = await fetch(`${base}/demo.git/HEAD`);
  assert.equal(head.status, 200);
  assert.equal(await head.text(), 'ref: refs/heads/main\n');
  const refs = await fetch(`${base}/demo.git/info/refs`);
  assert.equal(refs.status, 200);
  assert.match(await refs.text(), new RegExp(`^${fx.demoHead}\trefs/heads/main$`, 'm'));
  // A dumb clone reads objects/info/packs and the objects themselves.
  await git(t, ['update-server-info'], { cwd: join(fx.root, 'demo.git') });
  const dir = join(fx.work, 'dumb');
  await git(t, ['clone', '-q', `${base}/demo.git`, dir], { env: { GIT_SMART_HTTP: '0' } });
  assert.equal(await revParse(t, dir, 'HEAD'), fx.demoHead);
  for (const path of ['/nope.git/info/refs?service=git-upload-pack', '/demo.git/no-such-route', '/']) {
    const res = await fetch(`${base}${path}`);
    assert.equal(res.status, 404, path);
    await res.arrayBuffer();
  }
}

/** A dumb GET of clone.git's 16 MB pack file (listed in objects/info/packs) comes through whole. */
export async function dumbBigPack({ base }: Target): Promise<void> {
  const packs = await fetch(`${base}/clone.git/objects/info/packs`);
  assert.equal(packs.status, 200);
  const pack = /P (pack-\w+\.pack)/.exec(await packs.text())?.[1];
  assert.ok(pack, 'objects/info/packs lists the pack');
  const got = await fetch(`${base}/clone.git/objects/pack/${pack}`);
  assert.equal(got.status, 200);
  assert.ok((await got.arrayBuffer()).byteLength > 16 * 1024 * 1024);
}

/**
 * A client reads the first bytes of a 16 MB clone, then goes away: the front end must drop the FastCGI
 * connection (or abort the request) and git-fcgi kill git, leaving no git process behind.
 */
export async function disconnectMidClone(
  { fx, base, daemon }: Target,
  { gitGoneWithinMs = 20_000 }: { readonly gitGoneWithinMs?: number } = {},
): Promise<void> {
  const body = uploadPackRequest(fx.cloneHead);
  const url = new URL(`${base}/clone.git/git-upload-pack`);
  const request = http.request(url, {
    method: 'POST',
    agent: false,
    headers: { 'Content-Type': 'application/x-git-upload-pack-request', 'Content-Length': body.length },
  });
  try {
    const response = await withDeadline(
      new Promise<http.IncomingMessage>((resolve, reject) => {
        request.once('response', resolve);
        request.once('error', reject);
        request.end(body);
      }),
      60_000,
      'the clone to answer',
    );
    assert.equal(response.statusCode, 200);
    await withDeadline(
      new Promise((resolve) => response.once('data', resolve)),
      60_000,
      'the first bytes of the pack',
    );
    response.pause();
    // git is still at work (the client stopped reading, so it cannot finish): that is what must be ended.
    await waitFor(async () => (await gitProcessesUnder(fx.root)).length > 0, {
      timeoutMs: 10_000,
      what: 'git processes serving the clone',
    });
  } finally {
    request.destroy();
  }
  await assertNoGitProcesses(fx.root, { withinMs: gitGoneWithinMs });
  await waitFor(() => /repo=clone\.git service=git-upload-pack status=499/.test(daemon.logs()), {
    timeoutMs: 10_000,
    what: 'git-fcgi to log the clone as abandoned by the client (499)',
  });
}

/**
 * git-fcgi checks the passwords itself ([auth] mode = htpasswd) behind a front end without auth directives:
 * the Authorization header reaches it, alice reads secret.git and pushes, a wrong password gets nothing.
 */
export async function gitFcgiChecksPasswords(target: Target): Promise<void> {
  const { t, fx, base } = target;
  const dir = join(fx.work, 'htpasswd-mode-secret');
  await assert.rejects(
    git(t, ['clone', '-q', `${base}/secret.git`, `${dir}-anonymous`]),
    /401|could not read/,
  );
  await git(t, ['clone', '-q', `${withLogin(base)}/secret.git`, dir]);
  assert.equal(await revParse(t, dir, 'HEAD'), fx.secretHead);
  await assert.rejects(
    git(t, [
      'clone',
      '-q',
      `${withLogin(base, { user: 'alice', password: 'wrong' })}/secret.git`,
      `${dir}-2`,
    ]),
    /Authentication failed|401/,
  );
  await pushAsAlice(target, 'htpasswd-mode');
  await anonymousPushAsksForLogin(target, 'htpasswd-mode-anonymous');
}

/** Authorization headers nobody checked: a wrong password, an unknown user, an empty password, and junk. */
const FORGED_AUTHORIZATIONS = [
  basic('alice', 'wrong'),
  basic('mallory', 'x'),
  basic('mallory', ''),
  'Basic !!!not-base64!!!',
  'Bearer token',
];

/**
 * Each forged Authorization header gets 401 on every step of a push, on a protected read and on a read anyone
 * may make (where the front end checks logins it refuses a bad one; where git-fcgi does, it checks every
 * login it is sent). Then git: no push and no protected read with a wrong login, none without one, and
 * alice's real login does both (her branch `real-${tag}`).
 */
export async function forgedAuthorizationRefused(target: Target, tag: string): Promise<void> {
  const { t, fx, base } = target;
  const requests: ReadonlyArray<readonly [string, string]> = [
    ['GET', '/demo.git/info/refs?service=git-receive-pack'],
    ['POST', '/demo.git/git-receive-pack'],
    ['GET', '/secret.git/info/refs?service=git-upload-pack'],
    ['GET', '/secret.git/HEAD'],
    ['GET', '/demo.git/info/refs?service=git-upload-pack'],
  ];
  for (const authorization of FORGED_AUTHORIZATIONS) {
    for (const [method, path] of requests) {
      const got = await status(`${base}${path}`, {
        method,
        headers: { Authorization: authorization, 'Content-Type': 'application/x-git-receive-pack-request' },
      });
      assert.equal(got, 401, `${method} ${path} with ${authorization}`);
    }
  }
  const { dir } = await cloneWithCommit(target, `forger-${tag}`);
  const as = (user: string, password: string): string => withLogin(base, { user, password });
  await assert.rejects(
    git(t, ['push', '-q', `${as('mallory', 'x')}/demo.git`, `HEAD:refs/heads/forged-${tag}`], { cwd: dir }),
  );
  await assert.rejects(git(t, ['ls-remote', `${as('alice', 'wrong')}/secret.git`]));
  await assert.rejects(git(t, ['ls-remote', `${base}/secret.git`]), /Authentication failed|Username/);
  await assert.rejects(
    git(t, ['rev-parse', '--verify', `refs/heads/forged-${tag}`], { cwd: join(fx.root, 'demo.git') }),
  );
  // The real login reads the protected repository (git sends it when challenged) and pushes.
  const { stdout } = await git(t, ['ls-remote', `${withLogin(base)}/secret.git`, 'HEAD']);
  assert.equal(stdout.toString().split('\t')[0], fx.secretHead);
  await git(t, ['push', '-q', `${withLogin(base)}/demo.git`, `HEAD:refs/heads/real-${tag}`], { cwd: dir });
}

/** A GET on a connection from the loopback address `from` (127.0.0.2 is as remote as a test gets). */
function getFrom(
  url: string,
  from: string,
  headers: Readonly<Record<string, string>> = {},
): Promise<{ status: number; body: string }> {
  return withDeadline(
    new Promise((resolve, reject) => {
      http
        .get(url, { localAddress: from, headers, agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          );
          res.on('error', reject);
        })
        .on('error', reject);
    }),
    10_000,
    `GET ${url} from ${from}`,
  );
}

/** git-fcgi's ping and status paths answer the host itself, and nobody else (not even one claiming to be it). */
export async function pingAndStatusLocalOnly({ base }: Target): Promise<void> {
  assert.deepEqual(await getFrom(`${base}/git-fcgi-ping`, '127.0.0.1'), { status: 200, body: 'pong\n' });
  const figures = await getFrom(`${base}/git-fcgi-status?json`, '127.0.0.1');
  assert.equal(figures.status, 200);
  assert.ok('accepted' in (JSON.parse(figures.body) as object));
  for (const path of ['/git-fcgi-ping', '/git-fcgi-status']) {
    assert.equal((await getFrom(`${base}${path}`, '127.0.0.2')).status, 403, path);
    const claims = { 'x-forwarded-for': '127.0.0.1', 'x-real-ip': '127.0.0.1' };
    assert.equal((await getFrom(`${base}${path}`, '127.0.0.2', claims)).status, 403, `${path}, forwarded`);
  }
}

/** A small request to git-fcgi through the front end, for tests that only need a status. */
export async function status(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, init);
  await res.arrayBuffer();
  return res.status;
}
