import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_GIT_PROTOCOL_LENGTH, sanitizeGitProtocol } from '../../../src/request/git-protocol.js';

describe('sanitizeGitProtocol', () => {
  const accepted = [
    'version=2',
    'version=1',
    'version',
    'version=',
    'version=2:object-format=sha256',
    'a:b:c',
    'Key.With_dots-1=v.a_l,u-e',
    '0key=0',
    'version=2:agent=git-2.39.5',
  ];
  for (const value of accepted) {
    it(`keeps ${JSON.stringify(value)}`, () => {
      assert.equal(sanitizeGitProtocol(value), value);
    });
  }

  const rejected = [
    '',
    ':',
    'version=2:',
    ':version=2',
    'version=2::x=1',
    '-version=2',
    '.version=2',
    '_version=2',
    'version=2 ',
    ' version=2',
    'version = 2',
    'version=2\n',
    'version=2\r\nX-Evil: 1',
    'version=2\x00',
    'version=2;x',
    'ver$ion=2',
    'version=2=3',
    'version=a/b',
    'version="2"',
    'version=2,3:k=v=w',
    'vérsion=2',
    'version=2\u{1F600}',
  ];
  for (const value of rejected) {
    it(`drops ${JSON.stringify(value)}`, () => {
      assert.equal(sanitizeGitProtocol(value), undefined);
    });
  }

  it('drops undefined', () => {
    assert.equal(sanitizeGitProtocol(undefined), undefined);
  });

  it(`keeps ${MAX_GIT_PROTOCOL_LENGTH} characters and drops one more`, () => {
    const longest = `k=${'v'.repeat(MAX_GIT_PROTOCOL_LENGTH - 2)}`;
    assert.equal(MAX_GIT_PROTOCOL_LENGTH, 256);
    assert.equal(sanitizeGitProtocol(longest), longest);
    assert.equal(sanitizeGitProtocol(`${longest}v`), undefined);
  });

  it('is fast on long hostile input', () => {
    const start = process.hrtime.bigint();
    assert.equal(sanitizeGitProtocol(`${'a=:'.repeat(100_000)}!`), undefined);
    assert.equal(sanitizeGitProtocol(`${'a'.repeat(250)}=!`), undefined);
    assert.ok(process.hrtime.bigint() - start < 50_000_000n);
  });
});
