import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup } from '../helpers/cleanup.js';
import { startGitStack } from '../helpers/stack.js';
import { repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import {
  beginRequest,
  fcgiExchange,
  gitParams,
  paramsRecords,
  stdinRecords,
} from '../helpers/fcgi-client.js';
import type { Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, gitProcessesUnder, run, startProcess } from '../helpers/proc.js';
import { createBareRepo, randomBlobRepo } from '../helpers/repos.js';
import { backendsOf } from '../helpers/procfs.js';
import { peakRssMb } from '../helpers/rss.js';
import { tmpDir } from '../helpers/tmp.js';

const backend = (name: string): string => join(repoRoot, 'test', 'fixtures', 'backends', name);

/** What nginx sends for a push's POST, minus the body. */
function receivePackParams(length: number): Record<string, string> {
  return gitParams('/big.git/git-receive-pack', {
    REQUEST_METHOD: 'POST',
    CONTENT_TYPE: 'application/x-git-receive-pack-request',
    CONTENT_LENGTH: String(length),
    REMOTE_USER: 'alice',
  });
}

describe('faults with the real git http-backend', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let sock: string;
  let daemon: GitFcgi;
  let nginx: Nginx;

  before(async () => {
    root = await tmpDir(suite, 'faults-');
    await randomBlobRepo(suite, root, 'big.git', { bytes: 40 * 1024 * 1024 });
    ({ sock, daemon, nginx } = await startGitStack(suite, root, { args: ['--export-all'] }));
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('client disconnect mid-clone leaves no git process after 2 s', async (t) => {
    const dir = await tmpDir(t, 'abort-');
    // A client reading at 1 MB/s is still mid-pack when it is killed.
    const clone = await startProcess(
      t,
      'curl',
      [
        '-s',
        '--limit-rate',
        '1M',
        '-o',
        '/dev/null',
        '-H',
        'Content-Type: application/x-git-upload-pack-request',
        '--data-binary',
        '@-',
        `${nginx.url(0)}big.git/git-upload-pack`,
      ],
      { cwd: dir, stdin: 'pipe' },
    );
    const refs = await (await fetch(`${nginx.url(0)}big.git/info/refs`)).text();
    const head = refs.slice(0, 40);
    clone.stdin?.end(`0032want ${head}\n00000009done\n`);
    await waitFor(async () => (await gitProcessesUnder(root)).length > 0, {
      timeoutMs: 5000,
      what: 'git to start',
    });
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await gitProcessesUnder(root)).length > 0, 'git is still sending the pack');
    await clone.stop();
    const stopped = Date.now();
    // On a loaded machine nginx may take a moment to notice; the whole chain gets 5 s, of which
    // the daemon's own part (SIGTERM, SIGKILL after 2 s) is what the access line times.
    await waitFor(() => /status=499/.test(daemon.logs()), {
      timeoutMs: 5000,
      what: `a 499 in the access log\n${daemon.logs()}`,
    });
    await assertNoGitProcesses(root, { withinMs: Math.max(500, 5000 - (Date.now() - stopped)) });
  });

  test('a push body shorter than CONTENT_LENGTH gets the backend killed', async () => {
    const reply = await fcgiExchange(
      sock,
      Buffer.concat([
        beginRequest(),
        paramsRecords(receivePackParams(100_000)),
        stdinRecords(Buffer.from('0000')),
      ]),
    );
    assert.equal(reply.status, 400);
    assert.ok(reply.end, 'END_REQUEST was sent');
    await assertNoGitProcesses(root, { withinMs: 2000 });
    await waitFor(() => /ERR_BODY_TRUNCATED/.test(daemon.logs()), {
      timeoutMs: 2000,
      what: 'the reason logged',
    });
  });

  test('random bytes on the socket close that connection only; the next request is served', async () => {
    for (let i = 0; i < 20; i++) {
      await new Promise<void>((resolve) => {
        const s = net.connect(sock, () => s.end(randomBytes(64 * 1024)));
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.resume();
      });
    }
    const http = await new Promise<void>((resolve) => {
      const s = net.connect(sock, () => s.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
    });
    void http;
    const res = await fetch(`${nginx.url(0)}big.git/info/refs?service=git-upload-pack`);
    assert.equal(res.status, 200);
    assert.match(daemon.logs(), /ERR_FCGI_VERSION/);
  });

  test('traversal is refused before anything is spawned', async () => {
    for (const path of [
      '/../big.git/HEAD',
      '/big.git/%2e%2e/HEAD',
      '/big.git\\HEAD',
      '/big.git/objects/../HEAD',
    ]) {
      const reply = await fcgiExchange(sock, Buffer.concat([beginRequest(), paramsRecords(gitParams(path))]));
      assert.equal(reply.status, 400, path);
    }
    assert.doesNotMatch(daemon.logs(), /status=400 .*exit=\d/);
  });
});

describe('misbehaving backends', () => {
  async function serve(t: { after(fn: () => unknown): void }, script: string, extra: string[] = []) {
    const root = await tmpDir(t, 'bk-');
    await createBareRepo(t, root, 'r.git');
    const { daemon, nginx } = await startGitStack(t, root, {
      args: ['--export-all', '--backend', backend(script), ...extra],
    });
    return { root, daemon, url: `${nginx.url(0)}r.git/info/refs` };
  }

  test('failing before its headers -> 502, reason logged', async (t) => {
    const { daemon, url } = await serve(t, 'fail-before-headers.sh');
    assert.equal((await fetch(url)).status, 502);
    await waitFor(() => /status=502/.test(daemon.logs()), { timeoutMs: 5000, what: 'the access log line' });
    assert.match(daemon.logs(), /backend: fatal: something went wrong/);
    assert.match(daemon.logs(), /ERR_CGI_HEADER/);
  });

  test('failing after its headers -> the response is cut off, not completed', async (t) => {
    const { url } = await serve(t, 'fail-after-headers.sh');
    const result = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', url], {
      timeoutMs: 10_000,
    });
    assert.notEqual(result.code, 0, 'curl sees a broken transfer');
  });

  test('a header block that is not one -> 502; one that never ends -> 502', async (t) => {
    assert.equal((await fetch((await serve(t, 'garbage-headers.sh')).url)).status, 502);
    assert.equal((await fetch((await serve(t, 'huge-headers.sh')).url)).status, 502);
  });

  test('a hung backend is killed with its whole group after idle_timeout -> 504', async (t) => {
    const { daemon, url, root } = await serve(t, 'hang.sh', ['--idle-timeout', '1s']);
    const started = Date.now();
    assert.equal((await withDeadline(fetch(url), 10_000, 'the 504')).status, 504);
    assert.ok(Date.now() - started < 5000);
    await waitFor(() => /ERR_IDLE_TIMEOUT/.test(daemon.logs()), {
      timeoutMs: 2000,
      what: 'the reason logged',
    });
    // This backend's processes only (other tests run hang.sh too): they carry its GIT_PROJECT_ROOT.
    const pids = (await backendsOf(root)).map((p) => p.pid);
    await waitFor(async () => (await backendsOf(root)).length === 0, {
      timeoutMs: 4000,
      what: `the backend's children (${pids.join(' ')}) to die`,
    });
  });

  test("the backend's environment is an allowlist, plus [env] and HOME", async (t) => {
    const root = await tmpDir(t, 'env-');
    await createBareRepo(t, root, 'r.git');
    const ini = join(root, 'git-fcgi.ini');
    await writeFile(
      ini,
      '[git]\nhome = /var/lib/example-home\n[env]\nGNUPGHOME = /etc/git-fcgi/gnupg\nTZ = "UTC"\n',
    );
    const { nginx } = await startGitStack(t, root, {
      args: ['-c', ini, '--allow-root', '--backend', backend('print-env.sh')],
      daemon: {
        env: {
          SECRET_TOKEN: 'hunter2',
          GIT_CONFIG_PARAMETERS: "'core.sshcommand=evil'",
          LD_LIBRARY_PATH: '/evil',
        },
      },
    });
    const res = await fetch(`${nginx.url(0)}r.git/info/refs?service=git-upload-pack`, {
      headers: {
        Proxy: 'http://evil:3128',
        Authorization: 'Basic YTpi',
        'Git-Protocol': 'version=2',
        'X-Custom': 'yes',
      },
    });
    const env = new Map(
      (await res.text())
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    for (const name of [
      'SECRET_TOKEN',
      'GIT_CONFIG_PARAMETERS',
      'LD_LIBRARY_PATH',
      'HTTP_PROXY',
      'HTTP_AUTHORIZATION',
    ]) {
      assert.equal(env.get(name), undefined, `${name} must not reach the backend`);
    }
    assert.equal(env.get('PATH'), '/usr/local/bin:/usr/bin:/bin');
    assert.equal(env.get('GIT_PROTOCOL'), 'version=2');
    assert.equal(env.get('HTTP_X_CUSTOM'), 'yes');
    assert.equal(env.get('PATH_INFO'), '/r.git/info/refs');
    assert.equal(env.get('GIT_PROJECT_ROOT'), root);
    assert.equal(env.get('REQUEST_METHOD'), 'GET');
    assert.equal(env.get('QUERY_STRING'), 'service=git-upload-pack');
    assert.equal(env.get('HOME'), '/var/lib/example-home');
    assert.equal(env.get('GNUPGHOME'), '/etc/git-fcgi/gnupg');
    assert.equal(env.get('TZ'), 'UTC');
  });

  test('a backend that reads slowly: the daemon holds the body back instead of buffering it', async (t) => {
    const root = await tmpDir(t, 'slow-');
    await createBareRepo(t, root, 'r.git');
    const sock = join(await tmpDir(t, 'sock-'), 'g.sock');
    const daemon = await startGitFcgi(t, [
      '--listen',
      `unix:${sock}`,
      '--project-root',
      root,
      '--backend',
      backend('slow-reader.sh'),
    ]);
    const size = 64 * 1024 * 1024;
    const params = gitParams('/r.git/git-receive-pack', {
      REQUEST_METHOD: 'POST',
      CONTENT_TYPE: 'application/x-git-receive-pack-request',
      CONTENT_LENGTH: String(size),
    });
    const reply = await fcgiExchange(
      sock,
      Buffer.concat([beginRequest(), paramsRecords(params), stdinRecords(Buffer.alloc(size, 7))]),
      60_000,
    );
    assert.equal(reply.status, 200);
    assert.equal(reply.body.toString().trim(), `received ${size}`);
    const peak = await peakRssMb(daemon.pid);
    assert.ok(peak < 100, `peak RSS ${peak} MB while a 64 MB body went to a slow backend`);
  });
});

describe('a backend that answers without reading the whole body', () => {
  test('a wrong content type is for git to answer (415); the unread rest of the body is discarded, not an error', async (t) => {
    const root = await tmpDir(t, 'ct-');
    await createBareRepo(t, root, 'r.git');
    const { daemon, nginx } = await startGitStack(t, root, { args: ['--export-all'] });
    const res = await fetch(nginx.url(0, '/r.git/git-upload-pack'), {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: randomBytes(4 * 1024 * 1024),
    });
    assert.equal(res.status, 415);
    await res.arrayBuffer();
    await waitFor(() => /status=415/.test(daemon.logs()), { timeoutMs: 5000, what: 'the access line' });
    assert.doesNotMatch(daemon.logs(), /ERR_BODY_TRUNCATED/);
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });
});
