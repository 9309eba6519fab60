import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  apacheHtpasswd,
  apacheReachableDir,
  assertNoApacheProcesses,
  gitVhost,
  socketOwnerArgs,
  startApache,
  type Apache,
} from '../helpers/apache.js';
import { suiteCleanup } from '../helpers/cleanup.js';
import { startGitFcgi } from '../helpers/daemon.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';
import { skipWithout } from '../helpers/tools.js';

const identity = ['-c', 'user.name=a', '-c', 'user.email=a@a'];

/**
 * Real git clients through real Apache 2.4 (mod_proxy_fcgi, as an admin configures it) to git http-backend
 * via git-fcgi. Where git-fcgi must behave like git http-backend (repository lookup, SetEnv identity,
 * forced protocol v0), the expectations are what Apache + mod_cgi + git http-backend 2.39 does with the
 * same SetEnv lines, measured by hand.
 */
describe('git over Apache mod_proxy_fcgi and git-fcgi', { skip: skipWithout('apache2') }, () => {
  const suite = suiteCleanup(after);
  let root: string;
  let work: string;
  let apache: Apache;
  let demoHead: string;
  let projectHead: string;
  let nonBareHead: string;
  let nsHead: string;
  /** Reads for everyone; no auth at all, so git-fcgi sees no REMOTE_USER and refuses pushes. */
  let anon: string;
  /** git's documented setup: reads anonymous, pushes (advertisement and POST) need a user. */
  let pushAuth: string;
  let alice: string;
  /** Auth for everything, and `SetEnv GIT_COMMITTER_NAME/EMAIL`. */
  let committer: string;
  /** `SetEnv GIT_NAMESPACE ns`. */
  let namespaced: string;
  /** `SetEnv GIT_PROTOCOL ""`: the server forces protocol v0. */
  let forcedV0: string;

  before(async () => {
    root = await tmpDir(suite, 'repos-');
    work = await tmpDir(suite, 'work-');
    const demo = await createBareRepo(suite, root, 'demo.git', { commits: 5, files: { 'a.txt': 'hello\n' } });
    demoHead = demo.head;
    await git(suite, ['config', 'uploadpack.allowFilter', 'true'], { cwd: demo.path });
    await git(suite, ['config', 'core.logAllRefUpdates', 'true'], { cwd: demo.path });
    projectHead = (await createBareRepo(suite, root, 'project.git', { commits: 2 })).head;
    nonBareHead = await nonBareRepo(join(root, 'work'));
    nsHead = await namespacedRepo();
    await createBareRepo(suite, root, 'big.git', { commits: 1 });

    const sock = join(await apacheReachableDir(suite, 'sock-'), 'git-fcgi.sock');
    await startGitFcgi(suite, ['--listen', `unix:${sock}`, '--project-root', root, ...socketOwnerArgs()]);
    const users = await apacheHtpasswd(suite, { alice: 'secret' });
    const base = { socket: sock, projectRoot: root, exportAll: true } as const;
    apache = await startApache(suite, {
      vhosts: [
        { body: gitVhost(base) },
        { body: gitVhost({ ...base, auth: { htpasswdFile: users, scope: 'push' } }) },
        {
          body: gitVhost({
            ...base,
            auth: { htpasswdFile: users, scope: 'all' },
            setEnv: { GIT_COMMITTER_NAME: 'Apache Committer', GIT_COMMITTER_EMAIL: 'committer@example.org' },
          }),
        },
        { body: gitVhost({ ...base, setEnv: { GIT_NAMESPACE: 'ns' } }) },
        { body: gitVhost({ ...base, setEnv: { GIT_PROTOCOL: '' } }) },
      ],
    });
    anon = apache.url(0);
    pushAuth = apache.url(1);
    alice = pushAuth.replace('http://', 'http://alice:secret@');
    committer = apache.url(2).replace('http://', 'http://alice:secret@');
    namespaced = apache.url(3);
    forcedV0 = apache.url(4);
  });

  after(async () => {
    // The suite's cleanup (registered first, so run first) has stopped Apache and git-fcgi by now.
    await assertNoApacheProcesses(apache, { withinMs: 5000 });
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });

  const revParse = async (cwd: string, rev: string): Promise<string> =>
    (await git(suite, ['rev-parse', rev], { cwd })).stdout.toString().trim();

  /** A non-bare repository at `dir` with one commit; returns it. */
  async function nonBareRepo(dir: string): Promise<string> {
    await git(suite, ['init', '-q', '-b', 'main', dir]);
    await writeFile(join(dir, 'w.txt'), 'non-bare\n');
    await git(suite, ['add', 'w.txt'], { cwd: dir });
    await git(suite, [...identity, 'commit', '-q', '-m', 'w'], { cwd: dir });
    return revParse(dir, 'HEAD');
  }

  /** ns.git: branch main outside any namespace; HEAD and branch nsbranch (a commit of its own) inside ns. */
  async function namespacedRepo(): Promise<string> {
    const { path: dir } = await createBareRepo(suite, root, 'ns.git', { commits: 1 });
    const env = {
      GIT_AUTHOR_NAME: 'n',
      GIT_AUTHOR_EMAIL: 'n@n',
      GIT_COMMITTER_NAME: 'n',
      GIT_COMMITTER_EMAIL: 'n@n',
    };
    const made = await git(suite, ['commit-tree', 'main^{tree}', '-p', 'main', '-m', 'ns'], {
      cwd: dir,
      env,
    });
    const commit = made.stdout.toString().trim();
    await git(suite, ['update-ref', 'refs/namespaces/ns/refs/heads/nsbranch', commit], { cwd: dir });
    const head = ['symbolic-ref', 'refs/namespaces/ns/HEAD', 'refs/namespaces/ns/refs/heads/nsbranch'];
    await git(suite, head, { cwd: dir });
    return commit;
  }

  /** A clone of demo.git with one new commit on top; returns the directory and the commit. */
  async function cloneWithCommit(name: string): Promise<{ dir: string; commit: string }> {
    const dir = join(work, name);
    await git(suite, ['clone', '-q', `${anon}demo.git`, dir]);
    await writeFile(join(dir, `${name}.txt`), `${name}\n`);
    await git(suite, ['add', '-A'], { cwd: dir });
    await git(suite, [...identity, 'commit', '-q', '-m', name], { cwd: dir });
    return { dir, commit: await revParse(dir, 'HEAD') };
  }

  /** The newest reflog line of `ref` in the server's repository `repo`. */
  async function lastReflogLine(repo: string, ref: string): Promise<string> {
    const lines = (await readFile(join(root, repo, 'logs', ref), 'utf8')).trim().split('\n');
    return lines.at(-1) ?? '';
  }

  test('clone over protocol v2, verified in the packet trace', async () => {
    const trace = join(work, 'trace-v2');
    const dir = join(work, 'v2');
    await git(suite, ['-c', 'protocol.version=2', 'clone', '-q', `${anon}demo.git`, dir], {
      env: { GIT_TRACE_PACKET: trace },
    });
    assert.match(await readFile(trace, 'utf8'), /git< version 2/);
    assert.equal(await revParse(dir, 'HEAD'), demoHead);
  });

  test('clone over protocol v0', async () => {
    const trace = join(work, 'trace-v0');
    const dir = join(work, 'v0');
    await git(suite, ['-c', 'protocol.version=0', 'clone', '-q', `${anon}demo.git`, dir], {
      env: { GIT_TRACE_PACKET: trace },
    });
    assert.doesNotMatch(await readFile(trace, 'utf8'), /version 2/);
    assert.equal(await revParse(dir, 'HEAD'), demoHead);
  });

  test('shallow clone (--depth 1)', async () => {
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

  test('push as a user Apache authenticated; the reflog names them as git http-backend does', async () => {
    // Reads stay anonymous on this host.
    await git(suite, ['ls-remote', `${pushAuth}demo.git`, 'refs/heads/main']);
    const { dir, commit } = await cloneWithCommit('pusher');
    await git(suite, ['push', '-q', `${alice}demo.git`, 'HEAD:refs/heads/feature'], { cwd: dir });
    assert.equal(await revParse(join(root, 'demo.git'), 'refs/heads/feature'), commit);
    // git http-backend: GIT_COMMITTER_NAME=REMOTE_USER, GIT_COMMITTER_EMAIL=REMOTE_USER@http.REMOTE_ADDR.
    const line = await lastReflogLine('demo.git', 'refs/heads/feature');
    assert.match(
      line,
      new RegExp(`^0{40} ${commit} alice <alice@http\\.127\\.0\\.0\\.1> \\d+ [+-]\\d{4}\\tpush$`),
    );
  });

  test('an anonymous push is refused with 403, so git does not ask for credentials', async () => {
    const { dir } = await cloneWithCommit('anonymous');
    await assert.rejects(
      git(suite, ['push', '-q', `${anon}demo.git`, 'HEAD:refs/heads/anon'], { cwd: dir }),
      /403/,
    );
    const res = await fetch(`${anon}demo.git/info/refs?service=git-receive-pack`);
    assert.equal(res.status, 403);
    await res.arrayBuffer();
    // Where Apache guards pushes, the advertisement is challenged instead (that is what makes git send the
    // credentials from the URL).
    const challenged = await fetch(`${pushAuth}demo.git/info/refs?service=git-receive-pack`);
    assert.equal(challenged.status, 401);
    assert.match(challenged.headers.get('www-authenticate') ?? '', /^Basic/);
    await challenged.arrayBuffer();
    await assert.rejects(
      git(suite, ['rev-parse', '--verify', 'refs/heads/anon'], { cwd: join(root, 'demo.git') }),
    );
  });

  test('/project serves project.git, as git http-backend does', async () => {
    const dir = join(work, 'project');
    await git(suite, ['clone', '-q', `${anon}project`, dir]);
    assert.equal(await revParse(dir, 'HEAD'), projectHead);
  });

  test('/work serves the non-bare repository work/.git, as git http-backend does', async () => {
    const dir = join(work, 'non-bare');
    await git(suite, ['clone', '-q', `${anon}work`, dir]);
    assert.equal(await revParse(dir, 'HEAD'), nonBareHead);
    assert.equal(await readFile(join(dir, 'w.txt'), 'utf8'), 'non-bare\n');
  });

  test('SetEnv GIT_COMMITTER_NAME and GIT_COMMITTER_EMAIL: the reflog shows that identity', async () => {
    const { dir, commit } = await cloneWithCommit('committer');
    await git(suite, ['push', '-q', `${committer}demo.git`, 'HEAD:refs/heads/committer'], { cwd: dir });
    assert.equal(await revParse(join(root, 'demo.git'), 'refs/heads/committer'), commit);
    // git http-backend sets them from REMOTE_USER only when they are unset.
    const line = await lastReflogLine('demo.git', 'refs/heads/committer');
    assert.match(
      line,
      new RegExp(`^0{40} ${commit} Apache Committer <committer@example\\.org> \\d+ [+-]\\d{4}\\tpush$`),
    );
  });

  test('SetEnv GIT_NAMESPACE: a clone sees only the refs of that namespace', async () => {
    for (const version of ['0', '2']) {
      const { stdout } = await git(suite, [
        '-c',
        `protocol.version=${version}`,
        'ls-remote',
        `${namespaced}ns.git`,
      ]);
      // git 2.39's ls-refs (v2) lists a namespaced HEAD twice, git http-backend under mod_cgi too.
      const listed = new Set(stdout.toString().trim().split('\n'));
      assert.deepEqual(
        [...listed],
        [`${nsHead}\tHEAD`, `${nsHead}\trefs/heads/nsbranch`],
        `protocol v${version}`,
      );
    }
    const dir = join(work, 'namespaced');
    await git(suite, ['clone', '-q', `${namespaced}ns.git`, dir]);
    assert.equal(await revParse(dir, 'HEAD'), nsHead);
    const refs = await git(suite, ['for-each-ref', '--format=%(refname)', 'refs/remotes'], { cwd: dir });
    assert.deepEqual(refs.stdout.toString().trim().split('\n'), [
      'refs/remotes/origin/HEAD',
      'refs/remotes/origin/nsbranch',
    ]);
  });

  test('SetEnv GIT_PROTOCOL "" makes a protocol.version=2 client fall back to v0', async () => {
    const trace = join(work, 'trace-forced-v0');
    const curl = join(work, 'curl-forced-v0');
    const dir = join(work, 'forced-v0');
    await git(suite, ['-c', 'protocol.version=2', 'clone', '-q', `${forcedV0}demo.git`, dir], {
      env: { GIT_TRACE_PACKET: trace, GIT_TRACE_CURL: curl, GIT_TRACE_CURL_NO_DATA: '1' },
    });
    const packets = await readFile(trace, 'utf8');
    assert.match(
      await readFile(curl, 'utf8'),
      /=> Send header: Git-Protocol: version=2/,
      'the client asks for v2',
    );
    const answered = /git< version 2/.test(packets)
      ? 'v2'
      : /git< # service=git-upload-pack/.test(packets)
        ? 'v0'
        : '?';
    assert.equal(answered, 'v0', 'the protocol the server answered with');
    assert.equal(await revParse(dir, 'HEAD'), demoHead);
  });

  test('a 32 MB push is streamed chunked, arrives intact, and leaves no git process behind', async () => {
    const dir = join(work, 'big');
    await git(suite, ['clone', '-q', `${anon}big.git`, dir]);
    for (let i = 0; i < 8; i++) await writeFile(join(dir, `blob-${i}.bin`), randomBytes(4 * 1024 * 1024));
    await git(suite, ['add', '-A'], { cwd: dir });
    await git(suite, [...identity, 'commit', '-q', '-m', 'big'], { cwd: dir });
    const commit = await revParse(dir, 'HEAD');
    const trace = join(work, 'trace-big-push');
    // A body larger than http.postBuffer (1 MiB by default) goes out chunked, without Content-Length.
    await git(suite, ['push', '-q', `${alice}big.git`, 'HEAD:refs/heads/main'], {
      cwd: dir,
      env: { GIT_TRACE_CURL: trace, GIT_TRACE_CURL_NO_DATA: '1' },
      timeoutMs: 180_000,
    });
    const headers = await readFile(trace, 'utf8');
    assert.match(
      headers,
      /=> Send header: POST \/big\.git\/git-receive-pack[\s\S]*?Transfer-Encoding: chunked/,
    );
    const server = join(root, 'big.git');
    assert.equal(await revParse(server, 'refs/heads/main'), commit);
    await git(suite, ['fsck', '--full', '--strict'], { cwd: server, timeoutMs: 180_000 });
    const { stdout } = await git(suite, ['ls-tree', '-r', '--long', 'refs/heads/main'], { cwd: server });
    const sizes = stdout
      .toString()
      .trim()
      .split('\n')
      .filter((l) => l.includes('blob-'))
      .map((l) => Number(l.split(/\s+/)[3]));
    assert.deepEqual(
      sizes,
      Array.from({ length: 8 }, () => 4 * 1024 * 1024),
    );
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });
});
