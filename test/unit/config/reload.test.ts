import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { changesNeedingRestart, reloadConfig } from '../../../src/config/reload.js';
import { loadConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/settings.js';
import type { Logger, LogMeta } from '../../../src/log.js';

function recordingLog(lines: string[]): Logger {
  const log: Logger = {
    error: (m: string, meta?: LogMeta) => lines.push(`error ${m} ${JSON.stringify(meta ?? {})}`),
    warn: (m: string) => lines.push(`warn ${m}`),
    info: (m: string) => lines.push(`info ${m}`),
    debug: () => undefined,
    child: () => log,
    access: () => undefined,
    isDebug: () => false,
  };
  return log;
}

describe('reloadConfig', () => {
  const current = loadConfig(null, { listen: '/run/a.sock', maxChildren: '4' });

  it('names the settings that only a restart applies', () => {
    const next = loadConfig(null, { listen: '/run/b.sock', maxChildren: '8', user: 'git' });
    assert.deepEqual(changesNeedingRestart(current, next), ['[server] listen', '[server] user']);
  });

  it('applies a good configuration, keeping what is bound, and warns about it', async () => {
    const lines: string[] = [];
    let applied: Config | undefined;
    const result = await reloadConfig(current, {
      load: () => loadConfig(null, { listen: '/run/b.sock', maxChildren: '8' }),
      check: () => [],
      apply: async (c) => void (applied = c),
      reopenLogs: async () => assert.fail('not on success'),
      log: recordingLog(lines),
    });
    assert.equal(result, applied);
    assert.equal(result.maxChildren, 8);
    assert.deepEqual(result.listen, current.listen);
    assert.ok(lines.some((l) => /warn reload: \[server\] listen changed; restart/.test(l)));
  });

  it('refuses a bad configuration, keeps the old one, still reopens the logs', async () => {
    const lines: string[] = [];
    let reopened = false;
    const result = await reloadConfig(current, {
      load: () => loadConfig(null, { maxChildren: 'many' }),
      check: () => [],
      apply: async () => assert.fail('must not apply'),
      reopenLogs: async () => void (reopened = true),
      log: recordingLog(lines),
    });
    assert.equal(result, current);
    assert.ok(reopened);
    assert.match(lines.join('\n'), /error reload refused.*--max-children.*many/);
  });

  it('refuses a configuration that would fail at the first request', async () => {
    const result = await reloadConfig(current, {
      load: () => loadConfig(null, { backend: '/nonexistent' }),
      check: (c) => (c.backend === '/nonexistent' ? ['[git] backend: not executable'] : []),
      apply: async () => assert.fail('must not apply'),
      reopenLogs: async () => undefined,
      log: recordingLog([]),
    });
    assert.equal(result, current);
  });
});
