import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { UNCHECKED_USER_WARNING, assertForgedUsersRefused } from '../helpers/forged-user.js';
import {
  ALICE,
  TRUSTING_RULES,
  anonymousPushAsksForLogin,
  basic,
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
  shallowClone,
  status,
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
import { assertNoH2oProcesses, startH2o, type H2o, type H2oPlaces } from '../helpers/h2o.js';
import { htpasswd } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { changeLine, shippedConfig, withoutFrontEndAuth } from '../helpers/shipped-config.js';
import { tmpDir } from '../helpers/tmp.js';

const SHIPPED = 'h2o/git-fcgi.conf';

/**
 * Real git clients through real h2o 2.2 (its fastcgi handler) started from etc/h2o/git-fcgi.conf, changed only
 * in what its comments mark CHANGE (paths) and where it listens and writes its files, to git http-backend via
 * git-fcgi.
 */
describe('git over h2o (etc/h2o/git-fcgi.conf) and git-fcgi', () => {
  const suite = suiteCleanup(after);
  let account: Account | undefined;
  let fx: Fixtures;
  let daemon: GitFcgi;
  let sock: string;
  let users: string;
  let h2o: H2o;
  let target: Target;
  const servers: H2o[] = [];

  /** The shipped config for git-fcgi at `socket`, passwords in `htpasswdFile`, listening and writing where told. */
  const config = async (socket: string, htpasswdFile: string): Promise<(places: H2oPlaces) => string> => {
    const text = await shippedConfig(SHIPPED, [
      ['/etc/h2o/git.htpasswd', htpasswdFile],
      ['/srv/git', fx.root],
      ['/run/git-fcgi/git-fcgi.sock', socket],
    ]);
    // Run by someone else than root, h2o stays that user: then there is no `user` to switch to.
    const asWho = account === undefined ? changeLine(text, /^user: debian-h2o$/, '') : text;
    return (places) =>
      changeLine(
        changeLine(
          changeLine(
            changeLine(asWho, /^pid-file: \/run\/h2o\.pid$/, `pid-file: ${places.pidFile}`),
            /^error-log: \/var\/log\/h2o\/error\.log$/,
            `error-log: ${places.errorLog}`,
          ),
          /^access-log: \/var\/log\/h2o\/access\.log$/,
          `access-log: ${places.accessLog}`,
        ),
        /^ {2}port: 80$/,
        `  host: 127.0.0.1\n  port: ${places.port}`,
      );
  };

  async function start(t: Cleanup, render: (places: H2oPlaces) => string): Promise<H2o> {
    const server = await startH2o(t, { config: render, account });
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
    account = await serviceAccount('debian-h2o');
    fx = await createFixtures(suite, await tmpDir(suite, 'repos-'), await tmpDir(suite, 'work-'));
    ({ daemon, socket: sock } = await startDaemon(suite, TRUSTING_RULES));
    // {SHA}: the only kind h2o's htpasswd.rb accepts (see the test below).
    users = await readableHtpasswd(suite, { alice: ALICE.password }, 's');
    h2o = await start(suite, await config(sock, users));
    target = { t: suite, fx, base: h2o.url(''), daemon };
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped h2o and git-fcgi by now.
    for (const server of servers) await assertNoH2oProcesses(server, { withinMs: 5000 });
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
    // The suite reads secret.git as alice and demo.git anonymously through the same h2o: the warning's
    // conditions, but for AUTH_TYPE (see the trap below).
    assert.doesNotMatch(
      daemon.logs(),
      UNCHECKED_USER_WARNING,
      'the config sends AUTH_TYPE with the users h2o checked: no forged-user warning',
    );
  });

  test('clone over protocol v2, verified in the packet trace', () => cloneV2(target));

  test('clone over protocol v0', () => cloneV0(target));

  test('shallow clone (--depth 1)', () => shallowClone(target));

  test('dumb HTTP (HEAD, info/refs, a GIT_SMART_HTTP=0 clone) and 404s', () => dumbAndNotFound(target));

  test('push as the user h2o authenticated; the reflog names them', () => pushAsAlice(target, 'feature'));

  test('an anonymous push is challenged (401), so git asks for credentials', () =>
    anonymousPushAsksForLogin(target, 'anonymous'));

  test('a 30 MB incompressible push: sent chunked, received whole by h2o, passed on; fsck clean', async () => {
    const trace = await bigPush(target);
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

  test("trap: without the AUTH_TYPE line git-fcgi takes alice's checked read for a forged one and warns", async (t) => {
    const own = await startDaemon(t, TRUSTING_RULES);
    const render = await config(own.socket, users);
    const server = await start(t, (places) => changeLine(render(places), /x-fallthru-set-AUTH_TYPE/, ''));
    const refs = (repo: string): string => server.url(`/${repo}/info/refs?service=git-upload-pack`);
    assert.equal(await status(refs('demo.git')), 200);
    const login = { headers: { authorization: basic('alice', ALICE.password) } };
    assert.equal(await status(refs('secret.git'), login), 200, 'alice, checked by h2o');
    const warnings = own.daemon.logs().match(/warn REMOTE_USER came on a read without AUTH_TYPE.*/g) ?? [];
    assert.equal(warnings.length, 1, own.daemon.logs());
    assert.match(warnings[0] ?? '', / user=alice/);
  });

  test('git-fcgi checks the passwords ([auth] mode = htpasswd): the config without its 8< block', async (t) => {
    const gitFcgiUsers = await readableHtpasswd(t, { alice: ALICE.password });
    const checking = await startDaemon(
      t,
      `[auth]\nmode = htpasswd\nhtpasswd = ${gitFcgiUsers}\nrealm = Git\nmax_failures = 1000000\n${TRUSTING_RULES}`,
    );
    const render = await config(checking.socket, users);
    const server = await start(t, (places) => {
      const text = withoutFrontEndAuth(render(places));
      assert.doesNotMatch(text, /require "htpasswd\.rb"|x-fallthru-set/, 'no auth handler left');
      return text;
    });
    const base = server.url('');
    await gitFcgiChecksPasswords({ t, fx, base, daemon: checking.daemon });
    await assertForgedUsersRefused(t, forgedUserTarget(fx, base), ALICE.password);
    assert.match(checking.daemon.logs(), /warn login failed .*user=mallory/);
  });

  test("trap: h2o's htpasswd.rb rejects correct apr1 passwords and answers 500 to bcrypt; {SHA} works", async (t) => {
    // htpasswd.rb reads the file on every request: one server, the file rewritten between requests.
    const dir = await reachableDir(t, 'h2o-htpasswd-');
    const file = join(dir, 'kinds');
    const server = await start(t, await config(sock, file));
    const push = server.url('/demo.git/info/refs?service=git-receive-pack');
    const answer = async (scheme: 'm' | 'B' | 's', password: string): Promise<number> => {
      const made = await htpasswd(t, await reachableDir(t, 'h2o-kind-'), { alice: ALICE.password }, scheme);
      await writeFile(file, await readFile(made), { mode: 0o644 });
      return status(push, { headers: { authorization: basic('alice', password) } });
    };
    assert.equal(await answer('m', ALICE.password), 401, 'apr1 (htpasswd -m, its default): refused');
    assert.equal(await answer('B', ALICE.password), 500, 'bcrypt (htpasswd -B): error');
    assert.equal(await answer('s', ALICE.password), 200, '{SHA} (htpasswd -s): accepted');
    assert.equal(await answer('s', 'wrong'), 401, '{SHA}, wrong password: refused');
    assert.match(await server.errorLog(), /crypt-style password hash is not supported/);
  });
});
