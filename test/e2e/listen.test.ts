import assert from 'node:assert/strict';
import { lstat, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { cliPath, startGitFcgi } from '../helpers/daemon.js';
import { gitLocation, startNginx } from '../helpers/nginx.js';
import { freePort, run } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

async function runCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const r = await run(process.execPath, [cliPath, ...args], { timeoutMs: 10_000 });
  return { code: r.code, stderr: r.stderr.toString() };
}

test('a stale socket file left by a crash is replaced', async (t) => {
  const dir = await tmpDir(t, 'stale-');
  const root = await tmpDir(t, 'root-');
  const sock = join(dir, 'g.sock');
  // A bound but never-listening socket: what a killed server leaves behind.
  await run('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(sock)})`], {
    timeoutMs: 5000,
  });
  assert.ok((await lstat(sock)).isSocket());
  await startGitFcgi(t, ['--listen', `unix:${sock}`, '--project-root', root]);
  assert.equal((await stat(sock)).mode & 0o777, 0o660, 'socket mode 0660 by default');
});

test('a socket a live server answers on is not taken over', async (t) => {
  const dir = await tmpDir(t, 'live-');
  const sock = join(dir, 'g.sock');
  const other = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve) => other.listen(sock, resolve));
  t.after(() => other.close());
  const { code, stderr } = await runCli(['--listen', `unix:${sock}`, '--project-root', dir]);
  assert.equal(code, 1);
  assert.match(stderr, /another server is already listening on .*g\.sock/);
});

test('a path that is not a socket is never replaced', async (t) => {
  const dir = await tmpDir(t, 'file-');
  const path = join(dir, 'important.txt');
  await writeFile(path, 'data');
  const { code, stderr } = await runCli(['--listen', path, '--project-root', dir]);
  assert.equal(code, 1);
  assert.match(stderr, /exists and is not a socket/);
  assert.ok((await stat(path)).isFile());
});

test('nothing to listen on is a clear error', async () => {
  const { code, stderr } = await runCli(['--project-root', '/tmp']);
  assert.equal(code, 1);
  assert.match(stderr, /nothing to listen on: give --listen/);
});

test('TCP listener behind nginx, and kept-alive FastCGI connections (fastcgi_keep_conn)', async (t) => {
  const root = await tmpDir(t, 'tcp-');
  const repo = await createBareRepo(t, root, 'r.git');
  const port = await freePort();
  await startGitFcgi(t, ['--listen', `127.0.0.1:${port}`, '--project-root', root, '--export-all']);
  const nginx = await startNginx(t, {
    httpExtra: `upstream gitfcgi { server 127.0.0.1:${port}; keepalive 4; }`,
    servers: [
      {
        locations: gitLocation({ socket: 'unused', extra: 'fastcgi_keep_conn on;' }).replace(
          'fastcgi_pass unix:unused;',
          'fastcgi_pass gitfcgi;',
        ),
      },
    ],
  });
  await git(t, ['clone', '-q', nginx.url(0, '/r.git'), join(root, 'c')]);
  // 200 requests over a few kept-alive connections: none may fail (node-fastcgi lost 9 of 200).
  const statuses = new Map<number, number>();
  for (let batch = 0; batch < 20; batch++) {
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        fetch(nginx.url(0, '/r.git/info/refs?service=git-upload-pack')).then(async (r) => {
          const text = await r.text();
          assert.ok(text.includes(repo.head));
          return r.status;
        }),
      ),
    );
    for (const s of results) statuses.set(s, (statuses.get(s) ?? 0) + 1);
  }
  assert.deepEqual([...statuses], [[200, 200]]);
});
