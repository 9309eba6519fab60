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
