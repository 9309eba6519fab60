import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BACKEND_PATH, buildBackendEnv, type BackendEnvOptions } from '../../../src/request/cgi-env.js';

const options: BackendEnvOptions = {
  projectRoot: '/srv/git',
  exportAll: false,
  pathInfo: '/team/app.git/info/refs',
  requestId: 'req1',
  maxRequestBufferBytes: null,
  gitConfig: [],
  serverSoftware: 'git-fcgi/test',
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

  test('GIT_PROTOCOL: the param, else the header; malformed values dropped entirely', () => {
    const headerOnly = new Map([...nginxParams].filter(([k]) => k !== 'GIT_PROTOCOL'));
    assert.equal(buildBackendEnv(headerOnly, options).GIT_PROTOCOL, 'version=2');
    const bad = new Map([
      ...nginxParams,
      ['GIT_PROTOCOL', 'version=2\nX=1'],
      ['HTTP_GIT_PROTOCOL', 'version=2\nX=1'],
    ]);
    const env = buildBackendEnv(bad, options);
    assert.equal(env.GIT_PROTOCOL, undefined);
    assert.equal(env.HTTP_GIT_PROTOCOL, undefined);
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
