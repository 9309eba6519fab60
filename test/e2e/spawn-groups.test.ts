import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot, startGitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { beginRequest, gitParams, paramsRecords, stdinRecords } from '../helpers/fcgi-client.js';
import { backendsOf, readStat } from '../helpers/procfs.js';
import { createBareRepo } from '../helpers/repos.js';
import { controlMessage, readAll, startSpawnd } from '../helpers/spawnd.js';
import { tmpDir } from '../helpers/tmp.js';

const HANG = join(repoRoot, 'test', 'fixtures', 'backends', 'hang.sh');
const PRINT_PARENT = join(repoRoot, 'test', 'fixtures', 'backends', 'print-parent.sh');

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('an exited backend stays a zombie of the helper, its group id taken, until the daemon releases it', async (t) => {
  const helper = await startSpawnd(t);
  const { stdin, stdout } = await helper.spawn(1, PRINT_PARENT, ['PATH=/usr/bin:/bin']);
  stdin.end();
  assert.equal(
    await readAll(stdout, 5000, 'the answer'),
    `Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nparent=${helper.pid}\n`,
  );
  const pid = (await helper.report('P', 1)).a;
  assert.deepEqual(await helper.report('X', 1), { kind: 'X', id: 1, a: 0, b: 0 });
  await sleep(300);
  const held = await readStat(pid);
  assert.equal(held?.state, 'Z', `pid ${pid} is still a zombie after its exit was reported`);
  assert.equal(held.ppid, helper.pid);
  helper.send(controlMessage('R', 1));
  await waitFor(async () => (await readStat(pid)) === undefined, {
    timeoutMs: 3000,
    what: `the helper to reap ${pid} once released`,
  });
});

test('a killed backend: its leader is reaped only after the SIGKILL that ends kill_grace', async (t) => {
  const root = await tmpDir(t, 'groups-');
  await createBareRepo(t, root, 'r.git');
  const sock = join(root, 'g.sock');
  const ini = join(root, 'git-fcgi.ini');
  await writeFile(ini, '[server]\nkill_grace = 5s\n');
  const daemon = await startGitFcgi(t, [
    '-c',
    ini,
    '--listen',
    `unix:${sock}`,
    '--project-root',
    root,
    '--export-all',
    '--backend',
    HANG,
  ]);
  const client = net.connect(sock);
  client.on('error', () => {});
  client.write(
    Buffer.concat([
      beginRequest(),
      paramsRecords(gitParams('/r.git/info/refs')),
      stdinRecords(Buffer.alloc(0)),
    ]),
  );
  await waitFor(async () => (await backendsOf(root)).length >= 2, { timeoutMs: 5000, what: 'the backend' });
  const leader = (await backendsOf(root)).find((p) => p.pgrp === p.pid);
  assert.ok(leader, 'the group leader');
  const killed = Date.now();
  client.destroy();
  // hang.sh dies of the SIGTERM at once; the daemon then has its exit and logs the request.
  await waitFor(() => /status=499 .*exit=SIGTERM/.test(daemon.logs()), {
    timeoutMs: 4000,
    what: `the access line\n${daemon.logs()}`,
  });
  const held = await readStat(leader.pid);
  assert.ok(Date.now() - killed < 5000, 'checked within kill_grace');
  assert.equal(
    held?.state,
    'Z',
    `the leader ${leader.pid} is held as a zombie while a SIGKILL may still come`,
  );
  await waitFor(async () => (await readStat(leader.pid)) === undefined, {
    timeoutMs: 10_000,
    what: 'the leader to be reaped once kill_grace is over',
  });
  assert.ok(
    Date.now() - killed >= 4900,
    `reaped ${Date.now() - killed} ms after the SIGTERM, kill_grace 5 s`,
  );
});
