import assert from 'node:assert/strict';
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
  shallowClone,
  type Fixtures,
  type Target,
} from '../helpers/front-end-cases.js';
import { htpasswd, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import {
  basicAuth,
  fastcgiParamsWithoutRemoteUser,
  shippedNginx,
  shippedNginxConfig,
} from '../helpers/shipped-nginx.js';
import { tmpDir } from '../helpers/tmp.js';

/**
 * Real git clients through real nginx started from etc/nginx/git-fcgi.conf, changed only in what its comments
 * mark CHANGE (paths; the harness picks the listen address), to git http-backend via git-fcgi, whose rules
 * trust nginx's REMOTE_USER (mode = nginx). Debian's fastcgi_params sends `REMOTE_USER $remote_user` itself,
 * nginx's own does not: the config must be right with either, so one server of each runs.
 */
describe('git over nginx (etc/nginx/git-fcgi.conf) and git-fcgi', () => {
  const suite = suiteCleanup(after);
  let fx: Fixtures;
  let daemon: GitFcgi;
  let sock: string;
  let users: string;
  let nginx: Nginx;
  let target: Target;

  /** git-fcgi on its own socket, with an ini file: export_all and `ini`. */
  async function startDaemon(t: Cleanup, ini: string): Promise<{ daemon: GitFcgi; socket: string }> {
    const socket = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
    const file = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
    await writeFile(file, `[git]\nexport_all = true\n${ini}`);
    return { daemon: await startGitFcgi(t, ['-c', file, '--listen', `unix:${socket}`]), socket };
  }

  before(async () => {
    fx = await createFixtures(suite, await tmpDir(suite, 'repos-'), await tmpDir(suite, 'work-'));
    ({ daemon, socket: sock } = await startDaemon(suite, TRUSTING_RULES));
    users = await htpasswd(suite, await tmpDir(suite, 'users-'), { alice: ALICE.password });
    const common = { root: fx.root, htpasswd: users, socket: sock } as const;
    const debian = await shippedNginx(common);
    const own = await shippedNginx({
      ...common,
      fastcgiParams: await fastcgiParamsWithoutRemoteUser(suite),
      upstreamSuffix: 'own',
    });
    nginx = await startNginx(suite, shippedNginxConfig([debian, own]));
    target = { t: suite, fx, base: nginx.url(0, ''), daemon };
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped nginx and git-fcgi by now.
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
    assert.doesNotMatch(daemon.logs(), UNCHECKED_USER_WARNING, 'the example raises no forged-user warning');
  });

  test('clone over protocol v2, verified in the packet trace', () => cloneV2(target));

  test('clone over protocol v0', () => cloneV0(target));

  test('shallow clone (--depth 1)', () => shallowClone(target));

  test('dumb HTTP (HEAD, info/refs, a GIT_SMART_HTTP=0 clone) and 404s', () => dumbAndNotFound(target));

  test('push as the user nginx authenticated; the reflog names them', () => pushAsAlice(target, 'feature'));

  test('an anonymous push is challenged (401), so git asks for credentials', () =>
    anonymousPushAsksForLogin(target, 'anonymous'));

  test('a 30 MB incompressible push, streamed chunked; fsck clean', async () => {
    const trace = await bigPush(target);
    assert.match(
      trace,
      /=> Send header: POST \/big\.git\/git-receive-pack[\s\S]*?Transfer-Encoding: chunked/,
    );
  });

  test('a client that leaves mid-clone leaves no git process behind', () => disconnectMidClone(target));

  test("git-fcgi's ping and status answer this host only", () => pingAndStatusLocalOnly(target));

  for (const [index, which] of ["Debian's", "nginx's own"].entries()) {
    test(`forged Authorization headers never make a user, with ${which} fastcgi_params`, async (t) => {
      const table = await assertForgedUsersRefused(
        t,
        forgedUserTarget(fx, nginx.url(index, '')),
        ALICE.password,
      );
      t.diagnostic(table.join('; '));
    });
  }

  test('git-fcgi checks the passwords ([auth] mode = htpasswd): the config without its 8< block', async (t) => {
    const checking = await startDaemon(
      t,
      `[auth]\nmode = htpasswd\nhtpasswd = ${users}\nrealm = Git\nmax_failures = 1000000\n${TRUSTING_RULES}`,
    );
    const shipped = await shippedNginx({
      root: fx.root,
      htpasswd: users,
      socket: checking.socket,
      variant: 'htpasswd',
    });
    assert.doesNotMatch(shipped.server, /auth_basic|AUTH_TYPE/, 'no auth directive left');
    const server = await startNginx(t, shippedNginxConfig([shipped]));
    const base = server.url(0, '');
    await gitFcgiChecksPasswords({ t, fx, base, daemon: checking.daemon });
    await assertForgedUsersRefused(t, forgedUserTarget(fx, base), ALICE.password);
    assert.match(checking.daemon.logs(), /warn login failed .*user=mallory/);
  });

  /**
   * The example as it was before it checked every Authorization header: auth_basic for pushes only, and
   * REMOTE_USER passed for every request. git-fcgi cannot stop that forged read, but it tells the admin,
   * once, when it sees an unchecked REMOTE_USER next to anonymous requests from the same front end.
   */
  test('trap: with auth on pushes only, a forged header reads; git-fcgi warns once, naming the fix', async (t) => {
    const own = await startDaemon(t, TRUSTING_RULES);
    const shipped = await shippedNginx({ root: fx.root, htpasswd: users, socket: own.socket });
    const old = shipped.server
      .replace(/^\s*if \(\$http_authorization\).*\n/m, '')
      .replace(/^\s*fastcgi_param AUTH_TYPE .*\n/m, '');
    assert.notEqual(old, shipped.server);
    const server = await startNginx(t, shippedNginxConfig([{ ...shipped, server: old }]));
    const get = async (path: string, headers: Record<string, string> = {}): Promise<number> => {
      const res = await fetch(server.url(0, path), { headers });
      await res.arrayBuffer();
      return res.status;
    };
    const refs = '/demo.git/info/refs?service=git-upload-pack';
    assert.equal(await get(refs), 200);
    assert.doesNotMatch(own.daemon.logs(), UNCHECKED_USER_WARNING);
    const forged = basicAuth('alice', 'wrong');
    assert.equal(await get('/secret.git/info/refs?service=git-upload-pack', forged), 200, 'the trap');
    for (let i = 0; i < 3; i++) {
      assert.equal(await get(refs), 200);
      assert.equal(await get(refs, forged), 200);
    }
    const warnings = own.daemon.logs().match(/warn REMOTE_USER came on a read without AUTH_TYPE.*/g) ?? [];
    assert.equal(warnings.length, 1, own.daemon.logs());
    t.diagnostic(warnings[0] ?? '');
    const frontEnd = `front_end=127\\.0\\.0\\.1:${server.ports[0]} user=alice`;
    assert.match(warnings[0] ?? '', new RegExp(frontEnd));
    assert.match(warnings[0] ?? '', /etc\/nginx\/git-fcgi\.conf/);
  });
});
