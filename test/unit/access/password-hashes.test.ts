import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseHtpasswd } from '../../../src/access/htpasswd.js';
import { schemeOf, verifyPassword } from '../../../src/access/password-hashes.js';

// Written by Apache's htpasswd 2.4 (Debian 12): `htpasswd -nb -B|-m|-s USER PASSWORD`.
const REAL = [
  {
    scheme: 'bcrypt',
    user: 'alice',
    password: 's3cret pass',
    hash: '$2y$05$d/z7f8e7Z8/EIKJ53ursOe1deuGffiCljtUNt66S1oSkw/wcMTe7u',
  },
  {
    scheme: 'bcrypt',
    user: 'jürgen',
    password: 'pässwörd€',
    hash: '$2y$05$8au5cPDayj0J1syso6.GrujeJEBiytCkPzmMd4JhBD1sDtqyWW94O',
  },
  {
    scheme: 'bcrypt',
    user: 'bob',
    password: 'hunter2',
    hash: '$2y$10$LqS9w7jxKb9GeFgTDVSGD.MdPV4cWQOP.J99T3AS9iz07srtvb1ra',
  },
  { scheme: 'apr1', user: 'alice', password: 's3cret pass', hash: '$apr1$QOfw7DI1$w/fwAOGpVKzRa0.9nEupn1' },
  { scheme: 'apr1', user: 'jürgen', password: 'pässwörd€', hash: '$apr1$kJnLV6PO$vKP5tGZCN.OqNkFvlU/2q1' },
  { scheme: 'sha1', user: 'alice', password: 's3cret pass', hash: '{SHA}ohgYgF2kkgMlRbH1HlEDczlOc+M=' },
  { scheme: 'sha1', user: 'jürgen', password: 'pässwörd€', hash: '{SHA}WftlVS2jnC7Vz30QrXptSZ4eRyo=' },
] as const;

describe('password hashes against real htpasswd output', () => {
  for (const { scheme, user, password, hash } of REAL) {
    it(`${scheme}: ${user}'s password verifies, others do not`, async () => {
      assert.equal(schemeOf(hash), scheme);
      assert.equal(await verifyPassword(password, hash, scheme), true);
      assert.equal(await verifyPassword(`${password}x`, hash, scheme), false);
      assert.equal(await verifyPassword('', hash, scheme), false);
      assert.equal(await verifyPassword(password.toUpperCase(), hash, scheme), false);
    });
  }

  it('recognises $2a$ and $2b$ bcrypt prefixes as well', async () => {
    const [{ hash }] = REAL;
    for (const prefix of ['$2a$', '$2b$']) {
      const variant = prefix + hash.slice(4);
      assert.equal(schemeOf(variant), 'bcrypt');
      assert.equal(await verifyPassword('s3cret pass', variant, 'bcrypt'), true);
    }
  });

  it('refuses plain text and crypt()', () => {
    for (const hash of ['pw', 'dhbPQE5w0iVmQ', '$1$abc$xyz', '$6$salt$hash', '{SSHA}abc', '']) {
      assert.equal(schemeOf(hash), null, hash);
    }
  });
});

describe('parseHtpasswd', () => {
  it('keeps usable entries and says why it ignores the rest', () => {
    const text = [
      '# users',
      ...REAL.slice(0, 1).map((e) => `${e.user}:${e.hash}`),
      `bob:${REAL[3].hash}\r`,
      `carol:${REAL[5].hash}`,
      'plain:pw',
      'crypt:dhbPQE5w0iVmQ',
      'alice:{SHA}ohgYgF2kkgMlRbH1HlEDczlOc+M=',
      'no-colon',
      ':{SHA}ohgYgF2kkgMlRbH1HlEDczlOc+M=',
      '',
    ].join('\n');
    const { entries, warnings } = parseHtpasswd(text, 'users');
    assert.deepEqual(
      [...entries.values()].map((e) => [e.user, e.scheme]),
      [
        ['alice', 'bcrypt'],
        ['bob', 'apr1'],
        ['carol', 'sha1'],
      ],
    );
    assert.equal(warnings.length, 5);
    assert.match(warnings[0] ?? '', /^users:5: plain: plain-text or crypt\(\) password refused/);
    assert.match(warnings[1] ?? '', /^users:6: crypt:/);
    assert.match(warnings[2] ?? '', /^users:7: alice appears again; the first entry counts/);
    assert.match(warnings[3] ?? '', /^users:8: not "user:hash"/);
    assert.match(warnings[4] ?? '', /^users:9: not "user:hash"/);
  });
});
