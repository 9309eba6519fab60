import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { cpuSeconds, openDescriptors } from '../helpers/procfs.js';
import { hello, readAll, startSpawnd } from '../helpers/spawnd.js';

const PRINT_PARENT = join(repoRoot, 'test', 'fixtures', 'backends', 'print-parent.sh');

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('the helper out of descriptors (EMFILE) does not spin, and accepts again once it has some', async (t) => {
  const limit = 12;
  const helper = await startSpawnd(t, { launcher: ['prlimit', `--nofile=${limit}:${limit}`] });
  const used = [...(await openDescriptors(helper.pid)).keys()].filter((fd) => fd < limit).length;
  // Connections that never finish their hello take the helper's last descriptors; one more
  // waits in the listen queue, where accept4 fails with EMFILE for as long as they stay.
  const idle = await Promise.all(Array.from({ length: limit - used }, () => helper.open(Buffer.from([1]))));
  await waitFor(async () => (await openDescriptors(helper.pid)).size >= limit, {
    timeoutMs: 3000,
    what: 'the helper to hold every descriptor it may',
  });
  const waiting = await helper.open(hello(1, 0));
  await sleep(300);
  const before = await cpuSeconds(helper.pid);
  await sleep(2000);
  const after = await cpuSeconds(helper.pid);
  assert.ok(before !== undefined && after !== undefined, 'the helper runs');
  const used2s = after - before;
  t.diagnostic(`helper CPU over 2 s at EMFILE: ${used2s.toFixed(2)} s`);
  assert.ok(used2s < 0.2, `the helper used ${used2s.toFixed(2)} s of CPU in 2 s while out of descriptors`);
  for (const socket of [...idle, waiting]) socket.destroy();
  const { stdin, stdout } = await helper.spawn(2, PRINT_PARENT, ['PATH=/usr/bin:/bin']);
  stdin.end();
  assert.match(await readAll(stdout, 5000, 'the answer'), new RegExp(`parent=${helper.pid}\n$`));
});
