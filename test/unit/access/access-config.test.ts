import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAccessConfig } from '../../../src/access/access-config.js';
import { splitAccessSections } from '../../../src/access/ini-sections.js';
import { includes } from '../../../src/access/principals.js';
import { ruleFor } from '../../../src/access/rules.js';

const where = (line: number): string => `git-fcgi.ini:${line}`;
const parse = (text: string) => parseAccessConfig(splitAccessSections(text, where).sections, where);

describe('splitAccessSections', () => {
  it('takes the access sections out and keeps line numbers for the rest', () => {
    const text = [
      '[server]',
      'listen = /run/x.sock',
      '[repo:team/*.git]',
      'read = alice ; a comment',
      '# comment',
      '[git]',
      'export_all = true',
      '[auth]',
      'realm = "Git; private"',
    ].join('\n');
    const { rest, sections } = splitAccessSections(text, where);
    assert.deepEqual(rest.split('\n'), [
      '[server]',
      'listen = /run/x.sock',
      '',
      '',
      '',
      '[git]',
      'export_all = true',
      '',
      '',
    ]);
    assert.deepEqual(sections, [
      { name: 'repo:team/*.git', line: 3, entries: [{ key: 'read', value: 'alice', line: 4 }] },
      { name: 'auth', line: 8, entries: [{ key: 'realm', value: 'Git; private', line: 9 }] },
    ]);
  });

  it('refuses duplicate sections and keys, and lines that are not key = value', () => {
    assert.throws(
      () => splitAccessSections('[repo:a]\n[repo:a]\n', where),
      /git-fcgi.ini:2: duplicate section/,
    );
    assert.throws(
      () => splitAccessSections('[repo:a]\nread = x\nread = y\n', where),
      /git-fcgi.ini:3: .*set twice/,
    );
    assert.throws(
      () => splitAccessSections('[groups]\njust words\n', where),
      /git-fcgi.ini:2: .*expected "key = value"/,
    );
  });
});

describe('parseAccessConfig', () => {
  it('keeps dots in section names: [repo:team/*.git], [repo:docs.example/*]', () => {
    const access = parse('[repo:team/*.git]\nread = a\n[repo:docs.example/*]\nread = b\n');
    assert.equal(access.enabled, true);
    assert.deepEqual(
      access.rules.map((r) => r.pattern.source),
      ['team/*.git', 'docs.example/*'],
    );
    assert.equal(ruleFor(access.rules, 'docs.example/guide.git')?.pattern.source, 'docs.example/*');
  });

  it('reads every key of [auth] and [repo:…]', () => {
    const access = parse(`
[auth]
mode = htpasswd
htpasswd = /etc/git-fcgi/htpasswd
realm = Example Git
max_failures = 5
failure_window = 30s
credential_cache = 2m
[groups]
leads = alice
[repo:team/*]
read = *
write = bob, @leads
hide = yes
protect = refs/heads/main, refs/tags/*
protect_push = @leads
deny_force = true
deny_delete = on
`);
    assert.deepEqual(access.auth, {
      mode: 'htpasswd',
      htpasswdFile: '/etc/git-fcgi/htpasswd',
      realm: 'Example Git',
      maxFailures: 5,
      failureWindowMs: 30_000,
      credentialCacheMs: 120_000,
    });
    const [rule] = access.rules;
    assert.ok(rule);
    assert.equal(rule.hide, true);
    assert.equal(rule.denyForce, true);
    assert.equal(rule.denyDelete, true);
    assert.deepEqual(
      rule.protect.map((g) => g.source),
      ['refs/heads/main', 'refs/tags/*'],
    );
    assert.equal(rule.protectPush?.text, '@leads');
    assert.equal(includes(rule.read, 'anyone'), true);
    assert.equal(includes(rule.write, 'alice'), true);
  });

  it('is off without [repo:…] sections, with defaults', () => {
    const access = parse('[auth]\nmode = nginx\n');
    assert.equal(access.enabled, false);
    assert.equal(access.auth.realm, 'git');
    assert.equal(access.auth.maxFailures, 10);
  });

  const errors: Array<[text: string, message: RegExp]> = [
    ['[auth]\nmode = ldap\n', /git-fcgi.ini:2: \[auth\] mode: expected one of nginx, htpasswd/],
    [
      '[auth]\nmode = htpasswd\n[repo:x]\nread = a\n',
      /git-fcgi.ini:1: \[auth\] mode = htpasswd needs htpasswd = FILE/,
    ],
    ['[auth]\nmode = htpasswd\nhtpasswd = /x\n', /needs \[repo:…\] rules/],
    ['[auth]\nhtpasswd = relative/path\n', /git-fcgi.ini:2: \[auth\] htpasswd: expected an absolute path/],
    ['[auth]\nrealm = say "hi"\n', /git-fcgi.ini:2: \[auth\] realm/],
    ['[auth]\nuser = x\n', /git-fcgi.ini:2: unknown key "user" in \[auth\]/],
    ['[repo:x]\nreed = a\n', /git-fcgi.ini:2: unknown key "reed" in \[repo:x\]/],
    ['[repo:x]\nread = @nobody\n', /git-fcgi.ini:2: \[repo:x\] read: unknown group @nobody/],
    ['[repo:x]\ndeny_force = maybe\n', /git-fcgi.ini:2: \[repo:x\] deny_force: expected true or false/],
    ['[repo:x]\nprotect = refs/heads/[ab]\n', /git-fcgi.ini:2: \[repo:x\] protect: unsupported character/],
    ['[repo:]\nread = a\n', /git-fcgi.ini:1: \[repo:\]: empty pattern/],
    ['[groups]\ndevs = @ghosts\n', /git-fcgi.ini:1: \[groups\]: group @devs: unknown group @ghosts/],
    ['[groups]\nanonymous = a\n', /git-fcgi.ini:2: \[groups\] anonymous: invalid group name/],
  ];
  for (const [text, message] of errors) {
    it(`refuses ${JSON.stringify(text)}`, () => assert.throws(() => parse(text), message));
  }
});
