import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Cleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import {
  beginRequest,
  fcgiExchange,
  gitParams,
  paramsRecords,
  stdinRecords,
  type FcgiReply,
} from '../helpers/fcgi-client.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { backendsOf, listProcesses } from '../helpers/procfs.js';
import { createBareRepo } from '../helpers/repos.js';
import { controlMessage, readAll, startSpawnd } from '../helpers/spawnd.js';
import { tmpDir } from '../helpers/tmp.js';

const PRINT_PARENT = join(repoRoot, 'test', 'fixtures', 'backends', 'print-parent.sh');
const MIB = 1024 * 1024;

/** A daemon that takes params blocks of up to 8 MiB (max_params_size = 8M), without nginx. */
async function serve(
  t: Cleanup,
  spawnHelper: 'on' | 'off',
): Promise<{ root: string; sock: string; daemon: GitFcgi }> {
  const root = await tmpDir(t, `limits-${spawnHelper}-`);
  await createBareRepo(t, root, 'r.git');
  const sock = join(root, 'g.sock');
  const ini = join(root, 'git-fcgi.ini');
  await writeFile(ini, '[server]\nmax_params_size = 8M\n');
  const daemon = await startGitFcgi(t, [
    '-c',
    ini,
    '--listen',
    `unix:${sock}`,
    '--project-root',
    root,
    '--export-all',
    '--backend',
    PRINT_PARENT,
    '--spawn-helper',
    spawnHelper,
  ]);
  return { root, sock, daemon };
}

function request(sock: string, query: string, headers: Record<string, string> = {}): Promise<FcgiReply> {
  const params = gitParams(`/r.git/info/refs?${query}`, headers);
  return fcgiExchange(
    sock,
    Buffer.concat([beginRequest(), paramsRecords(params), stdinRecords(Buffer.alloc(0))]),
    20_000,
  );
}

/** The daemon's spawn helper, once it runs (the socket accepts before the helper is started). */
async function helperPid(daemon: GitFcgi): Promise<number> {
  const find = async (): Promise<number | undefined> =>
    (await listProcesses()).find((p) => p.ppid === daemon.pid && p.comm === 'git-fcgi-spawnd')?.pid;
  await waitFor(async () => (await find()) !== undefined, { timeoutMs: 5000, what: 'the spawn helper' });
  return (await find()) ?? 0;
}

test('a spawn message over the helper limit fails its request alone (431); the helper serves on', async (t) => {
  const { root, sock, daemon } = await serve(t, 'on');
  const helper = await helperPid(daemon);
  const slow = request(sock, 'slow');
  await waitFor(async () => (await backendsOf(root)).length > 0, {
    timeoutMs: 5000,
    what: 'the slow request',
  });
  // 5 MiB of request headers become 5 MiB of environment: more than the helper takes (4 MiB),
  // more than any execve takes.
  const big = await request(sock, 'big', { HTTP_X_BIG: 'x'.repeat(5 * MIB) });
  const slowReply = await slow;
  assert.deepEqual(
    { big: big.status, concurrent: slowReply.status },
    { big: 431, concurrent: 200 },
    daemon.logs(),
  );
  assert.equal(slowReply.body.toString(), `parent=${helper}\n`);
  const next = await request(sock, 'next');
  assert.equal(next.status, 200);
  assert.equal(next.body.toString(), `parent=${helper}\n`, 'the next backend is started by the same helper');
  assert.doesNotMatch(daemon.logs(), /spawn helper gone/);
  assert.match(daemon.logs(), /status=431 .*E2BIG/);
  await assertNoGitProcesses(root, { withinMs: 2000 });
});

test('an environment the helper takes but execve refuses (E2BIG): 431, the helper serves on', async (t) => {
  const { sock, daemon } = await serve(t, 'on');
  const helper = await helperPid(daemon);
  // One string longer than the kernel takes (MAX_ARG_STRLEN: 32 pages), well under 4 MiB.
  const big = await request(sock, 'big', { HTTP_X_BIG: 'x'.repeat(3 * MIB) });
  assert.equal(big.status, 431, daemon.logs());
  const next = await request(sock, 'next');
  assert.equal(next.body.toString(), `parent=${helper}\n`);
});

test('spawn_helper = off: an environment execve refuses fails its request alone (431)', async (t) => {
  const { sock, daemon } = await serve(t, 'off');
  const big = await request(sock, 'big', { HTTP_X_BIG: 'x'.repeat(5 * MIB) });
  assert.equal(big.status, 431, daemon.logs());
  const next = await request(sock, 'next');
  assert.equal(next.body.toString(), `parent=${daemon.pid}\n`);
});

test('git-fcgi-spawnd: a message it cannot use fails that spawn alone; the helper goes on', async (t) => {
  const helper = await startSpawnd(t);
  const E2BIG = 7;
  const EINVAL = 22;
  const MESSAGE_STAGE = 3;
  // Over MAX_MESSAGE (4 MiB): refused as soon as its kind and id are in, the rest dropped.
  helper.send(controlMessage('S', 1, Buffer.alloc(5 * MIB, 'x')));
  assert.deepEqual(await helper.report('F', 1), { kind: 'F', id: 1, a: E2BIG, b: MESSAGE_STAGE });
  // Too short to hold its argc: that spawn fails. A kind the helper does not know: skipped.
  helper.send(controlMessage('S', 2, Buffer.alloc(1)));
  assert.deepEqual(await helper.report('F', 2), { kind: 'F', id: 2, a: EINVAL, b: MESSAGE_STAGE });
  helper.send(controlMessage('Z', 3));
  const { stdin, stdout } = await helper.spawn(4, PRINT_PARENT, ['PATH=/usr/bin:/bin']);
  stdin.end();
  assert.match(await readAll(stdout, 5000, 'the answer'), new RegExp(`parent=${helper.pid}\n$`));
  assert.equal(helper.process.exitStatus(), undefined, 'the helper is still running');
  assert.match(helper.process.stderr(), /unknown control message of 5 bytes/);
});
