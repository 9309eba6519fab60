/**
 * npm test's pretest (scripts/provision.mjs) as a process: on a made-up machine (GIT_FCGI_SYSROOT standing
 * for /, PATH holding only the commands the test leaves there), as a user who is not root and as root
 * with --dry-run; and on this machine, where it must find everything in well under a second.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { TOOLS } from '../../scripts/provision/tools.mjs';
import { ensureTestUser } from '../helpers/accounts.js';
import type { Cleanup } from '../helpers/cleanup.js';
import { repoRoot } from '../helpers/daemon.js';
import { run, type RunResult } from '../helpers/run.js';
import { tmpDir } from '../helpers/tmp.js';

const SCRIPT = join(repoRoot, 'scripts/provision.mjs');
const DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n';
const ROCKY = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n';
const isRoot = process.getuid?.() === 0;

interface FakeMachine {
  readonly osRelease: string;
  /** Tools of scripts/provision/tools.mjs this machine lacks. */
  readonly absent: readonly string[];
  readonly epel?: boolean;
}

/** Runs the pretest on a made-up machine; as the unprivileged test account when `asUser` and we are root. */
async function provision(
  t: Cleanup,
  machine: FakeMachine,
  { asUser, args = [] }: { asUser: boolean; args?: readonly string[] },
): Promise<RunResult> {
  const dir = await tmpDir(t, 'provision-');
  await chmod(dir, 0o755);
  const root = join(dir, 'root');
  const bin = join(dir, 'bin');
  await mkdir(join(root, 'etc/yum.repos.d'), { recursive: true });
  await mkdir(bin);
  await writeFile(join(root, 'etc/os-release'), machine.osRelease);
  if (machine.epel === true) await writeFile(join(root, 'etc/yum.repos.d/epel.repo'), '[epel]\n');
  for (const tool of TOOLS.filter((t) => !machine.absent.includes(t.name))) {
    const file = tool.files?.[0] === undefined ? join(bin, tool.command ?? '') : join(root, tool.files[0]);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  }
  // What scripts/build-git.sh --check runs with; an empty vendor directory: no gits to build.
  for (const cmd of ['bash', 'dirname']) await symlink(`/usr/bin/${cmd}`, join(bin, cmd));
  await mkdir(join(dir, 'vendor'));
  const env = {
    PATH: bin,
    GIT_FCGI_SYSROOT: root,
    GIT_FCGI_OS_RELEASE: undefined,
    GIT_FCGI_VENDOR: join(dir, 'vendor'),
    GIT_FCGI_GIT_CACHE: join(dir, 'cache'),
  };
  if (asUser && isRoot) {
    const { uid, gid } = await ensureTestUser();
    const drop = [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups'];
    return run('/usr/bin/setpriv', [...drop, process.execPath, SCRIPT, ...args], { env, timeoutMs: 20_000 });
  }
  return run(process.execPath, [SCRIPT, ...args], { env, timeoutMs: 20_000 });
}

const out = (r: RunResult): string => r.stdout.toString();
const err = (r: RunResult): string => r.stderr.toString();

describe('the pretest, not root', () => {
  test('Debian without nginx, htpasswd, setpriv and fcgiwrap: exit 2 and one line with the apt-get command', async (t) => {
    const r = await provision(
      t,
      { osRelease: DEBIAN, absent: ['nginx', 'htpasswd', 'setpriv', 'fcgiwrap'] },
      { asUser: true },
    );
    assert.equal(r.code, 2, `${out(r)}${err(r)}`);
    assert.equal(out(r), '');
    assert.equal(
      err(r),
      'provision: missing nginx, htpasswd, setpriv, fcgiwrap (npm test as root installs them without starting ' +
        'their services); install them with: sudo apt-get install -y --no-install-recommends nginx apache2-utils ' +
        'util-linux fcgiwrap\n',
    );
  });

  test('Rocky without EPEL: the dnf command has the RHEL names and leaves out what EPEL has', async (t) => {
    const absent = ['htpasswd', 'zlib.h', 'pgrep', 'fcgiwrap'];
    const r = await provision(t, { osRelease: ROCKY, absent }, { asUser: true });
    assert.equal(r.code, 2, `${out(r)}${err(r)}`);
    assert.equal(
      err(r),
      'provision: missing htpasswd, zlib.h, pgrep (npm test as root installs them without starting their ' +
        'services); install them with: sudo dnf install -y httpd-tools zlib-devel procps-ng\n',
    );
    const withEpel = await provision(t, { osRelease: ROCKY, absent, epel: true }, { asUser: true });
    assert.match(
      err(withEpel),
      / install them with: sudo dnf install -y httpd-tools zlib-devel procps-ng fcgiwrap\n$/,
    );
  });

  test('Rocky lacking only what it does not provide: goes on, saying which tests skip', async (t) => {
    const r = await provision(t, { osRelease: ROCKY, absent: ['fcgiwrap', 'h2o'] }, { asUser: true });
    assert.equal(r.code, 0, `${out(r)}${err(r)}`);
    assert.equal(err(r), '');
    const lines = out(r).split('\n');
    assert.deepEqual(lines.slice(0, 2), [
      'provision: no fcgiwrap on rocky (its package fcgiwrap is in EPEL, not enabled here (dnf install ' +
        'epel-release)): the fcgiwrap reference in test/e2e/harness.test.ts skipped',
      "provision: no h2o on rocky (h2o is in neither RHEL nor EPEL, and the tests serve as Debian's debian-h2o " +
        'account): test/e2e/h2o.test.ts skipped',
    ]);
    assert.match(lines[2] ?? '', /^provision: \d+ of \d+ tools present, git builds ready \(\d+ ms\)$/);
  });
});

describe('the pretest as root, --dry-run', { skip: isRoot ? false : 'needs root' }, () => {
  test('Debian: prints the apt-get commands it would run, changes nothing', async (t) => {
    const absent = ['nginx', 'cc', 'stdio.h', 'mount', 'caddy'];
    const r = await provision(t, { osRelease: DEBIAN, absent }, { asUser: false, args: ['--dry-run'] });
    assert.equal(r.code, 0, `${out(r)}${err(r)}`);
    assert.equal(
      out(r).split('\n')[0],
      'provision: would run: apt-get update -q && apt-get install -y --no-install-recommends nginx gcc libc6-dev ' +
        'mount caddy',
    );
  });

  test('Rocky: prints the dnf command', async (t) => {
    const absent = ['nginx', 'htpasswd', 'useradd', 'getent', 'haproxy'];
    const r = await provision(t, { osRelease: ROCKY, absent }, { asUser: false, args: ['--dry-run'] });
    assert.equal(r.code, 0, `${out(r)}${err(r)}`);
    assert.equal(
      out(r).split('\n')[0],
      'provision: would run: dnf install -y nginx httpd-tools shadow-utils glibc-common haproxy',
    );
  });
});

test('this machine, provisioned by the pretest: everything found in well under a second', async () => {
  const r = await run(process.execPath, [SCRIPT, '--dry-run'], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `${out(r)}${err(r)}`);
  const ms = /git builds ready \((\d+) ms\)\n$/.exec(out(r))?.[1];
  assert.ok(ms !== undefined, out(r));
  assert.ok(Number(ms) < 1000, `the pretest took ${ms} ms with nothing to do`);
});
