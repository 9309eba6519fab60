import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatDuration,
  parseClients,
  parseDuration,
  parseOwner,
  parseUrlPath,
} from '../../../src/config/values.js';

describe('ops value parsers', () => {
  it('socket_owner takes user, user:group and :group', () => {
    assert.deepEqual(parseOwner('git'), { user: 'git', group: null });
    assert.deepEqual(parseOwner('git:nginx'), { user: 'git', group: 'nginx' });
    assert.deepEqual(parseOwner(':www-data'), { user: null, group: 'www-data' });
    assert.deepEqual(parseOwner('998:33'), { user: '998', group: '33' });
    for (const bad of ['', ':', 'a:b:c', 'git nginx', '-x']) assert.throws(() => parseOwner(bad), bad);
  });

  it('allowed_clients takes IP addresses or any', () => {
    assert.deepEqual(parseClients('127.0.0.1'), ['127.0.0.1']);
    assert.deepEqual(parseClients('127.0.0.1, ::1,10.0.0.5'), ['127.0.0.1', '::1', '10.0.0.5']);
    assert.equal(parseClients('ANY'), 'any');
    for (const bad of ['', 'localhost', '10.0.0.0/8', '1.2.3.4,x'])
      assert.throws(() => parseClients(bad), bad);
  });

  it('ping_path and status_path are plain absolute paths', () => {
    assert.equal(parseUrlPath('/git-fcgi-status'), '/git-fcgi-status');
    for (const bad of ['status', '/a b', '/../x', '/x?json']) assert.throws(() => parseUrlPath(bad), bad);
  });

  it('durations are written back in the largest exact unit, as the config file takes them', () => {
    const cases: Array<[number, string]> = [
      [600_000, '10m'],
      [3_600_000, '1h'],
      [90_000, '90s'],
      [2000, '2s'],
      [1500, '1500ms'],
      [0, '0ms'],
    ];
    for (const [ms, text] of cases) {
      assert.equal(formatDuration(ms), text);
      assert.equal(parseDuration(text), ms, text);
    }
  });
});
