import assert from 'node:assert/strict';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { defer, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi } from '../helpers/daemon.js';
import {
  beginRequest,
  fcgiExchange,
  gitParams,
  paramsRecords,
  stdinRecords,
} from '../helpers/fcgi-client.js';
import { createBareRepo } from '../helpers/repos.js';
import { readAll, startSpawnd } from '../helpers/spawnd.js';
import { tmpDir } from '../helpers/tmp.js';

const PRINT_FDS = join(repoRoot, 'test', 'fixtures', 'backends', 'print-fds.sh');
/** The descriptor a launching shell left open in the report (`exec 251</etc/hostname; git-fcgi ...`). */
const STRAY_FD = 251;

/** A file opened by the test process, to be passed on as STRAY_FD without close-on-exec. */
async function strayFile(t: Cleanup): Promise<number> {
  const path = join(await tmpDir(t, 'stray-'), 'inherited-by-the-daemon');
  await writeFile(path, 'not for git\n');
  const handle = await open(path, 'r');
  defer(t, () => handle.close());
  return handle.fd;
}

/**
 * What print-fds.sh lists, without the descriptor ls itself opens to read /proc/self/fd: the
 * descriptors the backend was started with, number -> target.
 */
function backendFds(listing: string): Map<number, string> {
  const fds = new Map<number, string>();
  for (const match of listing.matchAll(/ (\d+) -> (.*)$/gm)) {
    const [, fd, target] = match;
    if (fd !== undefined && target !== undefined && !/^\/proc\/\d+\/fd$/.test(target)) {
      fds.set(Number(fd), target);
    }
  }
  return fds;
}

function assertOnlyStdio(listing: string): void {
  const fds = backendFds(listing);
  assert.deepEqual(
    [...fds.keys()].sort((a, b) => a - b),
    [0, 1, 2],
    `the backend's descriptors:\n${listing}`,
  );
}

test('git-fcgi-spawnd: a backend gets descriptors 0, 1 and 2 only, none the helper inherited', async (t) => {
  const helper = await startSpawnd(t, { extraFds: { [STRAY_FD]: await strayFile(t) } });
  const { stdin, stdout } = await helper.spawn(1, PRINT_FDS, ['PATH=/usr/bin:/bin']);
  stdin.end();
  assertOnlyStdio(await readAll(stdout, 5000, 'the listing'));
});

for (const spawnHelper of ['on', 'off'] as const) {
  test(`spawn_helper = ${spawnHelper}: a descriptor the daemon inherited does not reach the backend`, async (t) => {
    const root = await tmpDir(t, `fds-${spawnHelper}-`);
    await createBareRepo(t, root, 'r.git');
    const sock = join(root, 'g.sock');
    const daemon = await startGitFcgi(
      t,
      [
        '--listen',
        `unix:${sock}`,
        '--project-root',
        root,
        '--export-all',
        '--backend',
        PRINT_FDS,
        '--spawn-helper',
        spawnHelper,
      ],
      { extraFds: { [STRAY_FD]: await strayFile(t) } },
    );
    const reply = await fcgiExchange(
      sock,
      Buffer.concat([
        beginRequest(),
        paramsRecords(gitParams('/r.git/info/refs')),
        stdinRecords(Buffer.alloc(0)),
      ]),
    );
    assert.equal(reply.status, 200, daemon.logs());
    assertOnlyStdio(reply.body.toString());
  });
}
