import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ensureTestUser, TEST_USER } from '../helpers/accounts.js';
import { suiteCleanup } from '../helpers/cleanup.js';
import { cliPath, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { htpasswd, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { createBareRepo, git, gitEnv } from '../helpers/repos.js';
import { shippedNginx } from '../helpers/shipped-nginx.js';
import { tmpDir } from '../helpers/tmp.js';

/** nginx's workers run as this user, as on Debian: the socket's owner and mode then matter. */
const NGINX_USER = 'www-data';

/**
 * The README's Troubleshooting section, reproduced: each failure it lists, through real nginx
 * (workers not root), git-fcgi serving as an unprivileged user, and real git. Each test asserts
 * what the README quotes: git's message, git-fcgi's log line, nginx's error.log line.
 *
 * nginx server 0 is etc/nginx/git-fcgi.conf as shipped; server 1 a hand-written location
 * without a login for pushes and with nginx's default client_max_body_size (1m); server 2 the
 * same in front of a second git-fcgi whose socket nginx may not open.
 */
describe('troubleshooting: the errors the README lists, each with its log line', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let work: string;
  let ini: string;
  let iniText: string;
  let sock: string;
  let deniedSock: string;
  let daemon: GitFcgi;
  let denied: GitFcgi;
  let nginx: Nginx;

  /**
   * A hand-written location: no auth, default body size, and a short fastcgi_read_timeout
   * (2s standing in for nginx's default 60s). README: what not to do.
   */
  const bareLocation = (socket: string): string => `
    location / {
      fastcgi_read_timeout 2s;
      include /etc/nginx/fastcgi_params;
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
      fastcgi_request_buffering off;
      fastcgi_buffering off;
      fastcgi_pass unix:${socket};
    }`;

  const url = (server: number, path: string): string => nginx.url(server, path);

  /** Runs git, which must fail; returns what it printed. */
  async function gitFails(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
    const result = await run('git', args, {
      cwd: work,
      env: { ...(await gitEnv(suite)), ...env },
      timeoutMs: 30_000,
    });
    const printed = result.stderr.toString();
    assert.notEqual(result.code, 0, `git ${args.join(' ')} should fail:\n${printed}`);
    return printed;
  }

  /** Waits until the daemon's log, from `mark` on, matches every pattern. */
  async function logged(from: GitFcgi, mark: number, ...patterns: readonly RegExp[]): Promise<string> {
    await waitFor(() => patterns.every((p) => p.test(from.logs().slice(mark))), {
      timeoutMs: 10_000,
      what: `git-fcgi to log ${patterns.join(' and ')}`,
    }).catch((error: unknown) => {
      throw new Error(`${String(error)}\n--- log ---\n${from.logs().slice(mark)}`, { cause: error });
    });
    return from.logs().slice(mark);
  }

  async function nginxLogged(pattern: RegExp): Promise<void> {
    await waitFor(async () => pattern.test(await nginx.errorLog()), {
      timeoutMs: 10_000,
      what: `nginx to log ${pattern}`,
    });
  }

  const lineOf = (text: string, needle: string): number => text.split('\n').indexOf(needle) + 1;

  /** A test whose failure shows what git-fcgi and nginx logged meanwhile. */
  const reproduce = (name: string, body: () => Promise<void>): void => {
    test(name, async () => {
      const mark = daemon.logs().length;
      const nginxMark = (await nginx.errorLog()).length;
      try {
        await body();
      } catch (error) {
        const logs = `--- git-fcgi ---\n${daemon.logs().slice(mark)}\n--- nginx ---\n${(await nginx.errorLog()).slice(nginxMark)}`;
        throw new Error(`${String(error)}\n${logs}`, { cause: error });
      }
    });
  };

  before(async () => {
    await ensureTestUser();
    root = await tmpDir(suite, 'trouble-root-');
    work = await tmpDir(suite, 'trouble-work-');
    const exported = async (name: string): Promise<string> => {
      const { path } = await createBareRepo(suite, root, name);
      await writeFile(join(path, 'git-daemon-export-ok'), '');
      return path;
    };
    await exported('open.git');
    await createBareRepo(suite, root, 'unexported.git');
    await exported('team/app.git');
    await exported('other/x.git');
    const anon = await exported('anon.git');
    await git(suite, ['config', 'http.receivepack', 'true'], { cwd: anon });
    // A pre-receive hook that says something, then waits (on a CI system, say) until the test
    // releases it. git sends keepalives while hooks run (receive.keepAlive, 5s by default; 1s
    // here), so idle_timeout does not end it: it holds its backend as long as it waits.
    const slow = await exported('slow.git');
    await git(suite, ['config', 'receive.keepAlive', '1'], { cwd: slow });
    const waits =
      'echo "checking with CI..." >&2\ntouch hook-started\nwhile [ ! -e release ]; do sleep 0.1; done\n';
    await writeFile(join(slow, 'hooks', 'pre-receive'), `#!/bin/sh\n${waits}`);
    await chmod(join(slow, 'hooks', 'pre-receive'), 0o755);
    // One that says something, then hangs: idle_timeout (3s) comes before git's first keepalive (5s).
    const hung = await exported('hung.git');
    await writeFile(
      join(hung, 'hooks', 'pre-receive'),
      '#!/bin/sh\necho "checking with CI..." >&2\nsleep 60\n',
    );
    await chmod(join(hung, 'hooks', 'pre-receive'), 0o755);
    // One that hangs without a word, taking anonymous pushes.
    const silent = await exported('silent.git');
    await git(suite, ['config', 'http.receivepack', 'true'], { cwd: silent });
    await writeFile(join(silent, 'hooks', 'pre-receive'), '#!/bin/sh\nsleep 60\n');
    await chmod(join(silent, 'hooks', 'pre-receive'), 0o755);
    await symlink('open.git', join(root, 'alias.git'));
    // As on a real host, the serving user owns the repositories; one was copied in by root.
    const chown = await run('chown', ['-R', `${TEST_USER}:`, root], { timeoutMs: 10_000 });
    assert.equal(chown.code, 0, chown.stderr.toString());
    await chmod(root, 0o755);
    await exported('rootowned.git');

    const sockDir = await tmpDir(suite, 'trouble-sock-');
    await chmod(sockDir, 0o755);
    sock = join(sockDir, 'git-fcgi.sock');
    deniedSock = join(sockDir, 'denied.sock');
    // Readable by the serving user, as /etc/git-fcgi is: reloads read it after the privilege drop.
    const iniDir = await tmpDir(suite, 'trouble-ini-');
    await chmod(iniDir, 0o755);
    ini = join(iniDir, 'git-fcgi.ini');
    iniText = [
      '[server]',
      `listen = unix:${sock}`,
      `socket_owner = ${TEST_USER}:${NGINX_USER}`,
      `user = ${TEST_USER}`,
      'max_children = 1',
      'queue = 1',
      'queue_timeout = 2s',
      'idle_timeout = 3s',
      'status_path = /git-fcgi-status',
      '[git]',
      `project_root = ${root}`,
      '[groups]',
      'devs = alice',
      '[repo:*]',
      'read = anonymous',
      'write = anonymous',
      '[repo:team/*]',
      'read = @devs',
      'write = @devs',
      '',
    ].join('\n');
    await writeFile(ini, iniText);
    daemon = await startGitFcgi(suite, ['-c', ini]);
    // The mistake: --user without --socket-owner leaves the socket root's.
    denied = await startGitFcgi(suite, [
      '--listen',
      `unix:${deniedSock}`,
      '--project-root',
      root,
      '--user',
      TEST_USER,
    ]);

    const usersDir = await tmpDir(suite, 'trouble-users-');
    await chmod(usersDir, 0o755);
    const users = await htpasswd(suite, usersDir, { alice: 'alice-pw', bob: 'bob-pw' });
    await chmod(users, 0o644);
    const shipped = await shippedNginx({ root, htpasswd: users, socket: sock });
    nginx = await startNginx(suite, {
      user: NGINX_USER,
      httpExtra: shipped.http,
      servers: [
        { locations: shipped.server },
        { locations: bareLocation(sock) },
        { locations: bareLocation(deniedSock) },
      ],
    });
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });

  reproduce('502: nginx may not open the socket; the listening line shows its owner and mode', async () => {
    const printed = await gitFails(['clone', url(2, '/open.git'), 'c-502']);
    assert.match(printed, /The requested URL returned error: 502/);
    await nginxLogged(new RegExp(`connect\\(\\) to unix:${deniedSock} failed \\(13: Permission denied\\)`));
    // The line follows the moment the socket accepts (after the privilege drop).
    await logged(
      denied,
      0,
      new RegExp(`listening on fastcgi unix:${deniedSock} \\(owner root:root, mode 0660\\)`),
    );
    // Fixed: the socket_owner setting hands the socket to nginx's group.
    await logged(
      daemon,
      0,
      new RegExp(`listening on fastcgi unix:${sock} \\(owner ${TEST_USER}:${NGINX_USER}, mode 0660\\)`),
    );
    await git(suite, ['clone', '-q', url(0, '/open.git'), 'c-ok'], { cwd: work });
  });

  reproduce('git-fcgi does not start: the file and line, or the setting, and why', async () => {
    const start = async (text: string): Promise<string> => {
      const file = join(work, 'broken.ini');
      await writeFile(file, text);
      const result = await run(process.execPath, [cliPath, '-c', file], { timeoutMs: 10_000 });
      assert.equal(result.code, 1, result.stderr.toString());
      return result.stderr.toString();
    };
    const typo = await start(iniText.replace('idle_timeout = 3s', 'idle_timout = 3s'));
    assert.match(typo, /^git-fcgi: .*broken\.ini:8: unknown key "idle_timout" in \[server\]$/m);
    const group = await start(iniText.replace(`:${NGINX_USER}`, ':no-such-group-x'));
    assert.match(
      group,
      /^git-fcgi: ERR_PRIVILEGES: \[server\] socket_owner: no such group: no-such-group-x$/m,
    );
    const asRoot = await start(iniText.replace(`user = ${TEST_USER}\n`, ''));
    assert.match(asRoot, /^git-fcgi: ERR_PRIVILEGES: refusing to run as root: set user/m);
    // The same mistake on a reload is refused; the running configuration keeps serving.
    const mark = daemon.logs().length;
    await writeFile(ini, iniText.replace('max_children = 1', 'max_children = lots'));
    try {
      process.kill(daemon.pid, 'SIGHUP');
      const line = lineOf(iniText, 'max_children = 1');
      await logged(
        daemon,
        mark,
        new RegExp(
          `error reload refused, keeping the running configuration reason="ERR_CONFIG: ${ini}:${line}: \\[server\\] max_children: expected a whole number from 1 to 100000, got \\\\"lots\\\\""`,
        ),
      );
    } finally {
      await writeFile(ini, iniText);
    }
  });

  reproduce('404: not exported; git-fcgi says which file is missing', async () => {
    const mark = daemon.logs().length;
    const printed = await gitFails(['clone', url(0, '/unexported.git'), 'c-404']);
    assert.match(printed, /fatal: repository '.*\/unexported\.git\/' not found/);
    await logged(
      daemon,
      mark,
      new RegExp(`warn backend: Repository not exported: '${root}/unexported.git'`),
      new RegExp(
        `warn hint: git serves only repositories holding a git-daemon-export-ok file: touch '${root}/unexported.git/git-daemon-export-ok', or set export_all = true`,
      ),
      /status=404/,
    );
  });

  reproduce('500: dubious ownership; git-fcgi names the user git runs as', async () => {
    const mark = daemon.logs().length;
    const printed = await gitFails(['clone', url(0, '/rootowned.git'), 'c-500']);
    assert.match(printed, /The requested URL returned error: 500/);
    await logged(
      daemon,
      mark,
      new RegExp(`warn backend: fatal: detected dubious ownership in repository at '${root}/rootowned.git'`),
      new RegExp(
        `warn hint: git runs as ${TEST_USER} and ${TEST_USER} does not own the repository: chown -R ${TEST_USER}: '${root}/rootowned.git'`,
      ),
    );
  });

  reproduce('403 on push: no login asked, so no REMOTE_USER', async () => {
    await git(suite, ['clone', '-q', url(1, '/open.git'), 'c-403'], { cwd: work });
    const mark = daemon.logs().length;
    const printed = await gitFails(['-C', 'c-403', 'push', 'origin', 'HEAD:refs/heads/x']);
    assert.match(printed, /The requested URL returned error: 403/);
    await logged(
      daemon,
      mark,
      /warn backend: Service not enabled: 'receive-pack'/,
      /warn hint: git http-backend takes a push only with REMOTE_USER, and this request had none/,
      /service=git-receive-pack status=403/,
    );
  });

  reproduce("413: nginx's client_max_body_size", async () => {
    const dir = join(work, 'c-413');
    await git(suite, ['clone', '-q', url(1, '/anon.git'), dir], { cwd: work });
    await writeFile(join(dir, 'big.bin'), randomBytes(3 * 1024 * 1024));
    await git(suite, ['add', 'big.bin'], { cwd: dir });
    await git(suite, ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '-m', 'big'], {
      cwd: dir,
    });
    const mark = daemon.logs().length;
    const printed = await gitFails(['-C', dir, 'push', 'origin', 'HEAD:refs/heads/big']);
    assert.match(printed, /error: RPC failed; HTTP 413/);
    await nginxLogged(/client intended to send too large chunked body/);
    // git-fcgi sees only the connection closed: nginx gave up on the push.
    await logged(
      daemon,
      mark,
      /service=git-receive-pack status=499 .*error="ERR_CLIENT_ABORT: the front end closed the connection: the client left, or the front end gave up \(its log says why\)"/,
    );
  });

  reproduce('401, 403, 404 from the [repo:] rules: the rule and where it is', async () => {
    const at = `[repo:team/*] at ${ini}:${lineOf(iniText, '[repo:team/*]')}`;
    const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    let mark = daemon.logs().length;
    assert.match(await gitFails(['clone', url(0, '/team/app.git'), 'c-401']), /could not read Username/);
    await logged(
      daemon,
      mark,
      new RegExp(esc(`ERR_UNAUTHENTICATED: anonymous may not read team/app.git (${at})`)),
    );
    mark = daemon.logs().length;
    const bob = url(0, '/team/app.git').replace('//', '//bob:bob-pw@');
    assert.match(await gitFails(['clone', bob, 'c-403r']), /The requested URL returned error: 403/);
    await logged(daemon, mark, new RegExp(esc(`ERR_FORBIDDEN: bob may not read team/app.git (${at})`)));
    mark = daemon.logs().length;
    assert.match(await gitFails(['clone', url(0, '/other/x.git'), 'c-404r']), /not found/);
    await logged(daemon, mark, /ERR_NOT_FOUND: no \[repo:…\] section matches other\/x\.git/);
  });

  reproduce('404: a repository reached through a symlink', async () => {
    const mark = daemon.logs().length;
    assert.match(await gitFails(['clone', url(0, '/alias.git'), 'c-link']), /not found/);
    await logged(
      daemon,
      mark,
      new RegExp(
        `ERR_NOT_FOUND: alias.git under ${root}: ${root}/alias.git is a symlink and follow_symlinks is off`,
      ),
    );
  });

  /** A clone of `repo` through server 0 with one new commit, and its push URL as alice. */
  async function commitToPush(repo: string): Promise<{ dir: string; pushUrl: string }> {
    const dir = join(work, `c-${repo}`);
    await git(suite, ['clone', '-q', url(0, `/${repo}`), dir], { cwd: work });
    await git(
      suite,
      ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '--allow-empty', '-m', 'x'],
      { cwd: dir },
    );
    return { dir, pushUrl: url(0, `/${repo}`).replace('//', '//alice:alice-pw@') };
  }

  reproduce('503 when every backend is busy (a hook that waits holds one)', async () => {
    const status = async (): Promise<string> => (await fetch(url(0, '/git-fcgi-status'))).text();
    const { dir, pushUrl } = await commitToPush('slow.git');
    const mark = daemon.logs().length;
    // The push holds the only backend (max_children = 1) while its hook waits.
    const push = run('git', ['-C', dir, 'push', pushUrl, 'HEAD:refs/heads/main'], {
      env: await gitEnv(suite),
      timeoutMs: 60_000,
    });
    push.catch(() => undefined); // awaited below; an earlier failure must not leave it unhandled
    try {
      await waitFor(
        async () => (await stat(join(root, 'slow.git', 'hook-started')).catch(() => null)) !== null,
        { timeoutMs: 10_000, what: 'the pre-receive hook to start' },
      );
      // One clone waits in the queue (queue = 1) ... Each clone names itself apart (agent=):
      // identical fetches would wait for the one in the queue (the fetch cache) instead of
      // asking for a place of their own.
      const queued = gitFails(['clone', url(0, '/open.git'), 'c-queued'], { GIT_USER_AGENT: 'git/queued' });
      queued.catch(() => undefined);
      await waitFor(async () => /^queued requests:\s+1$/m.test(await status()), {
        timeoutMs: 10_000,
        what: 'a queued request',
      });
      // ... the next finds the queue full.
      assert.match(
        await gitFails(['clone', url(0, '/open.git'), 'c-full'], { GIT_USER_AGENT: 'git/full' }),
        /returned error: 503/,
      );
      assert.match(await queued, /returned error: 503/);
      await logged(
        daemon,
        mark,
        /warn request refused .*status=503 reason="ERR_OVERLOADED: all backends busy \(max_children = 1\) and the queue full \(queue = 1\)"/,
        /warn request refused .*status=503 reason="ERR_QUEUE_TIMEOUT: no backend free \(max_children = 1\) after 2s in the queue \(queue_timeout\)"/,
      );
    } finally {
      await writeFile(join(root, 'slow.git', 'release'), '');
    }
    // Held for longer than idle_timeout, and not ended by it: git's keepalives moved.
    const pushed = await push;
    assert.equal(pushed.code, 0, pushed.stderr.toString());
    assert.match(pushed.stderr.toString(), /remote: checking with CI\.\.\./);
    assert.doesNotMatch(daemon.logs().slice(mark), /ERR_IDLE_TIMEOUT/);
  });

  reproduce(
    "504 or a cut-off push: a hook that hangs past idle_timeout, before git's first keepalive",
    async () => {
      const { dir, pushUrl } = await commitToPush('hung.git');
      const mark = daemon.logs().length;
      const pushed = await gitFails(['-C', dir, 'push', pushUrl, 'HEAD:refs/heads/main']);
      // It had spoken, so the response had begun: git-fcgi cuts it off.
      assert.match(pushed, /remote: checking with CI\.\.\./);
      assert.match(pushed, /error: RPC failed; curl 18 transfer closed with outstanding read data remaining/);
      await logged(
        daemon,
        mark,
        /warn request failed .*reason="ERR_IDLE_TIMEOUT: no data moved either way for 3s \(idle_timeout\): backend killed"/,
      );
      await nginxLogged(/upstream sent unsupported FastCGI protocol version: 0 while reading upstream/);
    },
  );

  reproduce('504 from nginx: fastcgi_read_timeout shorter than a silent hook', async () => {
    const dir = join(work, 'c-silent');
    await git(suite, ['clone', '-q', url(1, '/silent.git'), dir], { cwd: work });
    await git(
      suite,
      ['-c', 'user.name=a', '-c', 'user.email=a@a', 'commit', '-q', '--allow-empty', '-m', 'x'],
      {
        cwd: dir,
      },
    );
    const mark = daemon.logs().length;
    const printed = await gitFails(['-C', dir, 'push', 'origin', 'HEAD:refs/heads/main']);
    assert.match(printed, /error: RPC failed; HTTP 504 curl 22 The requested URL returned error: 504/);
    await nginxLogged(
      /upstream timed out \(110: Connection timed out\) while reading response header from upstream/,
    );
    await logged(
      daemon,
      mark,
      /service=git-receive-pack status=499 .*error="ERR_CLIENT_ABORT: the front end closed/,
    );
  });
});
