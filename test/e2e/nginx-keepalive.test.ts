import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startCountingProxy } from '../helpers/counting-proxy.js';
import { fdCount } from '../helpers/daemon-health.js';
import { startGitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { htpasswd, startNginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { shippedNginx, shippedNginxConfig } from '../helpers/shipped-nginx.js';
import { tmpDir } from '../helpers/tmp.js';
import { acceptedConnections } from '../helpers/unix-sockets.js';

/** Fewer idle connections kept than requests at once: nginx both reuses connections and closes extra ones. */
const KEEPALIVE = 4;

const RULES = `[auth]
mode = nginx
[repo:one.git]
read = anonymous
write = alice
[repo:two.git]
read = anonymous
[repo:big.git]
read = anonymous
[repo:secret.git]
read = alice
`;

const revParse = async (t: TestContext, cwd: string, rev: string): Promise<string> =>
  (await git(t, ['rev-parse', rev], { cwd })).stdout.toString().trim();

/**
 * etc/nginx/git-fcgi.conf keeps connections to git-fcgi open between requests (upstream keepalive,
 * fastcgi_keep_conn on). Clones, pushes, ref advertisements of two repositories, refusals that leave a
 * request body unread, and clients that leave mid-clone, all at once over a few kept-alive connections:
 * every answer must be the right one for its request (the advertisement of the repository asked for, not
 * of the request before on the same connection), and nothing may be left behind: no git process, no
 * connection once nginx has gone, no error in git-fcgi's log.
 */
test('kept-alive connections from nginx under concurrent clones, pushes, advertisements, refusals and aborts', async (t) => {
  const root = await tmpDir(t, 'keepalive-');
  const one = await createBareRepo(t, root, 'one.git', { commits: 3, files: { 'a.txt': 'one\n' } });
  const two = await createBareRepo(t, root, 'two.git', { commits: 4, files: { 'b.txt': 'two\n' } });
  await createBareRepo(t, root, 'secret.git', { commits: 1 });
  const big = await createBareRepo(t, root, 'big.git', { files: { 'big.bin': randomBytes(8 << 20) } });
  const sock = join(await tmpDir(t, 'sock-'), 'git-fcgi.sock');
  const ini = join(await tmpDir(t, 'ini-'), 'git-fcgi.ini');
  await writeFile(
    ini,
    `[server]\nallow_root = true\nstatus_path = /git-fcgi-status\n[git]\nexport_all = true\n${RULES}`,
  );
  const daemon = await startGitFcgi(t, ['-c', ini, '--listen', `unix:${sock}`]);
  const proxy = await startCountingProxy(t, sock);
  const users = await htpasswd(t, root, { alice: 'secret' });
  const shipped = await shippedNginx({ root, htpasswd: users, socket: proxy.socket });
  assert.match(shipped.http, /^\s*keepalive \d+;$/m, 'the example keeps connections');
  assert.match(shipped.server, /^\s*fastcgi_keep_conn on;$/m);
  const http = shipped.http.replace(/^(\s*keepalive) \d+;$/m, `$1 ${KEEPALIVE};`);
  const nginx = await startNginx(t, shippedNginxConfig([{ ...shipped, http }]));
  const base = nginx.url(0, '/');
  const alice = base.replace('http://', 'http://alice:secret@');
  const work = await tmpDir(t, 'work-');
  // Once a backend has run (the spawn helper starts with the first), git-fcgi's descriptors are its
  // baseline plus one per open FastCGI connection.
  await (await fetch(`${base}one.git/info/refs?service=git-upload-pack`)).arrayBuffer();
  const baseline = (await fdCount(daemon.pid)) - (await acceptedConnections(sock));
  const requestsBefore = await accepted(base);

  const clones = Array.from({ length: 6 }, async (_, i) => {
    const [name, head] = i % 2 ? ['two.git', two.head] : ['one.git', one.head];
    const dir = join(work, `clone-${i}`);
    await git(t, ['-c', `protocol.version=${i % 3 === 0 ? 0 : 2}`, 'clone', '-q', `${base}${name}`, dir]);
    assert.equal(await revParse(t, dir, 'HEAD'), head, `clone ${i} of ${name}`);
  });
  const pushes = Array.from({ length: 3 }, async (_, i) => {
    const dir = join(work, `push-${i}`);
    await git(t, ['clone', '-q', `${base}one.git`, dir]);
    await writeFile(join(dir, `p${i}.txt`), randomBytes(64 << 10));
    await git(t, ['add', '-A'], { cwd: dir });
    await git(t, ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '-m', `p${i}`], { cwd: dir });
    await git(t, ['push', '-q', `${alice}one.git`, `HEAD:refs/heads/p${i}`], { cwd: dir });
    assert.equal(await revParse(t, join(root, 'one.git'), `p${i}`), await revParse(t, dir, 'HEAD'));
  });
  // Refs of one.git change while the pushes land; two.git's never do.
  const advertisements = (async () => {
    for (let batch = 0; batch < 15; batch++) {
      await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const [name, own, other] =
            i % 2 ? ['two.git', two.head, one.head] : ['one.git', one.head, two.head];
          const res = await fetch(`${base}${name}/info/refs?service=git-upload-pack`);
          const text = await res.text();
          assert.equal(res.status, 200);
          assert.ok(text.includes(own) && !text.includes(other), `the advertisement of ${name}`);
        }),
      );
    }
  })();
  // git-fcgi answers 401 before reading the body; nginx has sent it whole (small) or not (large).
  const refusals = (async () => {
    for (const size of [0, 100, 200 << 10, 2 << 20, 100, 0, 200 << 10, 2 << 20]) {
      const res = await fetch(`${base}secret.git/git-upload-pack`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-git-upload-pack-request' },
        body: Buffer.alloc(size, '0'),
      });
      await res.arrayBuffer();
      assert.equal(res.status, 401, `a ${size}-byte body`);
      const missing = await fetch(`${base}missing.git/info/refs?service=git-upload-pack`);
      await missing.arrayBuffer();
      assert.equal(missing.status, 404);
      const refs = await fetch(`${base}two.git/info/refs?service=git-upload-pack`);
      assert.ok((await refs.text()).includes(two.head));
    }
  })();
  // A full clone's upload-pack response (8 MB of random data), abandoned after its first bytes.
  const aborts = Array.from({ length: 3 }, async () => {
    const controller = new AbortController();
    const res = await fetch(`${base}big.git/git-upload-pack`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-git-upload-pack-request' },
      body: `0032want ${big.head}\n00000009done\n`,
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    await res.body?.getReader().read();
    controller.abort();
  });
  await Promise.all([...clones, ...pushes, advertisements, refusals, ...aborts]).catch(
    async (err: unknown) => {
      throw new Error(`${String(err)}\n${daemon.logs()}\n${await nginx.errorLog()}`, { cause: err });
    },
  );

  const requests = (await accepted(base)) - requestsBefore;
  t.diagnostic(`at once: ${requests} requests to git-fcgi over ${proxy.connections} connections`);
  assert.ok(proxy.connections < requests, `${requests} requests over ${proxy.connections} connections`);
  // One after the other, each request finds a kept-alive connection free.
  const connectionsBefore = proxy.connections;
  for (let i = 0; i < 40; i++) {
    const [name, own, other] = i % 2 ? ['two.git', two.head, one.head] : ['one.git', one.head, two.head];
    const res = await fetch(`${base}${name}/info/refs?service=git-upload-pack`);
    const text = await res.text();
    assert.ok(text.includes(own) && !text.includes(other), `the advertisement of ${name}`);
  }
  const sequential = proxy.connections - connectionsBefore;
  t.diagnostic(`one after the other: 40 requests over ${sequential} new connections`);
  assert.ok(sequential <= 2, `40 requests one after the other opened ${sequential} connections`);
  assert.ok(proxy.open > 0 && proxy.open <= KEEPALIVE + 1, `${proxy.open} connections kept open`);
  await assertNoGitProcesses(root, { withinMs: 5000 });
  await git(t, ['fsck', '--strict'], { cwd: join(root, 'one.git') });
  assert.doesNotMatch(daemon.logs(), / error /, 'no error in git-fcgi');
  const left = daemon.logs().match(/ access .*repo=big\.git service=git-upload-pack status=499 /g) ?? [];
  assert.equal(left.length, 3, 'the clients that left are seen as such (499)');
  assert.doesNotMatch(
    await nginx.errorLog(),
    /upstream prematurely closed|upstream sent|invalid header/,
    'nginx saw nothing wrong from git-fcgi',
  );

  // nginx gone: every kept-alive connection is closed, and git-fcgi holds nothing more than before.
  await nginx.stop();
  await waitFor(async () => proxy.open === 0, {
    timeoutMs: 5000,
    what: 'the kept-alive connections to close',
  });
  await waitFor(async () => (await acceptedConnections(sock)) === 0, {
    timeoutMs: 5000,
    what: "git-fcgi's side of the kept-alive connections to close",
  });
  assert.equal(await fdCount(daemon.pid), baseline, "git-fcgi's descriptors are back to their baseline");
});

/** Requests git-fcgi has accepted so far (its status page, through nginx as the example allows). */
async function accepted(base: string): Promise<number> {
  const res = await fetch(`${base}git-fcgi-status?json`);
  const status = (await res.json()) as { accepted?: unknown };
  return Number(status.accepted);
}
