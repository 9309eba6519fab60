import assert from 'node:assert/strict';
import { access, chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defer, suiteCleanup } from '../helpers/cleanup.js';
import { htpasswd, startNginx } from '../helpers/nginx.js';
import {
  added,
  builtPackage,
  execStartArgv,
  listFiles,
  packageChecksSkipped,
  packageVersion,
  unitValue,
} from '../helpers/packages.js';
import { startProcess } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { run, type RunResult } from '../helpers/run.js';
import { shippedNginx, shippedNginxConfig } from '../helpers/shipped-nginx.js';
import { tmpDir } from '../helpers/tmp.js';
import { acceptsUnix } from '../helpers/net-probe.js';
import { waitFor } from '../helpers/deadline.js';

const UNITS = '/lib/systemd/system';
const SERVICE = `${UNITS}/git-fcgi.service`;
const SOCKET = `${UNITS}/git-fcgi.socket`;
const EXAMPLES = '/usr/share/doc/git-fcgi/examples';
const CONFFILES = ['/etc/default/git-fcgi', '/etc/git-fcgi/git-fcgi.ini', '/etc/logrotate.d/git-fcgi'];
// Where a package's files can land; /var/lib/dpkg too, so that dpkg's own records are seen to go.
const WATCHED = ['/etc', '/usr', '/var/lib', '/var/log', '/var/cache/git-fcgi', '/srv', '/run', '/opt'];
// The account stays on purge, as Debian keeps system accounts: its databases' backups may appear.
const ACCOUNT_FILES = /^\/etc\/(passwd|group|shadow|gshadow|subuid|subgid)-?$/;
// systemd's PATH for services.
const SERVICE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const cmd = (command: string, args: readonly string[], timeoutMs = 60_000): Promise<RunResult> =>
  run(command, args, { timeoutMs, env: { LC_ALL: 'C' } });

function ok(result: RunResult, what: string): string {
  assert.equal(result.code, 0, `${what}: ${result.stdout.toString()}${result.stderr.toString()}`);
  return result.stdout.toString();
}

async function installedStatus(): Promise<string> {
  const query = await cmd('dpkg-query', ['-W', '-f', '${db:Status-Abbrev}', 'git-fcgi']);
  return query.code === 0 ? query.stdout.toString().trim() : 'unknown';
}

/** As the unit's user and group, with systemd's PATH and nothing else (setpriv keeps the pid: exec). */
function asServiceUser(unit: string, argv: readonly string[]): string[] {
  const user = unitValue(unit, 'User');
  const group = unitValue(unit, 'Group');
  return ['setpriv', `--reuid=${user}`, `--regid=${group}`, '--init-groups', '--', ...argv];
}

describe(
  'the .deb installed with dpkg -i, used, removed and purged',
  { skip: packageChecksSkipped() },
  () => {
    const suite = suiteCleanup(after);
    let deb: string;
    let beforeInstall: Set<string>;

    before(async () => {
      deb = await builtPackage('.deb');
      assert.equal(await installedStatus(), 'unknown', 'git-fcgi must not be installed before the check');
      beforeInstall = await listFiles(WATCHED);
      // A failed step must not leave the package on the machine.
      defer(suite, async () => {
        if ((await installedStatus()) !== 'unknown') ok(await cmd('dpkg', ['-P', 'git-fcgi']), 'dpkg -P');
      });
      ok(await cmd('dpkg', ['-i', deb], 120_000), `dpkg -i ${deb}`);
    });

    test('dpkg -i: git-fcgi --version, its files, the account, the conffiles', async () => {
      assert.equal(
        ok(await cmd('git-fcgi', ['--version']), 'git-fcgi --version').trim(),
        await packageVersion(),
      );
      assert.equal(await installedStatus(), 'ii');
      const passwd = ok(await cmd('getent', ['passwd', 'git']), 'getent passwd git')
        .trim()
        .split(':');
      assert.equal(passwd[5], '/srv/git', 'home');
      assert.equal(passwd[6], '/usr/sbin/nologin', 'shell');
      assert.ok(Number(passwd[2]) < 1000, `a system account: uid ${passwd[2]}`);
      const conffiles = ok(await cmd('dpkg-query', ['-W', '-f', '${Conffiles}', 'git-fcgi']), 'conffiles');
      assert.deepEqual(
        conffiles
          .trim()
          .split('\n')
          .map((line) => line.trim().split(' ')[0])
          .sort(),
        CONFFILES,
      );
      await access('/usr/lib/git-fcgi/dist/git-fcgi-spawnd');
      await access(join(EXAMPLES, 'nginx/git-fcgi.conf'));
      for (const frontEnd of ['apache', 'lighttpd', 'haproxy', 'caddy', 'h2o'])
        assert.notEqual((await cmd('ls', [join(EXAMPLES, frontEnd)])).stdout.toString().trim(), '', frontEnd);
      const man = await cmd('man', ['-w', '8', 'git-fcgi']);
      assert.equal(man.code, 0, `man -w 8 git-fcgi: ${man.stderr.toString()}`);
      assert.equal(man.stdout.toString().trim(), '/usr/share/man/man8/git-fcgi.8.gz');
    });

    test('--check-config passes on the config as shipped, as the unit runs git-fcgi', async () => {
      const unit = await readFile(SERVICE, 'utf8');
      const argv = await execStartArgv(unit);
      const [command = '', ...args] = asServiceUser(unit, [...argv, '-t']);
      const check = await cmd(command, args);
      const out = ok(check, `${argv.join(' ')} -t`);
      // The ini shows, commented out, the backend git-fcgi finds: Debian's git.
      const execPath = ok(await cmd('git', ['--exec-path']), 'git --exec-path').trim();
      assert.equal(execPath, '/usr/lib/git-core');
      assert.match(
        await readFile('/etc/git-fcgi/git-fcgi.ini', 'utf8'),
        /^;backend = \/usr\/lib\/git-core\/git-http-backend$/m,
      );
      assert.match(out, /^backend = \/usr\/lib\/git-core\/git-http-backend$/m);
    });

    test('systemd-analyze verify: the installed units, with the installed binary', async () => {
      const result = await cmd('systemd-analyze', ['verify', SOCKET, SERVICE]);
      assert.equal(`${result.stdout.toString()}${result.stderr.toString()}`, '');
      assert.equal(result.code, 0);
      assert.equal(unitValue(await readFile(SOCKET, 'utf8'), 'SocketGroup'), 'www-data');
      assert.deepEqual(
        [...(await readFile(SERVICE, 'utf8')).matchAll(/^EnvironmentFile=(.*)$/gm)].map((m) => m[1]),
        ['-/etc/default/git-fcgi'],
      );
    });

    test("the unit's ExecStart, as its user, serves a clone and a push through nginx with the installed snippet", async (t) => {
      const unit = await readFile(SERVICE, 'utf8');
      const argv = await execStartArgv(unit);
      assert.equal(argv[0], '/usr/bin/git-fcgi');
      // The snippet's upstream is the socket unit's; both move to a temp path here.
      assert.equal(unitValue(await readFile(SOCKET, 'utf8'), 'ListenStream'), '/run/git-fcgi/git-fcgi.sock');

      const root = await tmpDir(t, 'pkg-repos-');
      await chmod(root, 0o755);
      const repo = await createBareRepo(t, root, 'demo.git', { commits: 2 });
      await writeFile(join(repo.path, 'git-daemon-export-ok'), '');
      // The repositories belong to the service's user, as on a server.
      ok(await cmd('chown', ['-R', `${unitValue(unit, 'User')}:${unitValue(unit, 'Group')}`, root]), 'chown');

      const sock = join(await tmpDir(t, 'pkg-sock-'), 'git-fcgi.sock');
      // systemd-socket-activate does what git-fcgi.socket does: binds, then starts the service on the
      // first connection with the socket as LISTEN_FDS.
      const daemon = await startProcess(t, 'systemd-socket-activate', [
        '-l',
        sock,
        '-E',
        `PATH=${SERVICE_PATH}`,
        '--',
        ...asServiceUser(unit, argv),
      ]);
      await waitFor(() => acceptsUnix(sock), { timeoutMs: 10_000, what: 'the activation socket' });

      const users = await htpasswd(t, await tmpDir(t, 'pkg-users-'), { alice: 'alice-secret' });
      const nginx = await startNginx(
        t,
        shippedNginxConfig([
          await shippedNginx({ root, htpasswd: users, socket: sock, examplesDir: EXAMPLES }),
        ]),
      );

      const work = join(await tmpDir(t, 'pkg-clone-'), 'demo');
      await git(t, ['clone', '-q', nginx.url(0, '/demo.git'), work], { timeoutMs: 60_000 });
      assert.equal((await git(t, ['rev-parse', 'HEAD'], { cwd: work })).stdout.toString().trim(), repo.head);

      const push = nginx.url(0, '/demo.git').replace('http://', 'http://alice:alice-secret@');
      await git(t, ['push', '-q', push, 'HEAD:refs/heads/pushed'], { cwd: work, timeoutMs: 60_000 });
      const ref = join(repo.path, 'refs/heads/pushed');
      assert.equal((await readFile(ref, 'utf8')).trim(), repo.head);
      const owner = ok(await cmd('id', ['-u', unitValue(unit, 'User')]), 'id -u').trim();
      assert.equal(String((await stat(ref)).uid), owner, 'git ran as the unit user');
      assert.match(daemon.stderr(), /listening on fastcgi systemd socket activation/);
      assert.doesNotMatch(daemon.stderr(), /spawn helper unavailable/);
      await daemon.stop();
    });

    test('dpkg -r keeps only the configuration; dpkg -P leaves nothing behind', async () => {
      ok(await cmd('dpkg', ['-r', 'git-fcgi'], 120_000), 'dpkg -r');
      assert.equal(await installedStatus(), 'rc');
      const removed = added(beforeInstall, await listFiles(WATCHED)).filter((p) => !ACCOUNT_FILES.test(p));
      // The conffiles; then the socket's enablement with deb-systemd-helper's record of it (the units are
      // masked meanwhile, as debhelper's postrm does) and dpkg's record of the package: purge forgets them.
      const config = removed.filter((p) => CONFFILES.includes(p) || p === '/etc/git-fcgi');
      assert.deepEqual(config, [
        '/etc/default/git-fcgi',
        '/etc/git-fcgi',
        '/etc/git-fcgi/git-fcgi.ini',
        '/etc/logrotate.d/git-fcgi',
      ]);
      const rest = removed.filter((p) => !config.includes(p));
      const records =
        /^\/(etc\/systemd\/system|var\/lib\/systemd\/deb-systemd-helper-(enabled|masked)|var\/lib\/dpkg\/info)\/(sockets\.target\.wants\/)?git-fcgi\.[a-z.-]+$|^\/var\/lib\/systemd\/deb-systemd-helper-masked$/;
      assert.deepEqual(
        rest.filter((p) => !records.test(p)),
        [],
      );
      assert.ok(rest.includes('/etc/systemd/system/sockets.target.wants/git-fcgi.socket'), rest.join('\n'));

      ok(await cmd('dpkg', ['-P', 'git-fcgi'], 120_000), 'dpkg -P');
      assert.equal(await installedStatus(), 'unknown');
      assert.deepEqual(
        added(beforeInstall, await listFiles(WATCHED)).filter((p) => !ACCOUNT_FILES.test(p)),
        [],
      );
    });
  },
);
