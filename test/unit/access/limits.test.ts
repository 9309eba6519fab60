import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CredentialCache } from '../../../src/access/credential-cache.js';
import { FailureLimiter } from '../../../src/access/failure-limiter.js';
import { parseBasicAuth } from '../../../src/access/identity.js';

describe('FailureLimiter', () => {
  it('refuses an address after max failures in the window, until the oldest leaves it', () => {
    let now = 1_000_000;
    const limiter = new FailureLimiter(3, 60_000, () => now);
    for (let i = 0; i < 3; i++) {
      assert.equal(limiter.retryAfterMs('10.0.0.1'), 0);
      limiter.recordFailure('10.0.0.1');
      now += 10_000;
    }
    assert.equal(limiter.retryAfterMs('10.0.0.1'), 30_000, 'first failure at t0, window 60 s, now t0+30 s');
    assert.equal(limiter.retryAfterMs('10.0.0.2'), 0, 'other addresses are not affected');
    now += 29_999;
    assert.equal(limiter.retryAfterMs('10.0.0.1'), 1);
    now += 1;
    assert.equal(limiter.retryAfterMs('10.0.0.1'), 0, 'the first failure left the window');
    limiter.recordFailure('10.0.0.1');
    assert.ok(limiter.retryAfterMs('10.0.0.1') > 0, 'back at 3 failures within the window');
  });

  it('forgets addresses beyond its capacity instead of growing', () => {
    const now = 0;
    const limiter = new FailureLimiter(1, 60_000, () => now, 2);
    limiter.recordFailure('a');
    limiter.recordFailure('b');
    limiter.recordFailure('c');
    assert.equal(limiter.retryAfterMs('a'), 0, 'the oldest address was dropped');
    assert.ok(limiter.retryAfterMs('c') > 0);
  });
});

describe('CredentialCache', () => {
  it('remembers a pair for the TTL, per htpasswd generation', () => {
    let now = 0;
    const cache = new CredentialCache(100, () => now);
    cache.add('alice', 'pw', 1, 60_000);
    assert.equal(cache.has('alice', 'pw', 1), true);
    assert.equal(cache.has('alice', 'pw2', 1), false);
    assert.equal(cache.has('alic', 'epw', 1), false, 'user and password are kept apart');
    now = 59_999;
    assert.equal(cache.has('alice', 'pw', 1), true);
    now = 60_000;
    assert.equal(cache.has('alice', 'pw', 1), false, 'expired');
    cache.add('alice', 'pw', 1, 60_000);
    assert.equal(cache.has('alice', 'pw', 2), false, 'a reloaded htpasswd file empties the cache');
    assert.equal(cache.has('alice', 'pw', 1), false);
  });

  it('holds at most maxEntries, dropping the oldest', () => {
    const cache = new CredentialCache(2, () => 0);
    for (const user of ['a', 'b', 'c']) cache.add(user, 'pw', 1, 1000);
    assert.deepEqual(
      ['a', 'b', 'c'].map((u) => cache.has(u, 'pw', 1)),
      [false, true, true],
    );
  });
});

describe('parseBasicAuth', () => {
  const basic = (s: string): string => `Basic ${Buffer.from(s).toString('base64')}`;
  it('decodes user and password (UTF-8, colons in the password)', () => {
    assert.deepEqual(parseBasicAuth(basic('alice:pa:ss')), { user: 'alice', password: 'pa:ss' });
    assert.deepEqual(parseBasicAuth(basic('jürgen:pässwörd€')), { user: 'jürgen', password: 'pässwörd€' });
    assert.deepEqual(parseBasicAuth(`basic  ${Buffer.from('a:').toString('base64')}`), {
      user: 'a',
      password: '',
    });
  });
  it('no header is anonymous; anything else unusable is malformed', () => {
    assert.equal(parseBasicAuth(undefined), null);
    assert.equal(parseBasicAuth(''), null);
    for (const bad of ['Bearer abc', 'Basic', 'Basic !!!', basic('nocolon'), basic(':pw')]) {
      assert.equal(parseBasicAuth(bad), 'malformed', bad);
    }
  });
});
