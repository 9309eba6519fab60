import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig } from '../../../src/config/load.js';
import { QUEUE_PER_CHILD, effectiveQueue } from '../../../src/config/settings.js';

describe('queue default', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('follows the max_children in effect, not the built-in one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'git-fcgi-settings-'));
    dirs.push(dir);
    const file = join(dir, 'a.ini');
    await writeFile(file, '[server]\nmax_children = 3\n');
    assert.equal(effectiveQueue(loadConfig(file, {})), 3 * QUEUE_PER_CHILD);
    assert.equal(effectiveQueue(loadConfig(file, { maxChildren: '10' })), 10 * QUEUE_PER_CHILD);
  });

  test('an explicit queue, including 0 (no waiting), is taken as it is', () => {
    assert.equal(effectiveQueue(loadConfig(null, { queue: '0' })), 0);
    assert.equal(effectiveQueue(loadConfig(null, { queue: '7', maxChildren: '2' })), 7);
  });

  test('32 concurrent clones fit the default on any machine (each clone is at most 2 requests at once)', () => {
    assert.ok(effectiveQueue(loadConfig(null, {})) + loadConfig(null, {}).maxChildren >= 64);
  });
});
