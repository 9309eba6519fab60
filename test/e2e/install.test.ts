import assert from 'node:assert/strict';
import { access, appendFile, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../helpers/daemon.js';
import { run, type RunResult } from '../helpers/proc.js';
import { tmpDir } from '../helpers/tmp.js';

const install = (...args: string[]): Promise<RunResult> =>
  run('bash', [join(repoRoot, 'scripts', 'install.sh'), ...args], { timeoutMs: 60_000 });

test('scripts/install.sh --root: a working app, units and config; run again it keeps the config', async (t) => {
  const root = await tmpDir(t, 'install-');
  const first = await install('--root', root, '--prefix', '/opt/git-fcgi');
  assert.equal(first.code, 0, first.stderr.toString());

  const version = await run(process.execPath, [join(root, 'opt/git-fcgi/dist/cli.js'), '--version'], {
    timeoutMs: 10_000,
  });
  assert.equal(version.stdout.toString().trim(), '0.1.0', 'runs with only the production dependencies');
  assert.deepEqual((await readdir(join(root, 'opt/git-fcgi/node_modules'))).includes('typescript'), false);
  assert.equal(
    await readFile(join(root, 'usr/local/bin/git-fcgi'), 'utf8'),
    `#!/bin/sh\nexec ${(await run('sh', ['-c', 'command -v node'], { timeoutMs: 5000 })).stdout.toString().trim()} /opt/git-fcgi/dist/cli.js "$@"\n`,
  );
  const service = await readFile(join(root, 'etc/systemd/system/git-fcgi.service'), 'utf8');
  assert.match(
    service,
    /^ExecStart=\/usr\/local\/bin\/git-fcgi --config \/etc\/git-fcgi\/git-fcgi.ini \$OPTIONS$/m,
  );
  const socket = await readFile(join(root, 'etc/systemd/system/git-fcgi.socket'), 'utf8');
  assert.match(socket, /^SocketGroup=(nginx|www-data)$/m);
  const envFile = (await access('/etc/debian_version').then(
    () => true,
    () => false,
  ))
    ? 'etc/default/git-fcgi'
    : 'etc/sysconfig/git-fcgi';
  await access(join(root, envFile));
  await access(join(root, 'etc/logrotate.d/git-fcgi'));

  const ini = join(root, 'etc/git-fcgi/git-fcgi.ini');
  await appendFile(ini, '[git]\nproject_root = /srv/mine\n');
  const again = await install('--root', root, '--prefix', '/opt/git-fcgi');
  assert.equal(again.code, 0, again.stderr.toString());
  assert.match(again.stdout.toString(), /keeping existing \/etc\/git-fcgi\/git-fcgi.ini/);
  assert.match(await readFile(ini, 'utf8'), /project_root = \/srv\/mine/);
});

test('scripts/install.sh --dry-run prints the steps and changes nothing', async (t) => {
  const root = await tmpDir(t, 'dry-');
  const result = await install('--dry-run', '--root', root);
  assert.equal(result.code, 0, result.stderr.toString());
  assert.match(
    result.stdout.toString(),
    /^\+ install -D -m 0644 .*git-fcgi\.ini .*\/etc\/git-fcgi\/git-fcgi\.ini$/m,
  );
  assert.deepEqual(await readdir(root), []);
});

// install.sh for real (useradd, chown, units in /etc/systemd/system), on a throwaway copy of the machine:
// in a private mount namespace, /etc, /usr/local and /srv are overlays whose changes go to a temp dir.
const THROWAWAY_INSTALL = String.raw`
set -e
up=$1 src=$2
for d in etc usr/local srv; do
  mkdir -p "$up/$d/upper" "$up/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$up/$d/upper,workdir=$up/$d/work" "/$d"
done
# A machine without the account, as on a first install (only this namespace's /etc changes).
if getent passwd git >/dev/null; then userdel git; fi
if getent group git >/dev/null; then groupdel git; fi
bash "$src/scripts/install.sh" >"$up/first.log"
echo "passwd=$(getent passwd git)"
echo "srv=$(stat -c %U:%G /srv/git)"
echo "version=$(/usr/local/bin/git-fcgi --version)"
echo "verify=$(systemd-analyze verify /etc/systemd/system/git-fcgi.socket /etc/systemd/system/git-fcgi.service 2>&1)"
echo "check=$(setpriv --reuid=git --regid=git --init-groups /usr/local/bin/git-fcgi -c /etc/git-fcgi/git-fcgi.ini -t 2>&1 | tail -n 1)"
bash "$src/scripts/install.sh" >"$up/second.log"
`;

test('scripts/install.sh as root, in a throwaway mount namespace: the account, /srv/git, units, a working config', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root (useradd, mount)');
  const up = await tmpDir(t, 'install-overlay-');
  const result = await run(
    'unshare',
    ['--mount', '--propagation', 'private', 'bash', '-c', THROWAWAY_INSTALL, 'bash', up, repoRoot],
    { timeoutMs: 120_000 },
  );
  assert.equal(result.code, 0, `${result.stdout.toString()}${result.stderr.toString()}`);
  const seen = Object.fromEntries(
    result.stdout
      .toString()
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  ) as Record<string, string>;
  const [, , uid, , , home, shell] = (seen.passwd ?? '').split(':');
  assert.ok(Number(uid) < 1000, `a system account: ${seen.passwd}`);
  assert.deepEqual([home, shell], ['/srv/git', '/usr/sbin/nologin']);
  assert.equal(seen.srv, 'git:git');
  assert.equal(seen.version, '0.1.0');
  assert.equal(seen.verify, '');
  assert.equal(seen.check, 'git-fcgi: configuration /etc/git-fcgi/git-fcgi.ini is ok');
  assert.match(await readFile(join(up, 'first.log'), 'utf8'), /debian layout, socket group www-data/);
  const second = await readFile(join(up, 'second.log'), 'utf8');
  assert.match(second, /user git exists/);
  assert.match(second, /keeping existing \/etc\/git-fcgi\/git-fcgi.ini/);
  // Nothing reached the real machine.
  await assert.rejects(access('/usr/local/bin/git-fcgi'));
  await assert.rejects(access('/etc/systemd/system/git-fcgi.service'));
});
