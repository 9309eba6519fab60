import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { repoRoot, startGitFcgi } from '../helpers/daemon.js';
import { builtPackage, packageChecksSkipped } from '../helpers/packages.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { run, type RunResult } from '../helpers/run.js';
import { tmpDir } from '../helpers/tmp.js';

const cmd = (command: string, args: readonly string[], cwd?: string): Promise<RunResult> =>
  run(command, args, { timeoutMs: 60_000, env: { LC_ALL: 'C' }, ...(cwd === undefined ? {} : { cwd }) });

function ok(result: RunResult, what: string): string {
  assert.equal(result.code, 0, `${what}: ${result.stdout.toString()}${result.stderr.toString()}`);
  return result.stdout.toString();
}

/** The files (not directories) a package holds: from `rpm -qp` or `dpkg-deb -c`. */
async function rpmFiles(rpm: string): Promise<string[]> {
  const out = ok(await cmd('rpm', ['-qp', '--qf', '[%{FILEMODES:perms} %{FILENAMES}\n]', rpm]), 'rpm -qp');
  return fileLines(out, /^(\S+) (\S+)$/);
}

async function debFiles(deb: string): Promise<string[]> {
  const out = ok(await cmd('dpkg-deb', ['-c', deb]), 'dpkg-deb -c');
  return fileLines(out, /^(\S+)\s+\S+\s+\d+\s+\S+\s+\S+\s+\.(\S+)/);
}

function fileLines(out: string, line: RegExp): string[] {
  return out
    .split('\n')
    .flatMap((l) => {
      const m = line.exec(l);
      return m?.[1]?.startsWith('-') === true && m[2] !== undefined ? [m[2]] : [];
    })
    .sort();
}

// What the two layouts put in different places (scripts/layout.sh), and what only one format has.
const DEB_TO_RPM: ReadonlyArray<readonly [RegExp, string]> = [
  [/^\/lib\/systemd\/system\//, '/usr/lib/systemd/system/'],
  [/^\/etc\/default\/git-fcgi$/, '/etc/sysconfig/git-fcgi'],
];
const DEB_ONLY = [
  '/usr/share/doc/git-fcgi/changelog.Debian.gz',
  '/usr/share/doc/git-fcgi/copyright',
  '/usr/share/lintian/overrides/git-fcgi',
];
const RPM_ONLY = ['/usr/share/licenses/git-fcgi/LICENSE'];

describe(
  'the .rpm: contents, dependencies, scriptlets, rpmlint, and git-fcgi run from it unpacked',
  {
    skip: packageChecksSkipped(),
  },
  () => {
    let rpm: string;

    before(async () => {
      rpm = await builtPackage('.rpm');
    });

    test("rpm -qlp: the .deb's files in RHEL places, the three config files", async () => {
      const files = await rpmFiles(rpm);
      const fromDeb = (await debFiles(await builtPackage('.deb')))
        .filter((f) => !DEB_ONLY.includes(f))
        .map((f) => DEB_TO_RPM.reduce((path, [from, to]) => path.replace(from, to), f));
      assert.deepEqual(files, [...fromDeb, ...RPM_ONLY].sort());
      for (const file of [
        '/usr/bin/git-fcgi',
        '/usr/lib/git-fcgi/dist/cli.js',
        '/usr/lib/git-fcgi/dist/git-fcgi-spawnd',
        '/usr/lib/git-fcgi/package.json',
        '/usr/lib/systemd/system/git-fcgi.service',
        '/usr/lib/systemd/system/git-fcgi.socket',
        '/usr/share/doc/git-fcgi/examples/nginx/git-fcgi.conf',
        ...['commander', 'winston', 'ini', 'bcryptjs', 'apache-md5'].map(
          (m) => `/usr/lib/git-fcgi/node_modules/${m}/package.json`,
        ),
      ])
        assert.ok(files.includes(file), file);
      // No development dependency, no source map, nothing of the build's.
      assert.deepEqual(
        files.filter((f) =>
          /node_modules\/(typescript|eslint|prettier|isomorphic-git)\/|git-fcgi\/dist\/.*\.map$|\/dist\/packages\//.test(
            f,
          ),
        ),
        [],
      );
      const config = ok(await cmd('rpm', ['-qcp', rpm]), 'rpm -qcp')
        .trim()
        .split('\n')
        .sort();
      assert.deepEqual(config, [
        '/etc/git-fcgi/git-fcgi.ini',
        '/etc/logrotate.d/git-fcgi',
        '/etc/sysconfig/git-fcgi',
      ]);
      assert.ok(files.includes('/usr/share/man/man8/git-fcgi.8.gz'), 'the man page git-fcgi(8)');
    });

    test('rpm -qp --requires --scripts: Node.js >= 20 and git; the account and systemd scriptlets', async () => {
      const requires = ok(await cmd('rpm', ['-qp', '--requires', rpm]), 'rpm --requires').split('\n');
      const node = requires.map((r) => /^nodejs >= (\d+)\.(\d+)$/.exec(r.trim())).find((m) => m !== null);
      assert.ok(node !== undefined, `a nodejs >= requirement in ${requires.join(', ')}`);
      assert.ok(Number(node[1]) >= 20, `nodejs >= ${node[1]}.${node[2]}`);
      assert.ok(
        requires.some((r) => r.trim() === 'git-core'),
        'git-core (git http-backend) required',
      );

      const scripts = ok(await cmd('rpm', ['-qp', '--scripts', rpm]), 'rpm --scripts');
      const section = (name: string): string =>
        new RegExp(`^${name} scriptlet[^\\n]*\\n([\\s\\S]*?)(?=^\\w+ scriptlet|(?![\\s\\S]))`, 'm').exec(
          scripts,
        )?.[1] ?? '';
      assert.match(section('preinstall'), /useradd -r -g git -d \/srv\/git -M -s \/sbin\/nologin .* git$/m);
      assert.match(section('postinstall'), /systemctl --no-reload preset git-fcgi\.socket git-fcgi\.service/);
      assert.match(
        section('preuninstall'),
        /systemctl --no-reload disable --now git-fcgi\.socket git-fcgi\.service/,
      );
      assert.match(section('postuninstall'), /systemctl try-restart git-fcgi\.service/);
    });

    test('rpmlint: no errors, no warnings (beyond scripts/package/rpmlint.toml)', async (t) => {
      let lint: RunResult;
      try {
        lint = await cmd('rpmlint', ['-c', join(repoRoot, 'scripts/package/rpmlint.toml'), rpm]);
      } catch (error) {
        return t.skip(`rpmlint cannot run here: ${error instanceof Error ? error.message : String(error)}`);
      }
      const findings = lint.stdout
        .toString()
        .split('\n')
        .filter((line) => /: [EW]: /.test(line));
      assert.deepEqual(findings, []);
    });

    test("unpacked with rpm2cpio | cpio, its launcher's command serves a clone over --http", async (t) => {
      const root = await tmpDir(t, 'rpm-root-');
      ok(await cmd('sh', ['-c', 'rpm2cpio "$1" | cpio -idm --quiet', 'sh', rpm], root), 'rpm2cpio | cpio');
      const launcher = await readFile(join(root, 'usr/bin/git-fcgi'), 'utf8');
      const exec = /^exec (\S+) (\S+) "\$@"$/m.exec(launcher);
      assert.deepEqual(exec?.slice(1), ['/usr/bin/node', '/usr/lib/git-fcgi/dist/cli.js']);
      const cli = join(root, exec?.[2] ?? '');
      const ini = join(root, 'etc/git-fcgi/git-fcgi.ini');
      assert.match(await readFile(ini, 'utf8'), /^;backend = \/usr\/libexec\/git-core\/git-http-backend$/m);
      assert.match(
        await readFile(join(root, 'usr/lib/systemd/system/git-fcgi.socket'), 'utf8'),
        /^SocketGroup=nginx$/m,
      );
      assert.match(
        await readFile(join(root, 'usr/lib/systemd/system/git-fcgi.service'), 'utf8'),
        /^EnvironmentFile=-\/etc\/sysconfig\/git-fcgi\n(?!EnvironmentFile)/m,
      );

      const repos = await tmpDir(t, 'rpm-repos-');
      const repo = await createBareRepo(t, repos, 'demo.git');
      await writeFile(join(repo.path, 'git-daemon-export-ok'), '');
      const daemon = await startGitFcgi(
        t,
        ['-c', ini, '--http', '127.0.0.1:0', '--project-root', repos, '--allow-root'],
        { script: cli },
      );
      const work = join(await tmpDir(t, 'rpm-clone-'), 'demo');
      await git(t, ['clone', '-q', `http://127.0.0.1:${daemon.httpPort ?? 0}/demo.git`, work]);
      assert.equal((await git(t, ['rev-parse', 'HEAD'], { cwd: work })).stdout.toString().trim(), repo.head);
      assert.doesNotMatch(daemon.logs(), /spawn helper unavailable/);
      await daemon.stop();
    });
  },
);
