import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_AUTH, parseAccessConfig } from '../../../src/access/access-config.js';
import { AUTH_KEYS, REPO_KEYS } from '../../../src/access/access-keys.js';
import { splitAccessSections } from '../../../src/access/ini-sections.js';
import { iniProblems, renderEntry, syncIni } from '../../../src/config/ini-reference.js';
import { REFERENCE, type SectionReference } from '../../../src/config/reference.js';
import { SETTINGS, defaultText, type SettingDef, type SettingName } from '../../../src/config/settings.js';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../../src/config/values.js';

const where = (line: number): string => `test.ini:${line}`;
const access = (text: string) => parseAccessConfig(splitAccessSections(text, where).sections, where);

describe('settings table', () => {
  it('every default, as the ini file and the man page write it, parses back to the default', () => {
    for (const name of Object.keys(SETTINGS) as SettingName[]) {
      const setting: SettingDef<unknown> = SETTINGS[name];
      assert.deepEqual(setting.parse(defaultText(setting)), setting.default, setting.key);
    }
  });

  it('sizes and durations are written in the largest exact unit, never as a bare number of ms', () => {
    assert.equal(formatDuration(30_000), '30s');
    assert.equal(formatDuration(600_000), '10m');
    assert.equal(formatDuration(1500), '1500ms');
    assert.equal(formatDuration(0), '0ms');
    assert.equal(formatSize(256 * 1024), '256K');
    assert.equal(formatSize(1000), '1000');
    for (const ms of [0, 1, 999, 1000, 90_000, 3_600_000, 7_200_001])
      assert.equal(parseDuration(formatDuration(ms)), ms);
    for (const bytes of [0, 1, 1023, 1024, 1536, 8 * 1024 ** 2, 3 * 1024 ** 3])
      assert.equal(parseSize(formatSize(bytes)), bytes);
  });

  it('the reference has every setting, in its section, with its flag', () => {
    for (const setting of Object.values(SETTINGS) as Array<SettingDef<unknown>>) {
      const key = REFERENCE.find((s) => s.name === setting.section)?.keys.find((k) => k.key === setting.key);
      assert.ok(key, `[${setting.section}] ${setting.key}`);
      assert.equal(key.flag, setting.flag);
    }
  });
});

describe('access keys', () => {
  const groups = '[groups]\ndevs = bob\nci = robot\nleads = alice\n';

  it('every documented key is accepted with its example, and an undocumented one is refused', () => {
    const auth = Object.entries(AUTH_KEYS).map(([k, d]) => `${k} = ${d.example}`);
    const repo = Object.entries(REPO_KEYS).map(([k, d]) => `${k} = ${d.example}`);
    const config = access(`[auth]\n${auth.join('\n')}\n${groups}[repo:x]\n${repo.join('\n')}\n`);
    assert.equal(config.auth.mode, 'htpasswd');
    assert.equal(config.rules[0]?.hide, true);
    assert.throws(() => access('[auth]\nrealms = x\n'), /unknown key "realms" in \[auth\]/);
    assert.throws(() => access('[repo:x]\nreader = x\n'), /unknown key "reader" in \[repo:x\]/);
  });

  it('every documented default is the default', () => {
    for (const [key, d] of Object.entries(AUTH_KEYS)) {
      if (d.default === '') continue;
      assert.deepEqual(access(`[auth]\n${key} = ${d.default}\n`).auth, DEFAULT_AUTH, key);
    }
    const bare = access('[repo:x]\nread = bob\n').rules[0];
    for (const [key, d] of Object.entries(REPO_KEYS)) {
      if (d.default === '' || key === 'read') continue;
      assert.deepEqual(access(`[repo:x]\nread = bob\n${key} = ${d.default}\n`).rules[0], bare, key);
    }
  });
});

/** An ini file as etc/git-fcgi.ini lays it out, from the reference alone. */
function generatedIni(reference: readonly SectionReference[]): string {
  return reference
    .flatMap((section) => {
      const header = ['server', 'git', 'log'].includes(section.name)
        ? `[${section.name}]`
        : `;[${section.name}]`;
      const keys = section.keys.filter((k) => !k.placeholder);
      const body = ['server', 'git', 'log', 'auth'].includes(section.name)
        ? keys.flatMap((k) => ['', ...renderEntry(section, k)])
        : keys.map((k) => `;   ${k.key}  ${k.doc}`);
      return [header.replace('repo:PATTERN', 'repo:team/*'), ...body, ''];
    })
    .join('\n');
}

describe('etc/git-fcgi.ini check', () => {
  const good = generatedIni(REFERENCE);
  const server = REFERENCE.find((s) => s.name === 'server');
  const listen = server?.keys.find((k) => k.key === 'listen');
  assert.ok(server && listen);
  const [listenDoc] = renderEntry(server, listen);

  it('passes a file laid out from the reference', () => {
    assert.deepEqual(iniProblems(good), []);
    assert.equal(syncIni(good), good);
  });

  const cases: Array<[what: string, change: (text: string) => string, expected: RegExp]> = [
    ['a key removed', (t) => t.replace(/^;queue_timeout = 15m\n/m, ''), /\[server\] queue_timeout: missing/],
    [
      'another default',
      (t) => t.replace(/^;idle_timeout = 10m$/m, ';idle_timeout = 5m'),
      /idle_timeout: differs/,
    ],
    [
      'a doc changed',
      (t) => t.replace('Permissions of the UNIX socket', 'Mode of the socket'),
      /socket_mode: differs/,
    ],
    ['a flag dropped', (t) => t.replace(/^; Flag: --queue <n>\n/m, ''), /\[server\] queue: differs/],
    [
      'an unknown key',
      (t) => t.replace('[log]\n', '[log]\n;verbosity = 3\n'),
      /\[log\] verbosity: not a key/,
    ],
    ['an auth key removed', (t) => t.replace(/^;realm = .*\n/m, ''), /\[auth\] realm: missing/],
    ['a rule key not explained', (t) => t.replace(/^; {3}deny_force .*\n/m, ''), /deny_force: not explained/],
    ['a section missing', (t) => t.replace(';[groups]', ';[people]'), /no \[groups\] section/],
    [
      'a doc twice',
      (t) => t.replace('[log]\n', `[log]\n\n${listenDoc}\n`),
      /\[server\] listen: its documentation is in the file 2 times/,
    ],
  ];
  for (const [what, change, expected] of cases) {
    it(`fails on ${what}, and sync repairs what it generates`, () => {
      const bad = change(good);
      assert.notEqual(bad, good, 'the change applies');
      const problems = iniProblems(bad);
      assert.match(problems.join('\n'), expected);
    });
  }

  it('sync puts a changed doc, default or flag back', () => {
    const bad = good
      .replace(/^;idle_timeout = 10m$/m, ';idle_timeout = 5m')
      .replace(/^; Flag: --queue <n>\n/m, '')
      .replace('Permissions of the UNIX socket', 'Mode of the socket');
    assert.equal(syncIni(bad), good);
  });
});
