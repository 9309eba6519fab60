import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Authorizer } from '../../../src/access/authorize.js';
import { UncheckedUserWatch } from '../../../src/access/unchecked-user-watch.js';
import type { Logger, LogMeta } from '../../../src/log.js';
import { parseGitTarget } from '../../../src/request/repo-path.js';
import { accessFrom } from './access-from.js';

/** A logger that keeps its warnings. */
function recording(): { log: Logger; warnings: Array<{ message: string; meta: LogMeta | undefined }> } {
  const warnings: Array<{ message: string; meta: LogMeta | undefined }> = [];
  const log: Logger = {
    error: () => undefined,
    warn: (message, meta) => void warnings.push({ message, meta }),
    info: () => undefined,
    debug: () => undefined,
    child: () => log,
    access: () => undefined,
    isDebug: () => false,
  };
  return { log, warnings };
}

/** What nginx sends for a request on 127.0.0.1:80 (fastcgi_params), plus `extra`. */
const request = (extra: Record<string, string> = {}): Map<string, string> =>
  new Map(
    Object.entries({
      SERVER_ADDR: '127.0.0.1',
      SERVER_PORT: '80',
      SERVER_NAME: 'git.example.com',
      REMOTE_USER: '',
      ...extra,
    }),
  );

describe('UncheckedUserWatch', () => {
  it('warns once when one front end sends both anonymous requests and a REMOTE_USER without AUTH_TYPE', () => {
    const { log, warnings } = recording();
    const watch = new UncheckedUserWatch();
    watch.observe(request(), 'read', log);
    watch.observe(request(), 'read', log);
    assert.equal(warnings.length, 0, 'anonymous requests alone are nothing to warn about');
    watch.observe(request({ REMOTE_USER: 'alice' }), 'read', log);
    assert.equal(warnings.length, 1);
    const [warning] = warnings;
    assert.match(warning?.message ?? '', /on a read without AUTH_TYPE/);
    assert.match(warning?.message ?? '', /\$remote_user/, 'names the cause');
    assert.match(warning?.message ?? '', /etc\/nginx\/git-fcgi\.conf|mode = htpasswd/, 'names the fix');
    assert.deepEqual(warning?.meta, { front_end: '127.0.0.1:80', user: 'alice' });
    for (let i = 0; i < 10; i++) {
      watch.observe(request({ REMOTE_USER: 'mallory' }), 'read', log);
      watch.observe(request(), 'read', log);
    }
    assert.equal(warnings.length, 1, 'once per front end, not per request');
  });

  it('warns in either order, and names the first unchecked user', () => {
    const { log, warnings } = recording();
    const watch = new UncheckedUserWatch();
    watch.observe(request({ REMOTE_USER: 'bob' }), 'read', log);
    watch.observe(request({ REMOTE_USER: 'carol' }), 'read', log);
    assert.equal(warnings.length, 0, 'users alone: a front end that authenticates everything');
    watch.observe(request(), 'read', log);
    assert.deepEqual(warnings[0]?.meta, { front_end: '127.0.0.1:80', user: 'bob' });
  });

  it('tells front ends apart by listening address and port', () => {
    const { log, warnings } = recording();
    const watch = new UncheckedUserWatch();
    // Port 443 authenticates everything; port 80 serves anonymously only: neither is the trap.
    watch.observe(request({ SERVER_PORT: '443', REMOTE_USER: 'alice' }), 'read', log);
    watch.observe(request({ SERVER_PORT: '80' }), 'read', log);
    watch.observe(request({ SERVER_ADDR: '::1', SERVER_PORT: '80', REMOTE_USER: 'alice' }), 'read', log);
    assert.equal(warnings.length, 0);
    watch.observe(request({ SERVER_ADDR: '::1', SERVER_PORT: '80' }), 'read', log);
    assert.deepEqual(
      warnings.map((w) => w.meta?.front_end),
      ['[::1]:80'],
    );
    watch.observe(request({ SERVER_PORT: '443' }), 'read', log);
    assert.deepEqual(
      warnings.map((w) => w.meta?.front_end),
      ['[::1]:80', '127.0.0.1:443'],
    );
  });

  it('a REMOTE_USER without AUTH_TYPE on pushes only is no sign: front ends that check only pushes (h2o)', () => {
    const { log, warnings } = recording();
    const watch = new UncheckedUserWatch();
    for (let i = 0; i < 5; i++) {
      watch.observe(request(), 'read', log);
      watch.observe(request({ REMOTE_USER: 'alice' }), 'write', log);
    }
    assert.equal(warnings.length, 0);
    watch.observe(request({ REMOTE_USER: 'alice' }), 'read', log);
    assert.equal(warnings.length, 1, 'a read with one is');
  });

  it('no false alarm for the shipped configs: anonymous reads, AUTH_TYPE with every checked REMOTE_USER', () => {
    const { log, warnings } = recording();
    const watch = new UncheckedUserWatch();
    for (let i = 0; i < 5; i++) {
      watch.observe(request(), 'read', log);
      // nginx (etc/nginx/git-fcgi.conf) and Apache send AUTH_TYPE Basic where they checked the user.
      watch.observe(request({ REMOTE_USER: 'alice', AUTH_TYPE: 'Basic' }), 'read', log);
    }
    assert.equal(warnings.length, 0);
  });

  it('falls back to SERVER_NAME without SERVER_ADDR, and remembers a bounded number of front ends', () => {
    const { log, warnings } = recording();
    const watch = new UncheckedUserWatch(3);
    for (let port = 1; port <= 10; port++) watch.observe(request({ SERVER_PORT: String(port) }), 'read', log);
    assert.equal(watch.size, 3);
    watch.observe(request({ SERVER_PORT: '9', REMOTE_USER: 'alice' }), 'read', log);
    watch.observe(request({ SERVER_PORT: '2', REMOTE_USER: 'alice', SERVER_ADDR: '' }), 'read', log);
    watch.observe(request({ SERVER_PORT: '2', REMOTE_USER: 'alice' }), 'read', log);
    assert.deepEqual(
      warnings.map((w) => w.meta?.front_end),
      ['127.0.0.1:2'],
      'a front end beyond the bound is not watched; one within it still is',
    );
    const named = new UncheckedUserWatch();
    named.observe(new Map([['SERVER_NAME', 'git.example.com']]), 'read', log);
    named.observe(
      new Map([
        ['SERVER_NAME', 'git.example.com'],
        ['REMOTE_USER', 'x'],
      ]),
      'read',
      log,
    );
    assert.equal(warnings.at(-1)?.meta?.front_end, 'git.example.com:-');
  });
});

describe('Authorizer and the unchecked-user watch', () => {
  const readRefs = parseGitTarget('/open/a.git/info/refs', 'service=git-upload-pack', 'GET');
  const RULES = '[repo:open/*]\nread = anonymous\nwrite = alice\n';

  for (const [name, text] of [
    ['no rules', ''],
    ['mode = nginx rules', RULES],
  ] as const) {
    it(`watches where REMOTE_USER is trusted (${name})`, async () => {
      const { log, warnings } = recording();
      const authorizer = new Authorizer(log);
      const settings = { access: accessFrom(text), configFile: null };
      await authorizer.authorize(settings, readRefs, request(), log);
      await authorizer.authorize(settings, readRefs, request({ REMOTE_USER: 'alice' }), log);
      assert.equal(warnings.length, 1);
    });
  }

  it('a push with REMOTE_USER is not a sign (the target says which one a request is)', async () => {
    const { log, warnings } = recording();
    const authorizer = new Authorizer(log);
    const settings = { access: accessFrom(RULES), configFile: null };
    const pushRefs = parseGitTarget('/open/a.git/info/refs', 'service=git-receive-pack', 'GET');
    await authorizer.authorize(settings, readRefs, request(), log);
    await authorizer.authorize(settings, pushRefs, request({ REMOTE_USER: 'alice' }), log);
    assert.equal(warnings.length, 0);
  });

  it('does not watch in mode = htpasswd, where the front end has no say', async () => {
    const { log, warnings } = recording();
    const authorizer = new Authorizer(log);
    const access = accessFrom(`[auth]\nmode = htpasswd\nhtpasswd = /nonexistent\n${RULES}`);
    await authorizer.authorize({ access, configFile: null }, readRefs, request(), log);
    await authorizer.authorize({ access, configFile: null }, readRefs, request({ REMOTE_USER: 'x' }), log);
    assert.equal(warnings.length, 0);
  });
});
