import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../../src/log.js';
import { tmpDir } from '../helpers/tmp.js';

test('lines logged after close() go to stderr instead of throwing "write after end"', async (t) => {
  const dir = await tmpDir(t, 'log-');
  const file = join(dir, 'main.log');
  const accessFile = join(dir, 'access.log');
  const log = createLogger({ level: 'info', format: 'text', file, accessLog: true, accessFile });
  const req = log.child({ req: 'r1' });
  req.info('before close');
  await log.close();
  const stderr: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    req.warn('after close', { reason: 'late' });
    req.access({ status: 499 });
    req.debug('below the level');
  } finally {
    process.stderr.write = write;
  }
  assert.deepEqual(stderr, ['warn after close req=r1 reason=late\n', 'info access req=r1 status=499\n']);
  assert.match(await readFile(file, 'utf8'), /info before close req=r1\n$/);
  assert.equal(await readFile(accessFile, 'utf8'), '');
});
