import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULT_QUEUE_TIMEOUT_MS, SETTINGS } from '../../../src/config/settings.js';
import { repoRoot } from '../../helpers/daemon.js';

/** How long each shipped front-end config waits for git-fcgi's answer, in ms, and where it says so. */
const FRONT_END_WAITS: ReadonlyArray<readonly [file: string, pattern: RegExp, msPerUnit: number]> = [
  ['nginx/git-fcgi.conf', /^\s*fastcgi_read_timeout\s+(\d+)s;/m, 1000],
  ['apache/git-fcgi.conf', /^\s*ProxyPass\s.*\btimeout=(\d+)/m, 1000],
  ['haproxy/git-fcgi.cfg', /^\s*timeout server\s+(\d+)m$/m, 60_000],
  ['h2o/git-fcgi.conf', /^\s*fastcgi\.timeout\.io:\s*(\d+)$/m, 1],
  ['lighttpd/git-fcgi.conf', /^\s*server\.max-write-idle\s*=\s*(\d+)$/m, 1000],
];

describe('queue_timeout default', () => {
  test('is the one in the settings table', () => {
    assert.equal(SETTINGS.queueTimeoutMs.default, DEFAULT_QUEUE_TIMEOUT_MS);
  });

  for (const [file, pattern, msPerUnit] of FRONT_END_WAITS) {
    test(`outlasts the wait of etc/${file}: the front end gives up first, and its close drops the request`, async () => {
      const text = await readFile(join(repoRoot, 'etc', file), 'utf8');
      const value = pattern.exec(text)?.[1];
      assert.ok(value !== undefined, `etc/${file} sets its timeout (${String(pattern)})`);
      const waitMs = Number(value) * msPerUnit;
      assert.ok(
        DEFAULT_QUEUE_TIMEOUT_MS > waitMs,
        `queue_timeout ${DEFAULT_QUEUE_TIMEOUT_MS} ms > ${waitMs} ms of etc/${file}`,
      );
    });
  }

  test("Caddy's shipped config sets no response deadline (it would end a request, queued or not)", async () => {
    const text = await readFile(join(repoRoot, 'etc', 'caddy', 'Caddyfile'), 'utf8');
    assert.doesNotMatch(text, /^\s*(read|write)_timeout\s/m);
  });
});
