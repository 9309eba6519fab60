import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import {
  assertSameAnswer,
  postUploadPack,
  uploadPackRequest,
  v0Fetch,
  v2Fetch,
} from '../helpers/git-wire.js';
import { gitLocation, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, freePort, startProcess } from '../helpers/proc.js';
import { listProcesses } from '../helpers/procfs.js';
import { git, randomBlobRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

const MB = 1024 * 1024;
const REPO_BYTES = 24 * MB;

interface Figures {
  readonly splicedResponses: number;
  readonly splicedBytes: number;
  readonly spawned: number;
}

/**
 * git-fcgi-splice moves a large response's rest (past its first MiB) from git's stdout into the
 * FastCGI connection, past the event loop. Through nginx, over a UNIX socket and over TCP with
 * kept-alive connections: what the client gets says what git says (compared with a daemon that
 * splices nothing), the access line and the status page count the spliced bytes, and every way
 * a response can end early (the client leaves, idle_timeout) ends git and breaks the transfer
 * at the client instead of handing it a short pack as complete.
 */
describe('splice: large responses leave the event loop', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let head: string;
  let spliced: GitFcgi;
  let plain: GitFcgi;
  let nginx: Nginx;
  let dir: string;

  const figures = async (daemon: GitFcgi): Promise<Figures> => {
    const res = await fetch(`http://127.0.0.1:${daemon.httpPort ?? 0}/git-fcgi-status?json`);
    const json = (await res.json()) as Record<string, number>;
    return {
      splicedResponses: json.spliced_responses ?? NaN,
      splicedBytes: json.spliced_bytes ?? NaN,
      spawned: json.spawned ?? NaN,
    };
  };

  const startDaemon = async (t: Cleanup, name: string, ini: string, listen?: string): Promise<GitFcgi> => {
    const file = join(dir, `${name}.ini`);
    await writeFile(file, `[server]\nstatus_path = /git-fcgi-status\n${ini}`);
    return startGitFcgi(t, [
      '-c',
      file,
      '--listen',
      listen ?? `unix:${join(dir, `${name}.sock`)}`,
      '--http',
      '127.0.0.1:0',
      '--project-root',
      root,
      '--export-all',
    ]);
  };

  /**
   * curl POSTing the clone request to nginx server `server` at `rate` per second into a file of
   * its own (`--fail` when `fail`): the body git's client would send, a reader as slow as asked.
   */
  const slowClient = async (t: Cleanup, server: 0 | 1, rate: string, fail = false) => {
    const out = join(await tmpDir(t, 'curl-'), 'pack');
    const body = join(dir, 'request');
    await writeFile(body, uploadPackRequest(head));
    const curl = await startProcess(t, 'curl', [
      '-sS',
      ...(fail ? ['--fail'] : []),
      '--limit-rate',
      rate,
      '-o',
      out,
      '-H',
      'Content-Type: application/x-git-upload-pack-request',
      '--data-binary',
      `@${body}`,
      nginx.url(server, '/big.git/git-upload-pack'),
    ]);
    const received = async (): Promise<number> => (await stat(out).catch(() => ({ size: 0 }))).size;
    return { curl, out, received };
  };

  before(async () => {
    dir = await tmpDir(suite, 'splice-');
    root = join(dir, 'repos');
    const repo = await randomBlobRepo(suite, root, 'big.git', { bytes: REPO_BYTES });
    head = repo.head;
    await git(suite, ['repack', '-adq'], { cwd: repo.path });
    // One thread: two runs of git then send the same pack.
    await git(suite, ['config', 'pack.threads', '1'], { cwd: repo.path });
    // The caches would answer repeated requests themselves: these tests are about git's stream.
    const noCaches = 'idle_timeout = 3s\n[git]\npack_cache = 0\nfetch_cache = 0\n';
    spliced = await startDaemon(suite, 'spliced', noCaches);
    plain = await startDaemon(suite, 'plain', `splice = off\n${noCaches}`);
    nginx = await startNginx(suite, {
      servers: [
        { locations: gitLocation({ socket: join(dir, 'spliced.sock') }) },
        { locations: gitLocation({ socket: join(dir, 'plain.sock') }) },
      ],
    });
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });

  test('a clone is spliced, and says what git says', async (t) => {
    const before = await figures(spliced);
    for (const [protocol, body] of [
      // Without progress messages: how git splits those into packets depends on timing.
      [undefined, v0Fetch(head, [])],
      ['version=2', v2Fetch(head, [])],
    ] as const) {
      const ours = await postUploadPack(nginx.url(0, '/big.git/git-upload-pack'), body, protocol);
      const theirs = await postUploadPack(nginx.url(1, '/big.git/git-upload-pack'), body, protocol);
      assert.equal(ours.status, 200);
      assert.ok(ours.body.length > REPO_BYTES, `the whole pack (${ours.body.length} bytes)`);
      assertSameAnswer(ours, theirs, `protocol ${protocol ?? 'v0'}`);
    }
    const now = await figures(spliced);
    assert.equal(now.splicedResponses - before.splicedResponses, 2, 'both answers were spliced');
    assert.ok(
      now.splicedBytes - before.splicedBytes > 2 * (REPO_BYTES - 2 * MB),
      `all but the first MiB of each (${now.splicedBytes - before.splicedBytes} bytes)`,
    );
    assert.match(spliced.logs(), /status=200 .*spliced=\d{8}/, 'the access line says how much was spliced');
    assert.equal((await figures(plain)).splicedResponses, 0, 'splice = off splices nothing');
    assert.doesNotMatch(plain.logs(), /spliced=/);

    // git itself, over both protocols: the clone is whole.
    for (const version of ['0', '2']) {
      const clone = join(await tmpDir(t, 'clone-'), 'c');
      await git(t, ['-c', `protocol.version=${version}`, 'clone', '-q', nginx.url(0, '/big.git'), clone]);
      await git(t, ['fsck', '--strict', '--no-progress'], { cwd: clone });
    }
    assert.equal((await figures(spliced)).splicedResponses - now.splicedResponses, 2);
  });

  test('over TCP with kept-alive connections: responses after a spliced one on the same connection', async (t) => {
    const port = await freePort();
    const tcp = await startDaemon(
      t,
      'tcp',
      'idle_timeout = 3s\n[git]\npack_cache = 0\nfetch_cache = 0\n',
      `127.0.0.1:${port}`,
    );
    const front = await startNginx(t, {
      // One connection, kept: every request below goes over it, after the spliced ones.
      httpExtra: `upstream gitfcgi { server 127.0.0.1:${port}; keepalive 1; }`,
      servers: [
        {
          locations: gitLocation({ socket: 'unused', extra: 'fastcgi_keep_conn on;' }).replace(
            'fastcgi_pass unix:unused;',
            'fastcgi_pass gitfcgi;',
          ),
        },
      ],
    });
    for (let i = 0; i < 3; i++) {
      const answer = await postUploadPack(
        front.url(0, '/big.git/git-upload-pack'),
        uploadPackRequest(head),
        undefined,
      );
      assert.equal(answer.status, 200);
      const refs = await fetch(front.url(0, '/big.git/info/refs?service=git-upload-pack'));
      assert.equal(refs.status, 200);
      assert.match(await refs.text(), new RegExp(head));
    }
    const clone = join(await tmpDir(t, 'clone-'), 'c');
    await git(t, ['clone', '-q', front.url(0, '/big.git'), clone]);
    await git(t, ['fsck', '--strict', '--no-progress'], { cwd: clone });
    const counted = await figures(tcp);
    assert.equal(counted.splicedResponses, 4);
  });

  test('a slow client: progress reports keep idle_timeout away while the splice moves bytes', async (t) => {
    // 24 MB at 4 MB/s: about 6 s, twice idle_timeout (3 s), all of it past the first MiB spliced.
    const { curl, out } = await slowClient(t, 0, '4M', true);
    const status = await withDeadline(curl.exited, 30_000, 'curl to end');
    assert.equal(status.code, 0, `${curl.output()}\n${spliced.logs().slice(-2000)}`);
    assert.ok((await stat(out)).size > REPO_BYTES);
    assert.doesNotMatch(spliced.logs(), /ERR_IDLE_TIMEOUT/);
  });

  test('the client leaves mid-splice: git is ended, the helper lets go of the connection', async (t) => {
    const helper = await spliceHelperOf(spliced);
    const fdsBefore = await openFds(helper);
    const { curl, received } = await slowClient(t, 0, '1M');
    // Past the first MiB and a bit: the splice has it.
    await waitFor(async () => (await received()) > 2 * MB, {
      timeoutMs: 10_000,
      what: 'curl to get 2 MB',
    });
    assert.ok((await openFds(helper)) > fdsBefore, 'the helper holds the splice');
    curl.signal('SIGKILL');
    await assertNoGitProcesses(root, { withinMs: 5000 });
    await waitFor(() => /status=499 .*spliced=\d+/.test(spliced.logs()), {
      timeoutMs: 5000,
      what: 'a 499 with spliced bytes in the access line',
    }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${spliced.logs().slice(-1500)}`);
    });
    await waitFor(async () => (await openFds(helper)) === fdsBefore, {
      timeoutMs: 5000,
      what: 'the helper to close what it held',
    });
  });

  /**
   * A client that stops reading: idle_timeout ends git, and the connection is cut off with a
   * record nginx must reject; it stays open until nginx has taken that record (a plain close
   * would end the response as if whole), so the client sees the transfer break when it reads on.
   */
  const stalled = async (t: Cleanup, server: 0 | 1): Promise<void> => {
    const daemon = server === 0 ? spliced : plain;
    const helper = server === 0 ? await spliceHelperOf(spliced) : null;
    const fdsBefore = helper === null ? 0 : await openFds(helper);
    const { curl, out, received } = await slowClient(t, server, '1M');
    await waitFor(async () => (await received()) > 2 * MB, {
      timeoutMs: 10_000,
      what: 'curl to get 2 MB',
    });
    // Stopped: once the buffers between are full, nothing moves for longer than idle_timeout (3 s).
    curl.signal('SIGSTOP');
    const line =
      server === 0 ? /status=504 .*spliced=\d+ .*ERR_IDLE_TIMEOUT/ : /status=504 .*ERR_IDLE_TIMEOUT/;
    await waitFor(() => line.test(daemon.logs()), {
      timeoutMs: 20_000,
      what: 'idle_timeout to end the request',
    }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${daemon.logs().slice(-1500)}`);
    });
    await assertNoGitProcesses(root, { withinMs: 5000 });
    if (helper !== null) {
      await waitFor(async () => (await openFds(helper)) === fdsBefore, {
        timeoutMs: 5000,
        what: 'the helper to close what it held',
      });
    }
    curl.signal('SIGCONT');
    const status = await withDeadline(curl.exited, 30_000, 'curl to end');
    assert.notEqual(status.code, 0, `the transfer breaks at the client: ${curl.output()}`);
    const got = await readFile(out);
    assert.ok(got.length < REPO_BYTES, `a short answer (${got.length} bytes)`);
    assert.notEqual(got.subarray(-4).toString(), '0000', 'no final flush-pkt');
  };

  test('a client that stops reading: idle_timeout ends git and the splice, and the transfer breaks at the client', (t) =>
    stalled(t, 0));

  test('the same without the splice: the cut-off connection waits for nginx to take the invalid record', (t) =>
    stalled(t, 1));
});

/** The daemon's git-fcgi-splice: its child with that name. */
async function spliceHelperOf(daemon: GitFcgi): Promise<number> {
  const helper = (await listProcesses()).find((p) => p.ppid === daemon.pid && p.comm === 'git-fcgi-splice');
  assert.ok(helper !== undefined, 'the daemon runs git-fcgi-splice');
  return helper.pid;
}

async function openFds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}
