import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { defer, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { beginRequest, gitParams, paramsRecords, stdinRecords } from '../helpers/fcgi-client.js';
import { backendsOf } from '../helpers/procfs.js';
import { createBareRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

const HANG = join(repoRoot, 'test', 'fixtures', 'backends', 'hang.sh');
const CRASH_PRELOAD = pathToFileURL(join(repoRoot, 'test', 'fixtures', 'crash-on-sigusr2.mjs')).href;

/** A daemon with one request in flight whose backend (sh and its sleeps) never finishes. */
async function withHungRequest(
  t: Cleanup,
  spawnHelper: 'on' | 'off',
  env: NodeJS.ProcessEnv = {},
): Promise<{ root: string; daemon: GitFcgi }> {
  const root = await tmpDir(t, `exit-${spawnHelper}-`);
  await createBareRepo(t, root, 'r.git');
  const sock = join(root, 'g.sock');
  const args = ['--listen', `unix:${sock}`, '--project-root', root, '--export-all', '--backend', HANG];
  const daemon = await startGitFcgi(t, [...args, '--spawn-helper', spawnHelper], { env });
  const client = net.connect(sock);
  client.on('error', () => {});
  defer(t, () => client.destroy());
  client.write(
    Buffer.concat([
      beginRequest(),
      paramsRecords(gitParams('/r.git/info/refs')),
      stdinRecords(Buffer.alloc(0)),
    ]),
  );
  await waitFor(async () => (await backendsOf(root)).length >= 2, { timeoutMs: 5000, what: 'the backend' });
  return { root, daemon };
}

async function assertBackendsEnd(root: string, daemon: GitFcgi): Promise<void> {
  await waitFor(async () => (await backendsOf(root)).length === 0, {
    timeoutMs: 8000,
    what: `the backend's process group to end with the daemon\n${daemon.logs()}`,
  });
}

for (const spawnHelper of ['on', 'off'] as const) {
  test(`spawn_helper = ${spawnHelper}: a second SIGTERM exits at once, and takes the backends along`, async (t) => {
    const { root, daemon } = await withHungRequest(t, spawnHelper);
    process.kill(daemon.pid, 'SIGTERM');
    await waitFor(() => /SIGTERM: stopping/.test(daemon.logs()), { timeoutMs: 5000, what: 'the first stop' });
    const exit = await daemon.stop('SIGTERM');
    assert.deepEqual(exit, { code: 1, signal: null }, daemon.logs());
    await assertBackendsEnd(root, daemon);
  });

  test(`spawn_helper = ${spawnHelper}: an uncaught exception exits 70, and takes the backends along`, async (t) => {
    const { root, daemon } = await withHungRequest(t, spawnHelper, {
      NODE_OPTIONS: `--import=${CRASH_PRELOAD}`,
    });
    const exit = await daemon.stop('SIGUSR2');
    assert.deepEqual(exit, { code: 70, signal: null }, daemon.logs());
    assert.match(daemon.logs(), /internal error, exiting .*crash requested by a test/);
    await assertBackendsEnd(root, daemon);
  });
}

test('the daemon killed (SIGKILL): the spawn helper, losing its parent, ends the backends', async (t) => {
  const { root, daemon } = await withHungRequest(t, 'on');
  const exit = await withDeadline(daemon.stop('SIGKILL'), 10_000, 'the daemon to die');
  assert.equal(exit.signal, 'SIGKILL');
  await assertBackendsEnd(root, daemon);
});
