import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  apacheHtpasswd,
  apacheReachableDir,
  assertNoApacheProcesses,
  socketOwnerArgs,
  startApache,
  type Apache,
} from '../helpers/apache.js';
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
import { assertNoGitProcesses } from '../helpers/proc.js';
import { shippedApache } from '../helpers/shipped-apache.js';
import { tmpDir } from '../helpers/tmp.js';

/**
 * Real git clients through real Apache 2.4 (mod_proxy_fcgi) started from etc/apache/git-fcgi.conf, changed
 * only in what its comments mark CHANGE (paths; the harness adds Listen, the VirtualHost address, LoadModule
 * and User lines), to git http-backend via git-fcgi, whose rules trust Apache's REMOTE_USER (mode = nginx).
 */
describe('git over Apache (etc/apache/git-fcgi.conf) and git-fcgi', () => {
  const suite = suiteCleanup(after);
  let fx: Fixtures;
  let daemon: GitFcgi;
  let users: string;
  let target: Target;
  const servers: Apache[] = [];

  /** git-fcgi on a socket Apache's children can reach, with an ini file: export_all and `ini`. */
  async function startDaemon(t: Cleanup, ini: string): Promise<{ daemon: GitFcgi; socket: string }> {
    const socket = join(await apacheReachableDir(t, 'sock-'), 'git-fcgi.sock');
    const file = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
    await writeFile(file, `[git]\nexport_all = true\n${ini}`);
    const started = await startGitFcgi(t, ['-c', file, '--listen', `unix:${socket}`, ...socketOwnerArgs()]);
    return { daemon: started, socket };
  }

  async function start(t: Cleanup, body: string): Promise<Apache> {
    const server = await startApache(t, { vhosts: [{ body }] });
    servers.push(server);
    return server;
  }

  before(async () => {
    fx = await createFixtures(suite, await tmpDir(suite, 'repos-'), await tmpDir(suite, 'work-'));
    const started = await startDaemon(suite, TRUSTING_RULES);
    daemon = started.daemon;
    users = await apacheHtpasswd(suite, { alice: ALICE.password });
    const apache = await start(
      suite,
      await shippedApache({ root: fx.root, htpasswd: users, socket: started.socket }),
    );
    target = { t: suite, fx, base: apache.url(0, ''), daemon };
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped Apache and git-fcgi by now.
    for (const server of servers) await assertNoApacheProcesses(server, { withinMs: 5000 });
    await assertNoGitProcesses(fx.root, { withinMs: 5000 });
    assert.doesNotMatch(
      daemon.logs(),
      UNCHECKED_USER_WARNING,
      'Apache sends AUTH_TYPE with the users it checked: no forged-user warning',
    );
  });

  test('clone over protocol v2, verified in the packet trace', () => cloneV2(target));

  test('clone over protocol v0', () => cloneV0(target));

  test('shallow clone (--depth 1)', () => shallowClone(target));

  test('dumb HTTP (HEAD, info/refs, a GIT_SMART_HTTP=0 clone) and 404s', () => dumbAndNotFound(target));

  test('push as the user Apache authenticated; the reflog names them', () => pushAsAlice(target, 'feature'));

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

  test('forged Authorization headers never make a user', async (t) => {
    const table = await assertForgedUsersRefused(t, forgedUserTarget(fx, target.base), ALICE.password);
    t.diagnostic(table.join('; '));
    assert.doesNotMatch(daemon.logs(), /user=mallory/, 'no forged request reached git-fcgi as mallory');
  });

  test('git-fcgi checks the passwords ([auth] mode = htpasswd): the config without its 8< block', async (t) => {
    const checking = await startDaemon(
      t,
      `[auth]\nmode = htpasswd\nhtpasswd = ${users}\nrealm = Git\nmax_failures = 1000000\n${TRUSTING_RULES}`,
    );
    const body = await shippedApache({
      root: fx.root,
      htpasswd: users,
      socket: checking.socket,
      variant: 'htpasswd',
    });
    assert.doesNotMatch(body, /^\s*Auth/m, 'no auth directive left');
    assert.match(body, /^\s*CGIPassAuth On$/m, 'the Authorization header reaches git-fcgi');
    const server = await start(t, body);
    const base = server.url(0, '');
    await gitFcgiChecksPasswords({ t, fx, base, daemon: checking.daemon });
    await assertForgedUsersRefused(t, forgedUserTarget(fx, base), ALICE.password);
    assert.match(checking.daemon.logs(), /warn login failed .*user=mallory/);
  });
});
