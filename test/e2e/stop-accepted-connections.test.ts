import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdir, readlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { RecordType } from '../../src/fastcgi/constants.js';
import { RecordParser } from '../../src/fastcgi/record-parser.js';
import type { Cleanup } from '../helpers/cleanup.js';
import { defer } from '../helpers/cleanup.js';
import { startGitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { beginRequest, gitParams, paramsRecords, stdinRecords } from '../helpers/fcgi-client.js';
import { createBareRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

/**
 * The daemon's sockets ("socket:[inode]"). Compared as sets, not counts: a count missed the
 * accepted connection once in CI (5 s without growing), which a socket of its own closing
 * meanwhile would explain; a new inode cannot be hidden that way.
 */
async function socketsOf(pid: number): Promise<Set<string>> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => []);
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return new Set(targets.filter((target) => target.startsWith('socket:')));
}

/** Whether the daemon has a socket it did not have in `before`. */
async function hasNewSocket(pid: number, before: Set<string>): Promise<boolean> {
  for (const socket of await socketsOf(pid)) if (!before.has(socket)) return true;
  return false;
}

interface RawConnection {
  readonly socket: net.Socket;
  /** Resolves with the records' STDOUT once END_REQUEST has come; null if the connection closed first. */
  readonly reply: Promise<Buffer | null>;
  readonly closed: Promise<unknown>;
}

/** A FastCGI connection that sends only what the test tells it to, when it tells it. */
function connect(t: Cleanup, sock: string): RawConnection {
  const socket = net.connect(sock);
  defer(t, () => socket.destroy());
  socket.on('error', () => {});
  const stdout: Buffer[] = [];
  const reply = new Promise<Buffer | null>((resolve) => {
    const parser = new RecordParser((type, _id, content) => {
      if (type === RecordType.STDOUT) stdout.push(Buffer.from(content));
      if (type === RecordType.END_REQUEST) resolve(Buffer.concat(stdout));
    });
    socket.on('data', (chunk: Buffer) => parser.push(chunk));
    socket.once('close', () => resolve(null));
  });
  return { socket, reply, closed: once(socket, 'close') };
}

const request = (uri: string, keepConn = false): Buffer =>
  Buffer.concat([beginRequest(1, keepConn), paramsRecords(gitParams(uri)), stdinRecords(Buffer.alloc(0))]);

async function daemonFor(t: Cleanup, shutdownTimeout: string) {
  const root = await tmpDir(t, 'accepted-');
  await createBareRepo(t, root, 'r.git');
  const ini = join(root, 'git-fcgi.ini');
  await writeFile(ini, `[server]\nshutdown_timeout = ${shutdownTimeout}\n[git]\nexport_all = true\n`);
  const sock = join(root, 'g.sock');
  const daemon = await startGitFcgi(t, ['-c', ini, '--listen', `unix:${sock}`, '--project-root', root]);
  // The socket accepts a moment before git-fcgi has started (spawn helper, signal handlers).
  await waitFor(() => / listening on /.test(daemon.logs()), { timeoutMs: 10_000, what: 'git-fcgi to start' });
  return { daemon, sock };
}

test('SIGTERM: a connection accepted before it whose request comes after it is still served', async (t) => {
  const { daemon, sock } = await daemonFor(t, '30s');
  const before = await socketsOf(daemon.pid);
  const conn = connect(t, sock);
  await waitFor(() => hasNewSocket(daemon.pid, before), {
    timeoutMs: 5000,
    what: 'git-fcgi to accept the connection',
  });
  const exited = daemon.stop('SIGTERM');
  await waitFor(() => / SIGTERM: stopping/.test(daemon.logs()), {
    timeoutMs: 5000,
    what: `the stop to begin\n${daemon.logs()}`,
  });
  // nginx connects and then writes; under load the request can come after the daemon accepted.
  conn.socket.write(request('/r.git/info/refs?service=git-upload-pack'));
  const reply = await withDeadline(conn.reply, 10_000, 'the response');
  assert.ok(reply !== null, `the connection was closed unanswered\n${daemon.logs()}`);
  assert.match(reply.toString('latin1'), /^Content-Type: application\/x-git-upload-pack-advertisement/m);
  assert.match(reply.toString('latin1'), /001e# service=git-upload-pack/);
  assert.deepEqual(await exited, { code: 0, signal: null });
});

test('SIGTERM: a kept-alive connection idle between requests is closed, and does not hold the stop', async (t) => {
  const { daemon, sock } = await daemonFor(t, '30s');
  const conn = connect(t, sock);
  conn.socket.write(request('/r.git/info/refs?service=git-upload-pack', true));
  // The first request is answered and the connection stays open for the next (FCGI_KEEP_CONN).
  assert.ok((await withDeadline(conn.reply, 10_000, 'the first response')) !== null);
  const started = Date.now();
  const exit = await daemon.stop('SIGTERM');
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms; shutdown_timeout is 30 s`);
  await withDeadline(conn.closed, 5000, 'git-fcgi to close the idle connection');
});

test('SIGTERM: a connection that never sends a request is closed after shutdown_timeout at most', async (t) => {
  const { daemon, sock } = await daemonFor(t, '1s');
  const before = await socketsOf(daemon.pid);
  const conn = connect(t, sock);
  await waitFor(() => hasNewSocket(daemon.pid, before), {
    timeoutMs: 5000,
    what: 'git-fcgi to accept the connection',
  });
  const started = Date.now();
  const exit = await daemon.stop('SIGTERM');
  const tookMs = Date.now() - started;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(tookMs >= 900 && tookMs < 5000, `exited ${tookMs} ms after SIGTERM, shutdown_timeout 1 s`);
  await withDeadline(conn.closed, 5000, 'the silent connection to be closed');
});

test('SIGTERM while git-fcgi is still starting: what it accepted meanwhile is served, then it stops (exit 0)', async (t) => {
  const root = await tmpDir(t, 'starting-');
  await createBareRepo(t, root, 'r.git');
  const sock = join(root, 'g.sock');
  // Ready as soon as the socket accepts: before the spawn helper runs and the handlers are set.
  const daemon = await startGitFcgi(t, ['--listen', `unix:${sock}`, '--project-root', root, '--export-all']);
  const conn = connect(t, sock);
  conn.socket.write(request('/r.git/info/refs?service=git-upload-pack'));
  const stillStarting = !/ listening on /.test(daemon.logs());
  const exited = daemon.stop('SIGTERM');
  const reply = await withDeadline(conn.reply, 10_000, 'the response');
  assert.ok(reply !== null, `the connection was closed unanswered\n${daemon.logs()}`);
  assert.match(reply.toString('latin1'), /001e# service=git-upload-pack/);
  assert.deepEqual(await exited, { code: 0, signal: null }, daemon.logs());
  t.diagnostic(`the signal came ${stillStarting ? 'before' : 'after'} git-fcgi logged that it listens`);
});
