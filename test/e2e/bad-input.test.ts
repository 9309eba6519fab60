import assert from 'node:assert/strict';
import { symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { suiteCleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { beginRequest, fcgiExchange, gitParams, paramsRecords } from '../helpers/fcgi-client.js';
import { gitLocation, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { createBareRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

/** The access log lines of `daemon`, as `status exit` pairs keyed by nothing but order. */
function accessLines(daemon: GitFcgi): string[] {
  return daemon
    .logs()
    .split('\n')
    .filter((l) => / access /.test(l));
}

/** Waits for `count` access lines with `status` (they are written just after the response). */
async function linesWithStatus(daemon: GitFcgi, status: number, count: number): Promise<string[]> {
  const matching = (): string[] => accessLines(daemon).filter((l) => l.includes(` status=${status} `));
  await waitFor(() => matching().length >= count, { timeoutMs: 10_000, what: `${count} access lines` });
  return matching();
}

/** `curl --path-as-is`: the request target goes to nginx exactly as written. */
async function status(url: string, args: readonly string[] = []): Promise<number> {
  const result = await run(
    'curl',
    ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--path-as-is', ...args, url],
    {
      timeoutMs: 10_000,
    },
  );
  return Number(result.stdout.toString());
}

/**
 * Hostile requests through nginx: each gets a clean 4xx and nothing is spawned (the access line
 * says exit=null), whether nginx or git-fcgi refuses it.
 */
describe('bad input over HTTP', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let strict: GitFcgi;
  let following: GitFcgi;
  let smallParams: GitFcgi;
  let strictSock: string;
  let nginx: Nginx;

  before(async () => {
    root = await tmpDir(suite, 'bad-');
    const outside = await tmpDir(suite, 'outside-');
    await createBareRepo(suite, root, 'r.git');
    await createBareRepo(suite, outside, 'secret.git');
    await symlink(join(outside, 'secret.git'), join(root, 'escape.git'));
    await symlink(join(root, 'r.git'), join(root, 'alias.git'));
    const sockets = await tmpDir(suite, 'sock-');
    strictSock = join(sockets, 'strict.sock');
    const config = join(sockets, 'git-fcgi.ini');
    await writeFile(config, '[server]\nmax_params_size = 32K\n[git]\nfollow_symlinks = true\n');
    const common = ['--project-root', root, '--export-all'];
    strict = await startGitFcgi(suite, ['--listen', `unix:${strictSock}`, ...common]);
    following = await startGitFcgi(suite, [
      '-c',
      config,
      '--listen',
      `unix:${join(sockets, 'f.sock')}`,
      ...common,
    ]);
    smallParams = following;
    nginx = await startNginx(suite, {
      servers: [
        { locations: gitLocation({ socket: strictSock }) },
        {
          locations: gitLocation({ socket: join(sockets, 'f.sock') }),
          // Lets a 40 KB header through nginx, so git-fcgi's own cap (32K here) is what answers.
          extra: 'large_client_header_buffers 4 128k;',
        },
      ],
    });
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('traversal, encoded traversal, backslash, NUL, overlong UTF-8, non-UTF-8 and absolute paths', async () => {
    const cases = [
      '/../r.git/HEAD',
      '/r.git/../../etc/HEAD',
      '/r.git/%2e%2e/%2e%2e/etc/HEAD',
      '/r.git/%252e%252e/HEAD',
      '/r.git%252fHEAD',
      '/r.git%5c..%5cHEAD',
      '/r.git/%5c/HEAD',
      '/r.git/%00/HEAD',
      '/r.git%00.txt/HEAD',
      '/r.git/%c0%ae%c0%ae/HEAD',
      '/%c0%ae%c0%ae/r.git/HEAD',
      '/%ff%fe.git/HEAD',
      '/r.git/objects/%e9/HEAD',
      '//etc/passwd',
      '/etc/passwd/HEAD',
      `/${root}/r.git/HEAD`,
      '/-r.git/HEAD',
    ];
    const before = accessLines(strict).length;
    for (const path of cases) {
      const code = await status(nginx.url(0, path));
      assert.ok(code >= 400 && code < 500, `${path}: ${code}`);
    }
    // Some of these nginx refuses itself; wait for the lines of those that reached git-fcgi.
    await sleep(300);
    const lines = accessLines(strict).slice(before);
    assert.ok(lines.length > 0, 'some reached git-fcgi');
    for (const line of lines) assert.match(line, /exit=null/, line);
  });

  test('a repository symlink leading outside the root: refused, whether symlinks are followed or not', async () => {
    assert.equal(await status(nginx.url(0, '/escape.git/HEAD')), 404);
    assert.equal(await status(nginx.url(1, '/escape.git/HEAD')), 404);
    // One inside the root is served only where follow_symlinks = true.
    assert.equal(await status(nginx.url(0, '/alias.git/HEAD')), 404);
    assert.equal(await status(nginx.url(1, '/alias.git/HEAD')), 200);
    // Logged (and matched by the access rules) as the repository it leads to. curl has the
    // whole file once its Content-Length is in, and may close before git http-backend has
    // exited: nginx then closes its side before END_REQUEST, and the line says 499 (the bytes
    // all went out), with git's exit 0, or SIGTERM when the close came first (a client gone
    // ends its backend; seen in CI).
    await waitFor(
      () =>
        accessLines(following).some((l) =>
          /repo=r\.git .*(status=200 .*exit=0|status=499 .*exit=(0|SIGTERM))/.test(l),
        ),
      {
        timeoutMs: 10_000,
        what: 'the served alias in the access log',
      },
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}; the log at the deadline:\n${following.logs()}`);
    });
    for (const line of [...accessLines(strict), ...accessLines(following)].filter((l) => /escape/.test(l)))
      assert.match(line, /status=404 .*exit=null/);
  });

  test("wrong content types: git http-backend's answer, in git's order (404 and 403 before 415)", async () => {
    for (const [path, type, expected] of [
      ['/r.git/git-upload-pack', 'text/plain', 415],
      ['/r.git/git-upload-pack', 'application/x-git-upload-pack-request; charset=utf-8', 415],
      ['/r.git/git-upload-pack', 'application/x-git-receive-pack-request', 415],
      // Anonymous: receive-pack is off, which git says first.
      ['/r.git/git-receive-pack', 'application/x-www-form-urlencoded', 403],
      ['/nope.git/git-upload-pack', 'text/plain', 404],
    ] as const) {
      const code = await status(nginx.url(0, path), ['-H', `Content-Type: ${type}`, '-d', '0000']);
      assert.equal(code, expected, `${path} with ${type}`);
    }
    const lines = await linesWithStatus(strict, 415, 3);
    assert.equal(lines.length, 3);
    for (const line of lines) assert.match(line, /status=415 .*exit=0/, line);
  });

  test('methods other than GET, HEAD and POST: 405, nothing spawned', async () => {
    for (const method of ['PUT', 'DELETE', 'OPTIONS', 'PATCH', 'PROPFIND']) {
      assert.equal(await status(nginx.url(0, '/r.git/info/refs'), ['-X', method]), 405, method);
    }
    const lines = await linesWithStatus(strict, 405, 5);
    assert.equal(lines.length, 5);
    for (const line of lines) assert.match(line, /status=405 .*exit=null/, line);
  });

  test('huge params: 4xx from nginx at its limit, 431 from git-fcgi at its own', async () => {
    // Default nginx: a 64 KB header is more than large_client_header_buffers hold.
    const big = `X-Big: ${'b'.repeat(64 * 1024)}`;
    const code = await status(nginx.url(0, '/r.git/info/refs'), ['-H', big]);
    assert.ok(code >= 400 && code < 500, `nginx answers ${code}`);
    const before = accessLines(smallParams).length;
    const medium = `X-Big: ${'b'.repeat(40 * 1024)}`;
    assert.equal(await status(nginx.url(1, '/r.git/info/refs'), ['-H', medium]), 431);
    await waitFor(() => /ERR_FCGI_PARAMS_TOO_LARGE/.test(smallParams.logs()), {
      timeoutMs: 10_000,
      what: 'the warning',
    });
    assert.equal(accessLines(smallParams).length, before, 'no request reached the handler');
    assert.equal(await status(nginx.url(1, '/r.git/info/refs')), 200, 'the next request is served');
  });

  test('header injection in params never becomes a response header', async () => {
    const inject = 'x\r\nX-Injected: yes\r\nStatus: 200';
    for (const extra of [
      { HTTP_GIT_PROTOCOL: `version=2${inject}` },
      { GIT_PROTOCOL: `version=2${inject}` },
      { REQUEST_ID: `abc${inject}` },
      { HTTP_X_FORWARDED_FOR: inject },
      { QUERY_STRING: `service=git-upload-pack${inject}` },
      { REMOTE_USER: `alice${inject}` },
    ]) {
      const params = gitParams('/r.git/info/refs?service=git-upload-pack', extra);
      const reply = await fcgiExchange(strictSock, Buffer.concat([beginRequest(), paramsRecords(params)]));
      const head = reply.stdout.subarray(0, reply.stdout.indexOf('\r\n\r\n')).toString('latin1');
      assert.doesNotMatch(head, /X-Injected/i, JSON.stringify(extra));
      assert.equal(head.match(/^Status:/gm)?.length, 1, 'one Status line');
    }
    const pathInjection = gitParams('/r.git/info/refs', { PATH_INFO: `/r.git\r\nX-Injected: yes/info/refs` });
    const reply = await fcgiExchange(
      strictSock,
      Buffer.concat([beginRequest(), paramsRecords(pathInjection)]),
    );
    assert.equal(reply.status, 400);
  });
});

test('environment hygiene: only the allowlist reaches the backend', async (t) => {
  const root = await tmpDir(t, 'env-');
  await createBareRepo(t, root, 'r.git');
  const sock = join(await tmpDir(t, 'sock-'), 'g.sock');
  const printEnv = join(repoRoot, 'test', 'fixtures', 'backends', 'print-env.sh');
  await startGitFcgi(t, ['--listen', `unix:${sock}`, '--project-root', root, '--backend', printEnv], {
    env: {
      HTTP_PROXY: 'http://daemon-proxy:3128',
      http_proxy: 'http://daemon-proxy:3128',
      HTTPS_PROXY: 'http://daemon-proxy:3128',
      GIT_DIR: '/etc',
      GIT_CONFIG_PARAMETERS: "'core.sshcommand=evil'",
      GIT_SSH_COMMAND: 'evil',
      SECRET_TOKEN: 'hunter2',
      HOME: '/daemon-home',
      XDG_CONFIG_HOME: '/daemon-xdg',
      NODE_OPTIONS: '--max-old-space-size=512',
    },
  });
  const hostile = [
    'fastcgi_param LD_PRELOAD /tmp/evil.so;',
    'fastcgi_param GIT_CONFIG_PARAMETERS "\'core.pager=evil\'";',
    'fastcgi_param GIT_DIR /etc;',
    'fastcgi_param GIT_EXEC_PATH /tmp;',
    'fastcgi_param HTTP_PROXY http://param-proxy;',
    'fastcgi_param SCRIPT_FILENAME /bin/sh;',
    'fastcgi_param PATH /tmp/evil;',
    'fastcgi_param HTTP_lower_case x;',
  ].join(' ');
  const nginx = await startNginx(t, {
    servers: [{ locations: gitLocation({ socket: sock, extra: hostile }) }],
  });
  const result = await run(
    'curl',
    [
      '-s',
      '-H',
      'Proxy: http://header-proxy:3128',
      '-H',
      'Authorization: Basic YTpi',
      '-H',
      'Proxy-Authorization: Basic YTpi',
      '-H',
      'Cookie: session=1',
      '-H',
      'X-Custom: yes',
      nginx.url(0, '/r.git/info/refs?service=git-upload-pack'),
    ],
    { timeoutMs: 10_000 },
  );
  const env = new Map(
    result.stdout
      .toString()
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
  );
  // What the daemon sets, the CGI variables nginx sends, and what /bin/sh adds itself.
  const allowed = new Set([
    ...['PATH', 'LC_ALL', 'GATEWAY_INTERFACE', 'SERVER_SOFTWARE', 'PATH_INFO', 'GIT_PROJECT_ROOT'],
    ...['GIT_FCGI_REQUEST_ID', 'GIT_HTTP_EXPORT_ALL', 'GIT_PROTOCOL', 'CONTENT_LENGTH', 'REMOTE_USER'],
    // The pusher's identity for hooks (access control), and where the hook finds the config.
    ...['GIT_FCGI_USER', 'GIT_FCGI_GROUPS', 'GIT_FCGI_REPO', 'GIT_FCGI_CONFIG'],
    ...['REQUEST_METHOD', 'QUERY_STRING', 'CONTENT_TYPE', 'SERVER_PROTOCOL', 'SERVER_NAME', 'SERVER_PORT'],
    ...[
      'SERVER_ADDR',
      'REMOTE_ADDR',
      'REMOTE_PORT',
      'REMOTE_HOST',
      'AUTH_TYPE',
      'REQUEST_URI',
      'SCRIPT_NAME',
    ],
    ...['HTTPS', 'GIT_NAMESPACE', 'PWD', 'SHLVL', '_', 'OLDPWD'],
    // The serving user's home from the password database, as sshd sets it (not the daemon's HOME).
    'HOME',
  ]);
  const unexpected = [...env.keys()].filter((name) => !allowed.has(name) && !/^HTTP_[A-Z0-9_]+$/.test(name));
  assert.deepEqual(unexpected, [], `not on the allowlist: ${unexpected.join(', ')}`);
  for (const name of ['HTTP_PROXY', 'HTTP_AUTHORIZATION', 'HTTP_PROXY_AUTHORIZATION', 'HTTP_COOKIE']) {
    assert.equal(env.get(name), undefined, `${name} must not reach the backend`);
  }
  assert.equal(env.get('PATH'), '/usr/local/bin:/usr/bin:/bin');
  assert.equal(env.get('HOME'), userInfo().homedir);
  assert.equal(env.get('HTTP_X_CUSTOM'), 'yes');
  assert.equal(env.get('GIT_PROJECT_ROOT'), root);
});
