import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  BACKEND_PATH,
  buildBackendEnv,
  reservedEnvName,
  type BackendEnvOptions,
} from '../../../src/request/cgi-env.js';

const options: BackendEnvOptions = {
  projectRoot: '/srv/git',
  exportAll: false,
  pathInfo: '/team/app.git/info/refs',
  requestId: 'req1',
  maxRequestBufferBytes: null,
  gitConfig: [],
  serverSoftware: 'git-fcgi/test',
  home: null,
  adminEnv: {},
};

/** Params as nginx sends them with `include fastcgi_params` and our location block. */
const nginxParams = new Map([
  ['QUERY_STRING', 'service=git-upload-pack'],
  ['REQUEST_METHOD', 'GET'],
  ['CONTENT_TYPE', ''],
  ['CONTENT_LENGTH', ''],
  ['SCRIPT_NAME', '/team/app.git/info/refs'],
  ['SCRIPT_FILENAME', '/usr/bin/evil'],
  ['REQUEST_URI', '/team/app.git/info/refs?service=git-upload-pack'],
  ['DOCUMENT_URI', '/team/app.git/info/refs'],
  ['DOCUMENT_ROOT', '/usr/share/nginx/html'],
  ['SERVER_PROTOCOL', 'HTTP/1.1'],
  ['REMOTE_ADDR', '192.0.2.7'],
  ['REMOTE_PORT', '51234'],
  ['SERVER_NAME', 'git.example.com'],
  ['REMOTE_USER', ''],
  ['GIT_PROTOCOL', 'version=2'],
  ['HTTP_USER_AGENT', 'git/2.39.5'],
  ['HTTP_GIT_PROTOCOL', 'version=2'],
  ['HTTP_PROXY', 'http://evil:3128'],
  ['HTTP_AUTHORIZATION', 'Basic YTpi'],
  ['HTTP_COOKIE', 'session=1'],
  ['LD_PRELOAD', '/tmp/evil.so'],
  ['GIT_CONFIG_PARAMETERS', "'core.fsmonitor=evil'"],
]);

describe('buildBackendEnv', () => {
  test('copies the CGI variables and headers, and nothing else', () => {
    const env = buildBackendEnv(nginxParams, options);
    assert.deepEqual(env, {
      PATH: BACKEND_PATH,
      LC_ALL: 'C',
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_SOFTWARE: 'git-fcgi/test',
      PATH_INFO: '/team/app.git/info/refs',
      GIT_PROJECT_ROOT: '/srv/git',
      GIT_FCGI_REQUEST_ID: 'req1',
      REQUEST_METHOD: 'GET',
      QUERY_STRING: 'service=git-upload-pack',
      SERVER_PROTOCOL: 'HTTP/1.1',
      SERVER_NAME: 'git.example.com',
      REMOTE_ADDR: '192.0.2.7',
      REMOTE_PORT: '51234',
      REQUEST_URI: '/team/app.git/info/refs?service=git-upload-pack',
      SCRIPT_NAME: '/team/app.git/info/refs',
      HTTP_USER_AGENT: 'git/2.39.5',
      HTTP_GIT_PROTOCOL: 'version=2',
      GIT_PROTOCOL: 'version=2',
    });
  });

  test('never passes httpoxy, credentials, SCRIPT_FILENAME or non-CGI params', () => {
    const env = buildBackendEnv(nginxParams, options);
    for (const name of [
      'HTTP_PROXY',
      'HTTP_AUTHORIZATION',
      'HTTP_COOKIE',
      'SCRIPT_FILENAME',
      'LD_PRELOAD',
      'GIT_CONFIG_PARAMETERS',
      'DOCUMENT_ROOT',
    ]) {
      assert.equal(env[name], undefined, name);
    }
  });

  test('an empty REMOTE_USER is no user; a real one passes', () => {
    assert.equal(buildBackendEnv(nginxParams, options).REMOTE_USER, undefined);
    const params = new Map([...nginxParams, ['REMOTE_USER', 'alice']]);
    assert.equal(buildBackendEnv(params, options).REMOTE_USER, 'alice');
  });

  test('GIT_HTTP_EXPORT_ALL: from the option, or from the presence of the param (even empty)', () => {
    assert.equal(buildBackendEnv(nginxParams, options).GIT_HTTP_EXPORT_ALL, undefined);
    assert.equal(buildBackendEnv(nginxParams, { ...options, exportAll: true }).GIT_HTTP_EXPORT_ALL, '1');
    const params = new Map([...nginxParams, ['GIT_HTTP_EXPORT_ALL', '']]);
    assert.equal(buildBackendEnv(params, options).GIT_HTTP_EXPORT_ALL, '1');
  });

  test('GIT_PROTOCOL: the param, else the header; malformed values dropped', () => {
    const headerOnly = new Map([...nginxParams].filter(([k]) => k !== 'GIT_PROTOCOL'));
    assert.equal(buildBackendEnv(headerOnly, options).GIT_PROTOCOL, 'version=2');
    const badHeader = new Map([...headerOnly, ['HTTP_GIT_PROTOCOL', 'version=2\nX=1']]);
    assert.equal(buildBackendEnv(badHeader, options).GIT_PROTOCOL, undefined);
    assert.equal(buildBackendEnv(badHeader, options).HTTP_GIT_PROTOCOL, undefined);
    // A malformed param is still the front end's word: protocol v0, not the header.
    const badParam = new Map([...nginxParams, ['GIT_PROTOCOL', 'version=2\nX=1']]);
    assert.equal(buildBackendEnv(badParam, options).GIT_PROTOCOL, '');
  });

  test('an empty GIT_PROTOCOL param forces protocol v0, whatever the Git-Protocol header says', () => {
    const forced = new Map([...nginxParams, ['GIT_PROTOCOL', '']]);
    const env = buildBackendEnv(forced, options);
    assert.equal(env.GIT_PROTOCOL, '');
    assert.equal(env.HTTP_GIT_PROTOCOL, 'version=2', 'git http-backend sees both, and keeps GIT_PROTOCOL');
  });

  test("git's variables from the front end pass as they come, empty ones included", () => {
    const params = new Map([
      ...nginxParams,
      ['GIT_COMMITTER_NAME', 'Push Bot'],
      ['GIT_COMMITTER_EMAIL', ''],
      ['GIT_NAMESPACE', 'tenant'],
      ['GIT_HTTP_MAX_REQUEST_BUFFER', '20M'],
    ]);
    const env = buildBackendEnv(params, { ...options, maxRequestBufferBytes: 1024 });
    assert.equal(env.GIT_COMMITTER_NAME, 'Push Bot');
    assert.equal(env.GIT_COMMITTER_EMAIL, '');
    assert.equal(env.GIT_NAMESPACE, 'tenant');
    assert.equal(env.GIT_HTTP_MAX_REQUEST_BUFFER, '20M', "the location's value over the daemon-wide setting");
    // Never from request headers: a client's header is HTTP_*, which git does not read as these.
    const fromHeaders = buildBackendEnv(new Map([['HTTP_GIT_COMMITTER_NAME', 'Mallory']]), options);
    assert.equal(fromHeaders.GIT_COMMITTER_NAME, undefined);
  });

  test("HOME and the admin's [env]: HOME when given, [env] before the request's variables", () => {
    assert.equal(buildBackendEnv(nginxParams, options).HOME, undefined);
    const env = buildBackendEnv(nginxParams, {
      ...options,
      home: '/var/lib/git',
      adminEnv: { GNUPGHOME: '/etc/git-fcgi/gnupg', PATH: '/opt/hooks/bin:/usr/bin:/bin' },
    });
    assert.equal(env.HOME, '/var/lib/git');
    assert.equal(env.GNUPGHOME, '/etc/git-fcgi/gnupg');
    assert.equal(env.PATH, '/opt/hooks/bin:/usr/bin:/bin');
    assert.equal(env.LC_ALL, 'C');
  });

  test('[env] may not set what git-fcgi sets per request or what would move the repository', () => {
    for (const name of [
      'HOME',
      'GIT_PROJECT_ROOT',
      'PATH_INFO',
      'REMOTE_USER',
      'REQUEST_METHOD',
      'HTTP_HOST',
      'GIT_PROTOCOL',
      'GIT_COMMITTER_NAME',
      'GIT_CONFIG_COUNT',
      'GIT_CONFIG_KEY_0',
      'GIT_FCGI_USER',
      'GIT_DIR',
      'GIT_OBJECT_DIRECTORY',
      'GIT_HTTP_EXPORT_ALL',
    ]) {
      assert.notEqual(reservedEnvName(name), null, name);
    }
    for (const name of ['GNUPGHOME', 'PATH', 'LC_ALL', 'TZ', 'GIT_TRACE', 'GIT_CONFIG_NOSYSTEM']) {
      assert.equal(reservedEnvName(name), null, name);
    }
  });

  test('CONTENT_LENGTH only when it is a number', () => {
    assert.equal(buildBackendEnv(new Map([['CONTENT_LENGTH', '123']]), options).CONTENT_LENGTH, '123');
    assert.equal(buildBackendEnv(new Map([['CONTENT_LENGTH', '-1']]), options).CONTENT_LENGTH, undefined);
  });

  test('git settings go through GIT_CONFIG_COUNT/KEY/VALUE; the request buffer through its variable', () => {
    const env = buildBackendEnv(new Map(), {
      ...options,
      maxRequestBufferBytes: 1024,
      gitConfig: [
        ['http.receivepack', 'true'],
        ['receive.maxInputSize', '1000'],
      ],
    });
    assert.equal(env.GIT_HTTP_MAX_REQUEST_BUFFER, '1024');
    assert.equal(env.GIT_CONFIG_COUNT, '2');
    assert.equal(env.GIT_CONFIG_KEY_0, 'http.receivepack');
    assert.equal(env.GIT_CONFIG_VALUE_1, '1000');
  });
});
