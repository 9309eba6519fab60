import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { UNCHECKED_USER_WARNING, assertForgedUsersRefused } from '../helpers/forged-user.js';
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
  forgedUserTarget,
  gitFcgiChecksPasswords,
  pingAndStatusLocalOnly,
  pushAsAlice,
  revParse,
  shallowClone,
  withLogin,
  type Fixtures,
  type Target,
} from '../helpers/front-end-cases.js';
import {
  reachableDir,
  readableHtpasswd,
  serviceAccount,
  socketOwnerArgs,
  type Account,
} from '../helpers/front-end.js';
import { assertNoLighttpdProcesses, startLighttpd, type Lighttpd } from '../helpers/lighttpd.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { git } from '../helpers/repos.js';
import { changeLine, shippedConfig, withoutFrontEndAuth } from '../helpers/shipped-config.js';
import { tmpDir } from '../helpers/tmp.js';

const SHIPPED = 'lighttpd/git-fcgi.conf';

/**
 * Real git clients through real lighttpd 1.4 (mod_fastcgi) started from etc/lighttpd/git-fcgi.conf, changed
 * only in what its comments mark CHANGE (host name, paths), to git http-backend via git-fcgi. The config's
 * traps are shown by changing the one line that avoids them.
 */
describe('git over lighttpd (etc/lighttpd/git-fcgi.conf) and git-fcgi', () => {
  const suite = suiteCleanup(after);
  let account: Account | undefined;
  let fx: Fixtures;
  let daemon: GitFcgi;
  let sock: string;
  let users: string;
  let lighttpd: Lighttpd;
  let target: Target;
  const servers: Lighttpd[] = [];

  /** The shipped config for git-fcgi at `socket`, passwords in `htpasswd`. */
  const site = (socket: string, htpasswd: string): Promise<string> =>
    shippedConfig(SHIPPED, [
      ['"git.example.com"', '"127.0.0.1"'],
      ['/etc/lighttpd/git.htpasswd', htpasswd],
      ['"/srv/git"', `"${fx.root}"`],
      ['/run/git-fcgi/git-fcgi.sock', socket],
    ]);

  async function start(t: Cleanup, config: string): Promise<Lighttpd> {
    const server = await startLighttpd(t, { site: config, account });
    servers.push(server);
    return server;
  }

  /** git-fcgi on its own socket, with an ini file: export_all and `ini`. */
  async function startDaemon(t: Cleanup, ini: string): Promise<{ daemon: GitFcgi; socket: string }> {
    const socket = join(await reachableDir(t, 'sock-'), 'git-fcgi.sock');
    const file = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
    await writeFile(file, `[git]\nexport_all = true\n${ini}`);
    const started = await startGitFcgi(t, [
      '-c',
      file,
      '--listen',
      `unix:${socket}`,
      ...socketOwnerArgs(account),
    ]);
    return { daemon: started, socket };
  }

  before(async () => {
    account = await serviceAccount('www-data');
    fx = await createFixtures(suite, await tmpDir(suite, 'repos-'), await tmpDir(suite, 'work-'));
    ({ daemon, socket: sock } = await startDaemon(suite, TRUSTING_RULES));
    users = await readableHtpasswd(suite, { alice: ALICE.password });
    lighttpd = await start(suite, await site(sock, users));
    target = { t: suite, fx, base: lighttpd.url(''), daemon };
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped lighttpd and git-fcgi by now.
    for (const server of servers) await assertNoLighttpdProcesses(server, { withinMs: 5000 });
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
    assert.doesNotMatch(
      daemon.logs(),
      UNCHECKED_USER_WARNING,
      'lighttpd sends AUTH_TYPE with the users it checked: no forged-user warning',
    );
  });

  test('clone over protocol v2, verified in the packet trace', () => cloneV2(target));

  test('clone over protocol v0', () => cloneV0(target));

  test('shallow clone (--depth 1)', () => shallowClone(target));

  test('dumb HTTP (HEAD, info/refs, a GIT_SMART_HTTP=0 clone) and 404s', () => dumbAndNotFound(target));

  test('push as the user lighttpd authenticated; the reflog names them', () =>
    pushAsAlice(target, 'feature'));

  test('an anonymous push is challenged (401), so git asks for credentials', () =>
    anonymousPushAsksForLogin(target, 'anonymous'));

  test('a 30 MB incompressible push: sent chunked, spooled by lighttpd, passed on whole; fsck clean', async () => {
    const trace = await bigPush(target);
    // A body larger than http.postBuffer (1 MiB) goes out chunked; lighttpd answers it only because
    // server.stream-request-body is 0 (see the 411 test below).
    assert.match(
      trace,
      /=> Send header: POST \/big\.git\/git-receive-pack[\s\S]*?Transfer-Encoding: chunked/,
    );
  });

  test('a client that leaves mid-clone leaves no git process behind', () => disconnectMidClone(target));

  test("git-fcgi's ping and status answer this host only", () => pingAndStatusLocalOnly(target));

  test('forged Authorization headers never make a user; alice reads what only she may, and pushes', async (t) => {
    const table = await assertForgedUsersRefused(t, forgedUserTarget(fx, target.base), ALICE.password);
    t.diagnostic(table.join('; '));
    assert.doesNotMatch(daemon.logs(), /user=mallory/, 'no forged request reached git-fcgi as mallory');
  });

  test('git-fcgi checks the passwords ([auth] mode = htpasswd): the config without its 8< block', async (t) => {
    const gitFcgiUsers = await readableHtpasswd(t, { alice: ALICE.password });
    const checking = await startDaemon(
      t,
      `[auth]\nmode = htpasswd\nhtpasswd = ${gitFcgiUsers}\nrealm = Git\nmax_failures = 1000000\n${TRUSTING_RULES}`,
    );
    const config = withoutFrontEndAuth(await site(checking.socket, users));
    assert.doesNotMatch(config, /^\s*auth\.|REQUEST_HEADER/m, 'no auth directive left');
    const server = await start(t, config);
    const base = server.url('');
    await gitFcgiChecksPasswords({ t, fx, base, daemon: checking.daemon });
    await assertForgedUsersRefused(t, forgedUserTarget(fx, base), ALICE.password);
    assert.match(checking.daemon.logs(), /warn login failed .*user=mallory/);
  });

  test('trap: without "fix-root-scriptname" the path is split after its first segment', async (t) => {
    const server = await start(
      t,
      changeLine(await site(sock, users), /"fix-root-scriptname" => "enable"/, ''),
    );
    const base = server.url('');
    // /demo.git/info/refs arrives as SCRIPT_NAME=/demo.git, PATH_INFO=/info/refs: no repository (404) ...
    await assert.rejects(git(t, ['ls-remote', `${base}/demo.git`]), /404|not found/);
    // ... and git-fcgi says why, naming the fix.
    assert.match(
      daemon.logs(),
      /warn the front end put the repository into SCRIPT_NAME \(\/demo\.git\) and left PATH_INFO \/info\/refs: .*"fix-root-scriptname" => "enable"/,
    );
    // /team/app.git/info/refs arrives as SCRIPT_NAME=/team, PATH_INFO=/app.git/info/refs: another repository.
    const { stdout } = await git(t, ['ls-remote', `${base}/team/app.git`, 'refs/heads/main']);
    assert.equal(stdout.toString().trim(), `${fx.appHead}\trefs/heads/main`);
    assert.notEqual(fx.appHead, fx.teamAppHead);
    // The shipped config serves each as itself.
    const right = await git(t, ['ls-remote', `${lighttpd.url('')}/team/app.git`, 'refs/heads/main']);
    assert.equal(right.stdout.toString().trim(), `${fx.teamAppHead}\trefs/heads/main`);
  });

  test('trap: without "check-local" => "disable" lighttpd looks for the path as a file (404)', async (t) => {
    const before = daemon.logs().length;
    const server = await start(t, changeLine(await site(sock, users), /"check-local" => "disable"/, ''));
    await assert.rejects(git(t, ['ls-remote', `${server.url('')}/demo.git`]), /404|not found/);
    assert.doesNotMatch(daemon.logs().slice(before), /repo=demo\.git/, 'the request never reached git-fcgi');
  });

  test('limit: server.stream-request-body = 2 answers 411 to a chunked push; with Content-Length it streams', async (t) => {
    const streaming = changeLine(
      await site(sock, users),
      /^\s*server\.stream-request-body = 0$/,
      '    server.stream-request-body = 2',
    );
    const server = await start(t, streaming);
    const base = server.url('');
    const dir = join(fx.work, 'chunked');
    await git(t, ['clone', '-q', `${base}/demo.git`, dir]);
    await writeFile(join(dir, 'two-mb.bin'), randomBytes(2 * 1024 * 1024));
    await git(t, ['add', '-A'], { cwd: dir });
    await git(t, ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '-m', 'chunked'], {
      cwd: dir,
    });
    const commit = await revParse(t, dir, 'HEAD');
    // Over http.postBuffer (1 MiB): git sends the pack chunked, and lighttpd refuses it for FastCGI.
    await assert.rejects(
      git(t, ['push', '-q', `${withLogin(base)}/demo.git`, 'HEAD:refs/heads/chunked'], { cwd: dir }),
      /HTTP 411/,
    );
    // A postBuffer larger than the pack makes git send Content-Length: then lighttpd streams it.
    await git(
      t,
      [
        '-c',
        'http.postBuffer=16777216',
        'push',
        '-q',
        `${withLogin(base)}/demo.git`,
        'HEAD:refs/heads/chunked',
      ],
      { cwd: dir },
    );
    assert.equal(await revParse(t, join(fx.root, 'demo.git'), 'refs/heads/chunked'), commit);
  });
});
