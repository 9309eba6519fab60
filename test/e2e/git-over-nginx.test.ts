import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { isoClone, isoPush } from '../helpers/isogit.js';
import { gitLocation, htpasswd, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { peakRssMb } from '../helpers/rss.js';
import { suiteCleanup } from '../helpers/cleanup.js';

/**
 * The core promise: real git clients, through real nginx, to git http-backend via git-fcgi.
 * One daemon and one nginx (an anonymous server and one with auth_basic) serve every test.
 */
describe('git over nginx and git-fcgi', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let work: string;
  let daemon: GitFcgi;
  let nginx: Nginx;
  let head: string;
  let anon: string;
  let authed: string;

  before(async () => {
    root = await tmpDir(suite, 'repos-');
    work = await tmpDir(suite, 'work-');
    const repo = await createBareRepo(suite, root, 'demo.git', { commits: 5, files: { 'a.txt': 'hello\n' } });
    head = repo.head;
    await git(suite, ['config', 'uploadpack.allowFilter', 'true'], { cwd: repo.path });
    await createBareRepo(suite, root, 'team/app.git', { commits: 2 });
    const sock = join(await tmpDir(suite, 'sock-'), 'git-fcgi.sock');
    daemon = await startGitFcgi(suite, ['--listen', `unix:${sock}`, '--project-root', root, '--export-all']);
    const users = await htpasswd(suite, work, { alice: 'secret' });
    nginx = await startNginx(suite, {
      servers: [
        { locations: gitLocation({ socket: sock }) },
        { locations: gitLocation({ socket: sock, auth: { htpasswdFile: users } }) },
      ],
    });
    anon = nginx.url(0);
    authed = nginx.url(1).replace('http://', 'http://alice:secret@');
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('clone over protocol v2, verified in the packet trace', async () => {
    const trace = join(work, 'trace-v2');
    await git(suite, ['-c', 'protocol.version=2', 'clone', '-q', `${anon}demo.git`, join(work, 'v2')], {
      env: { GIT_TRACE_PACKET: trace },
    });
    assert.match(await readFile(trace, 'utf8'), /version 2/);
    const { stdout } = await git(suite, ['rev-parse', 'HEAD'], { cwd: join(work, 'v2') });
    assert.equal(stdout.toString().trim(), head);
  });

  test('clone over protocol v0', async () => {
    const trace = join(work, 'trace-v0');
    await git(suite, ['-c', 'protocol.version=0', 'clone', '-q', `${anon}demo.git`, join(work, 'v0')], {
      env: { GIT_TRACE_PACKET: trace },
    });
    assert.doesNotMatch(await readFile(trace, 'utf8'), /version 2/);
    const { stdout } = await git(suite, ['log', '--oneline'], { cwd: join(work, 'v0') });
    assert.equal(stdout.toString().trim().split('\n').length, 5);
  });

  test('ls-remote lists the branch', async () => {
    const { stdout } = await git(suite, ['ls-remote', `${anon}demo.git`, 'refs/heads/main']);
    assert.equal(stdout.toString().trim(), `${head}\trefs/heads/main`);
  });

  test('shallow clone', async () => {
    const dir = join(work, 'shallow');
    await git(suite, ['clone', '-q', '--depth', '1', `${anon}demo.git`, dir]);
    const { stdout } = await git(suite, ['rev-list', '--count', 'HEAD'], { cwd: dir });
    assert.equal(stdout.toString().trim(), '1');
  });

  test('partial clone (--filter=blob:none)', async () => {
    const dir = join(work, 'partial');
    await git(suite, ['clone', '-q', '--filter=blob:none', `${anon}demo.git`, dir]);
    const { stdout } = await git(suite, ['config', 'remote.origin.partialclonefilter'], { cwd: dir });
    assert.equal(stdout.toString().trim(), 'blob:none');
    assert.equal(await readFile(join(dir, 'a.txt'), 'utf8'), 'hello\n');
  });

  test('a repository in a subdirectory', async () => {
    await git(suite, ['clone', '-q', `${anon}team/app.git`, join(work, 'app')]);
  });

  test('push by a user nginx authenticated, then fetch sees it', async () => {
    const dir = join(work, 'pusher');
    await git(suite, ['clone', '-q', `${anon}demo.git`, dir]);
    await writeFile(join(dir, 'b.txt'), 'pushed\n');
    await git(suite, ['add', 'b.txt'], { cwd: dir });
    await git(suite, ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '-m', 'b'], { cwd: dir });
    await git(suite, ['push', '-q', `${authed}demo.git`, 'HEAD:refs/heads/feature'], { cwd: dir });
    const pushed = (await git(suite, ['rev-parse', 'HEAD'], { cwd: dir })).stdout.toString().trim();
    const fetcher = join(work, 'v2');
    await git(suite, ['fetch', '-q', 'origin', 'feature'], { cwd: fetcher });
    const fetched = (await git(suite, ['rev-parse', 'FETCH_HEAD'], { cwd: fetcher })).stdout
      .toString()
      .trim();
    assert.equal(fetched, pushed);
  });

  test('anonymous push is refused with 403 (git does not prompt)', async () => {
    const dir = join(work, 'v0');
    await git(
      suite,
      ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '--allow-empty', '-m', 'x'],
      {
        cwd: dir,
      },
    );
    await assert.rejects(
      git(suite, ['push', '-q', `${anon}demo.git`, 'HEAD:refs/heads/anon'], { cwd: dir }),
      /403/,
    );
  });

  test('dumb HTTP: HEAD, info/refs, objects/info/packs and a loose object', async () => {
    const base = `${anon}demo.git`;
    assert.equal(await (await fetch(`${base}/HEAD`)).text(), 'ref: refs/heads/main\n');
    const refs = await (await fetch(`${base}/info/refs`)).text();
    assert.match(refs, new RegExp(`^${head}\trefs/heads/main$`, 'm'));
    assert.equal((await fetch(`${base}/objects/info/packs`)).status, 200);
    const objects = join(root, 'demo.git', 'objects');
    const dir = (await readdir(objects)).find((d) => /^[0-9a-f]{2}$/.test(d));
    assert.ok(dir, 'the seeded repository has loose objects');
    const [file] = await readdir(join(objects, dir));
    assert.ok(file);
    const res = await fetch(`${base}/objects/${dir}/${file}`);
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), await readFile(join(objects, dir, file)));
  });

  test('a gzip-encoded fetch request', async () => {
    const pkt = (s: string): string => (s.length + 4).toString(16).padStart(4, '0') + s;
    const request = `${pkt(`want ${head} side-band-64k\n`)}0000${pkt('done\n')}`;
    const res = await fetch(`${anon}demo.git/git-upload-pack`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-git-upload-pack-request',
        'Content-Encoding': 'gzip',
      },
      body: gzipSync(request),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-git-upload-pack-result');
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(body.subarray(0, 8).toString(), '0008NAK\n');
    assert.ok(body.includes('PACK'), 'the response carries a pack');
  });

  test('isomorphic-git clones and pushes', async () => {
    const dir = join(work, 'iso');
    await isoClone({ url: `${anon}demo.git`, dir });
    assert.equal(await readFile(join(dir, 'a.txt'), 'utf8'), 'hello\n');
    await writeFile(join(dir, 'iso.txt'), 'from isomorphic-git\n');
    await git(suite, ['add', 'iso.txt'], { cwd: dir });
    await git(suite, ['-c', 'user.name=i', '-c', 'user.email=i@i', 'commit', '-q', '-m', 'iso'], {
      cwd: dir,
    });
    const result = await isoPush({
      url: `${nginx.url(1)}demo.git`,
      dir,
      ref: 'main',
      remoteRef: 'refs/heads/iso',
      auth: { username: 'alice', password: 'secret' },
    });
    assert.ok(result.ok, result.error ?? 'push failed');
    const { stdout } = await git(suite, ['rev-parse', 'refs/heads/iso'], { cwd: join(root, 'demo.git') });
    assert.equal(
      stdout.toString().trim(),
      (await git(suite, ['rev-parse', 'HEAD'], { cwd: dir })).stdout.toString().trim(),
    );
  });

  test('a 100 MB incompressible push, with bounded daemon memory', async () => {
    const dir = join(work, 'big');
    await git(suite, ['init', '-q', '-b', 'main', dir]);
    const blob = randomBytes(100 * 1024 * 1024);
    await writeFile(join(dir, 'big.bin'), blob);
    await git(suite, ['add', 'big.bin'], { cwd: dir });
    await git(suite, ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '-m', 'big'], {
      cwd: dir,
    });
    await git(
      suite,
      ['-c', 'http.postBuffer=1048576', 'push', '-q', `${authed}team/app.git`, 'HEAD:refs/heads/big'],
      {
        cwd: dir,
        timeoutMs: 120_000,
      },
    );
    const remote = join(root, 'team', 'app.git');
    const { stdout } = await git(suite, ['cat-file', '-s', 'refs/heads/big:big.bin'], { cwd: remote });
    assert.equal(Number(stdout.toString().trim()), blob.length);
    const rss = await peakRssMb(daemon.pid);
    assert.ok(rss < 150, `daemon peak RSS ${rss} MB after a 100 MB push`);
  });
});

describe('quick-start HTTP listener', () => {
  test('git clone straight from git-fcgi, no nginx', async (t) => {
    const root = await tmpDir(t, 'http-');
    const repo = await createBareRepo(t, root, 'demo.git', { commits: 2 });
    const daemon = await startGitFcgi(t, ['--http', '127.0.0.1:0', '--project-root', root, '--export-all']);
    const dir = join(root, 'clone');
    await git(t, ['clone', '-q', `http://127.0.0.1:${daemon.httpPort}/demo.git`, dir]);
    assert.equal((await git(t, ['rev-parse', 'HEAD'], { cwd: dir })).stdout.toString().trim(), repo.head);
    const res = await fetch(
      `http://127.0.0.1:${daemon.httpPort}/demo.git/info/refs?service=git-receive-pack`,
    );
    assert.equal(res.status, 403, 'no REMOTE_USER, no push');
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });
});
