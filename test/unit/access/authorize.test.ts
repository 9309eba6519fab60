import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AccessDenied } from '../../../src/access/access-error.js';
import { Authorizer } from '../../../src/access/authorize.js';
import type { Logger } from '../../../src/log.js';
import { buildBackendEnv } from '../../../src/request/cgi-env.js';
import { parseGitTarget } from '../../../src/request/repo-path.js';
import { accessFrom } from './access-from.js';

const quiet: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  child: () => quiet,
  access: () => undefined,
  isDebug: () => false,
};

const RULES = `
[groups]
devs = bob
[repo:team/*]
read = @devs
write = @devs
[repo:open/*]
write = anonymous
`;
// No Authorization header reaches the htpasswd file in these tests: the path is never read.
const HTPASSWD = `[auth]\nmode = htpasswd\nhtpasswd = /nonexistent/htpasswd\nrealm = R\n${RULES}`;

const pushRefs = (repo: string) => parseGitTarget(`/${repo}/info/refs`, 'service=git-receive-pack', 'GET');
const params = (entries: Record<string, string>) =>
  new Map(Object.entries({ REMOTE_ADDR: '10.0.0.9', ...entries }));

describe('Authorizer', () => {
  it("nginx mode: REMOTE_USER is the user; an allowed push gets the hook variables and nothing that turns git's services on", async () => {
    const settings = { access: accessFrom(RULES), configFile: '/etc/git-fcgi.ini' };
    const grant = await new Authorizer(quiet).authorize(
      settings,
      pushRefs('team/a.git'),
      params({ REMOTE_USER: 'bob' }),
      quiet,
    );
    assert.equal(grant.user, 'bob');
    assert.equal('gitConfig' in grant, false, 'no http.receivepack: the repository config still decides');
    assert.deepEqual(grant.env, {
      GIT_FCGI_USER: 'bob',
      GIT_FCGI_GROUPS: 'devs',
      GIT_FCGI_REPO: 'team/a.git',
      GIT_FCGI_CONFIG: '/etc/git-fcgi.ini',
    });
  });

  it('htpasswd mode: REMOTE_USER from the front end is ignored', async () => {
    const settings = { access: accessFrom(HTPASSWD), configFile: null };
    await assert.rejects(
      new Authorizer(quiet).authorize(
        settings,
        pushRefs('team/a.git'),
        params({ REMOTE_USER: 'bob' }),
        quiet,
      ),
      (err: unknown) => {
        assert.ok(err instanceof AccessDenied);
        assert.equal(err.status, 401);
        assert.deepEqual(err.headers, [['WWW-Authenticate', 'Basic realm="R", charset="UTF-8"']]);
        return true;
      },
    );
    const grant = await new Authorizer(quiet).authorize(
      settings,
      pushRefs('open/a.git'),
      params({ REMOTE_USER: 'bob' }),
      quiet,
    );
    assert.equal(grant.user, null, 'anonymous, whatever nginx said');
    assert.equal(grant.remoteUser, null);
    assert.equal('gitConfig' in grant, false, "an anonymous push still needs git's own http.receivepack");
  });

  it('htpasswd mode: a malformed Authorization header is a failed login', async () => {
    const settings = { access: accessFrom(HTPASSWD), configFile: null };
    await assert.rejects(
      new Authorizer(quiet).authorize(
        settings,
        pushRefs('open/a.git'),
        params({ HTTP_AUTHORIZATION: 'Basic !!' }),
        quiet,
      ),
      (err: unknown) => err instanceof AccessDenied && err.status === 401,
    );
  });

  it('without [repo:…] sections nothing is decided here: the front end REMOTE_USER passes through', async () => {
    const settings = { access: accessFrom(''), configFile: null };
    const grant = await new Authorizer(quiet).authorize(
      settings,
      pushRefs('x.git'),
      params({ REMOTE_USER: 'eve' }),
      quiet,
    );
    assert.equal(grant.remoteUser, undefined);
    assert.equal(grant.env.GIT_FCGI_USER, 'eve');
  });
});

describe('buildBackendEnv with a grant', () => {
  const base = {
    projectRoot: '/srv/git',
    exportAll: false,
    pathInfo: '/open/a.git/info/refs',
    requestId: 'r1',
    maxRequestBufferBytes: null,
    serverSoftware: 'git-fcgi/test',
    home: null,
    adminEnv: {},
  };
  const front = params({
    REMOTE_USER: 'forged',
    HTTP_AUTHORIZATION: 'Basic Ym9iOnB3',
    HTTP_USER_AGENT: 'git/2.39',
  });

  it('replaces REMOTE_USER (null removes it), adds the hook variables and GIT_CONFIG_*, never the credentials', () => {
    const env = buildBackendEnv(front, {
      ...base,
      gitConfig: [['http.receivepack', 'true']],
      remoteUser: null,
      extraEnv: { GIT_FCGI_USER: '', GIT_FCGI_REPO: 'open/a.git' },
    });
    assert.equal(env.REMOTE_USER, undefined);
    assert.equal(env.HTTP_AUTHORIZATION, undefined);
    assert.equal(env.HTTP_USER_AGENT, 'git/2.39');
    assert.equal(env.GIT_FCGI_REPO, 'open/a.git');
    assert.equal(env.GIT_FCGI_REQUEST_ID, 'r1');
    assert.deepEqual(
      [env.GIT_CONFIG_COUNT, env.GIT_CONFIG_KEY_0, env.GIT_CONFIG_VALUE_0],
      ['1', 'http.receivepack', 'true'],
    );
    const named = buildBackendEnv(front, { ...base, gitConfig: [], remoteUser: 'bob' });
    assert.equal(named.REMOTE_USER, 'bob');
  });

  it('keeps the front end REMOTE_USER when no grant replaces it', () => {
    assert.equal(buildBackendEnv(front, { ...base, gitConfig: [] }).REMOTE_USER, 'forged');
  });
});
