import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Cleanup } from '../helpers/cleanup.js';
import { cliPath } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { acceptsUnix } from '../helpers/net-probe.js';
import { gitLocation, startNginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, startProcess, type StartedProcess } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { skipWithout } from '../helpers/tools.js';

const skip = skipWithout('spawn-fcgi');

/**
 * Without --listen, git-fcgi serves the socket it is handed: on fd 0 by spawn-fcgi (the FastCGI
 * convention fcgiwrap setups use), or as fd 3 with LISTEN_FDS by systemd socket activation.
 */
describe('launched by spawn-fcgi and by systemd socket activation', () => {
  const daemonArgs = (root: string): string[] => [
    cliPath,
    '--project-root',
    root,
    '--export-all',
    '--allow-root',
  ];

  async function cloneThroughNginx(t: Cleanup, sock: string, head: string): Promise<void> {
    const nginx = await startNginx(t, { servers: [{ locations: gitLocation({ socket: sock }) }] });
    const dest = join(await tmpDir(t, 'clone-'), 'r');
    await git(t, ['clone', '-q', nginx.url(0, '/r.git'), dest]);
    const cloned = (await git(t, ['rev-parse', 'HEAD'], { cwd: dest })).stdout.toString().trim();
    assert.equal(cloned, head);
  }

  async function stopGracefully(proc: StartedProcess): Promise<void> {
    proc.signal('SIGTERM');
    const status = await withDeadline(proc.exited, 10_000, 'git-fcgi to exit after SIGTERM');
    assert.deepEqual(status, { code: 0, signal: null }, proc.output());
  }

  test('spawn-fcgi -n -s SOCK -M 0660 -- git-fcgi: the socket on fd 0', { skip }, async (t) => {
    const root = await tmpDir(t, 'sf-');
    const { head } = await createBareRepo(t, root, 'r.git', { commits: 3 });
    const sock = join(await tmpDir(t, 'sock-'), 'spawn.sock');
    const proc = await startProcess(t, 'spawn-fcgi', [
      '-n',
      '-s',
      sock,
      '-M',
      '0660',
      '--',
      process.execPath,
      ...daemonArgs(root),
    ]);
    await waitFor(() => /listening on fastcgi inherited socket on fd 0/.test(proc.stderr()), {
      timeoutMs: 10_000,
      what: 'git-fcgi to serve the socket from spawn-fcgi',
    });
    assert.equal((await stat(sock)).mode & 0o777, 0o660);
    await cloneThroughNginx(t, sock, head);
    await stopGracefully(proc);
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('systemd-socket-activate -l SOCK -- git-fcgi: LISTEN_FDS', async (t) => {
    const root = await tmpDir(t, 'sd-');
    const { head } = await createBareRepo(t, root, 'r.git', { commits: 3 });
    const sock = join(await tmpDir(t, 'sock-'), 'activate.sock');
    const proc = await startProcess(t, 'systemd-socket-activate', [
      '-l',
      sock,
      '-E',
      'PATH',
      '--',
      process.execPath,
      ...daemonArgs(root),
    ]);
    // The first connection makes systemd-socket-activate exec git-fcgi with the socket as fd 3.
    await waitFor(() => acceptsUnix(sock), { timeoutMs: 10_000, what: 'the activation socket' });
    await waitFor(() => /listening on fastcgi systemd socket activation \(fd 3\)/.test(proc.stderr()), {
      timeoutMs: 10_000,
      what: 'git-fcgi to serve the socket from LISTEN_FDS',
    });
    await cloneThroughNginx(t, sock, head);
    await stopGracefully(proc);
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });
});
