import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { generate } from '../../../src/pack-cache/generation.js';
import { PackFile } from '../../../src/pack-cache/pack-file.js';
import { PackStore } from '../../../src/pack-cache/store.js';
import { suiteCleanup } from '../../helpers/cleanup.js';
import { withDeadline } from '../../helpers/deadline.js';
import { tmpDir } from '../../helpers/tmp.js';
import { FakeBackend, fakeLog, settle } from '../request/relay-fakes.js';

const RUN = {
  program: 'git',
  args: ['pack-objects', '--stdout'],
  env: {},
  cwd: '/',
  stdin: Buffer.from('x\n'),
};

async function start(dir: string, backend: FakeBackend): Promise<{ pack: PackFile; done: Promise<void> }> {
  const store = new PackStore({ budgetBytes: 1 << 30, maxAgeMs: 60_000, onRemove: () => {} });
  const pack = new PackFile(
    store.create('key', Date.now()),
    join(dir, `pack-${randomBytes(4).toString('hex')}`),
  );
  const done = generate(RUN, pack, {
    spawn: () => Promise.resolve(backend),
    signal: new AbortController().signal,
    idleTimeoutMs: 60_000,
    killGraceMs: 100,
    log: fakeLog(),
    reserve: () => true,
    onStderr: () => {},
    onBytes: () => {},
  });
  await settle();
  return { pack, done };
}

describe('pack generation', () => {
  const suite = suiteCleanup(after);

  test('chunks are written in order, one at a time, however stdout is resumed meanwhile', async () => {
    // Node's child_process resumes a child's stdout itself when the child exits (flushStdio):
    // the last chunk can come while the one before is still being written. Both used to be
    // written at the same offset (the file shorter than counted, its bytes mixed).
    const dir = await tmpDir(suite, 'generation-');
    const backend = new FakeBackend();
    const { pack, done } = await start(dir, backend);
    const parts = [randomBytes(65_536), randomBytes(20_000), randomBytes(20)];
    backend.stdout.write(parts[0]);
    // The first chunk is being stored (stdout paused); the process exits, Node resumes stdout.
    backend.stdout.resume();
    backend.stdout.write(parts[1]);
    backend.stdout.resume();
    backend.stdout.end(parts[2]);
    backend.exit(0);
    await withDeadline(done, 5000, 'the generation to finish');
    assert.equal(pack.state, 'done');
    const all = Buffer.concat(parts);
    assert.equal(pack.fileBytes, all.length);
    assert.ok((await readFile(pack.path)).equals(all), 'the file is the output, byte for byte');
  });

  test('a failing pack-objects fails the pack, with its exit code', async () => {
    const dir = await tmpDir(suite, 'generation-');
    const backend = new FakeBackend();
    const { pack, done } = await start(dir, backend);
    backend.stdout.end(Buffer.from('PACK'));
    backend.exit(3);
    await withDeadline(done, 5000, 'the generation to finish');
    assert.equal(pack.state, 'failed');
    assert.equal(pack.exitCode, 3);
  });
});
