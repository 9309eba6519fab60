import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The gits the tests run git-fcgi against: the system git, and every complete build that
 * scripts/build-git.sh left in its cache (usr/bin/git and usr/lib/git-core, laid out as Debian
 * installs git). A build is used "as if installed": bind-mounted over /usr/bin/git and
 * /usr/lib/git-core in a private mount namespace, so git-fcgi's default backend, `git
 * --exec-path`, /etc/gitconfig and every path it checks are exactly what a distribution gives.
 */

export type RefFormat = 'files' | 'reftable';

/** The part of a git under test that runs commands with it. */
export interface InstalledGit {
  readonly version: string;
  /** files, and reftable where this git has it. */
  readonly refFormats: readonly RefFormat[];
  /**
   * `cmd args` as a command that runs it with this git installed. The wrapper execs, so the
   * pid of what is spawned is `cmd`'s own, and it stays in the spawner's process group.
   */
  command(cmd: string, args: readonly string[]): { readonly cmd: string; readonly args: readonly string[] };
}

export interface GitUnderTest extends InstalledGit {
  /** As `git --version` says it, e.g. `2.39.5`. */
  readonly version: string;
  /** The git on PATH, run without any wrapper. */
  readonly system: boolean;
  /** The build's root (`usr/` inside); undefined for the system git. */
  readonly buildDir?: string;
  /** `git init --ref-format=reftable` (git 2.45 on). */
  readonly reftable: boolean;
}

export interface GitSelection {
  readonly gits: readonly GitUnderTest[];
  /** Vendored versions (a tarball in the vendor dir) that were selected but have no complete build. */
  readonly unbuilt: readonly string[];
  /** Versions GIT_FCGI_TEST_GITS asks for that are neither the system git nor vendored. */
  readonly unknown: readonly string[];
  /** Where builds and tarballs were looked for, for messages. */
  readonly cacheDir: string;
  readonly vendorDir: string;
}

export interface FindGitsOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** The checkout; the vendor dir defaults to ../shared/vendor beside it, as in CI. */
  readonly checkout?: string;
}

// Compiled to dist-test/test/helpers/; the checkout is three levels up.
const defaultCheckout = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * The mount namespace is private (unshare's default, spelled out): nothing mounted inside is
 * seen outside. templates are bound too when the build has them, so `git init` copies the
 * build's own.
 */
const BIND_AND_EXEC = [
  'set -e',
  'mount --bind "$1/usr/bin/git" /usr/bin/git',
  'mount --bind "$1/usr/lib/git-core" /usr/lib/git-core',
  't=usr/share/git-core/templates',
  'if [ -d "$1/$t" ] && [ -d "/$t" ]; then mount --bind "$1/$t" "/$t"; fi',
  'shift',
  'exec "$@"',
].join('\n');

const REFTABLE_SINCE = [2, 45] as const;

export function supportsReftable(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > REFTABLE_SINCE[0] || (major === REFTABLE_SINCE[0] && minor >= REFTABLE_SINCE[1]);
}

/**
 * `git init`'s option for `format`: none for files on a git that knows no other (before 2.45
 * there is no --ref-format), and always named where git has a choice (its default may change).
 */
export function refFormatOption(git: InstalledGit | undefined, format: RefFormat): string[] {
  const choice = git?.refFormats.includes('reftable') === true;
  return format === 'files' && !choice ? [] : [`--ref-format=${format}`];
}

/** Whether `version` is what a GIT_FCGI_TEST_GITS entry names: `2.55`, `2.55.0`, or `system`. */
export function selects(entry: string, version: string, system: boolean): boolean {
  if (entry === 'system') return system;
  return version === entry || version.startsWith(`${entry}.`);
}

function underTest(version: string, buildDir: string | undefined): GitUnderTest {
  const reftable = supportsReftable(version);
  return {
    version,
    system: buildDir === undefined,
    ...(buildDir === undefined ? {} : { buildDir }),
    reftable,
    refFormats: reftable ? ['files', 'reftable'] : ['files'],
    command: (cmd, args) =>
      buildDir === undefined
        ? { cmd, args }
        : {
            cmd: 'unshare',
            args: [
              '--mount',
              '--propagation',
              'private',
              'sh',
              '-c',
              BIND_AND_EXEC,
              'sh',
              buildDir,
              cmd,
              ...args,
            ],
          },
  };
}

function systemGitVersion(): string {
  const out = execFileSync('git', ['--version'], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  const match = /^git version (\S+)/.exec(out);
  if (match?.[1] === undefined)
    throw new Error(`cannot read the system git's version from ${JSON.stringify(out)}`);
  return match[1];
}

/** `git-VERSION` entries of `dir` whose name matches `pattern`, as versions. */
function versionsIn(dir: string, pattern: RegExp): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => pattern.exec(name)?.[1] ?? []);
}

const byVersion = (a: string, b: string): number => {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
};

/**
 * The system git and the complete builds in GIT_FCGI_GIT_CACHE (default ~/.cache/git-fcgi),
 * oldest first, narrowed to GIT_FCGI_TEST_GITS (comma-separated: `system`, `2.39`, `2.55.0`)
 * when set. Builds need root (a mount namespace); without it only the system git is listed.
 */
export function findGitsUnderTest(opts: FindGitsOptions = {}): GitSelection {
  const env = opts.env ?? process.env;
  const checkout = opts.checkout ?? defaultCheckout;
  const cacheDir = env.GIT_FCGI_GIT_CACHE || join(homedir(), '.cache', 'git-fcgi');
  const vendorDir = env.GIT_FCGI_VENDOR || resolve(checkout, '..', 'shared', 'vendor');
  const wanted = (env.GIT_FCGI_TEST_GITS ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  const chosen = (version: string, system: boolean): boolean =>
    wanted.length === 0 || wanted.some((entry) => selects(entry, version, system));

  const systemVersion = systemGitVersion();
  const built = versionsIn(cacheDir, /^git-(\d+(?:\.\d+)+)$/).filter((v) =>
    existsSync(join(cacheDir, `git-${v}`, '.complete')),
  );
  const vendored = versionsIn(vendorDir, /^git-(\d+(?:\.\d+)+)\.tar\.gz$/);
  const root = process.getuid?.() === 0;

  const gits: GitUnderTest[] = [];
  if (chosen(systemVersion, true)) gits.push(underTest(systemVersion, undefined));
  for (const version of [...built].sort(byVersion)) {
    if (version === systemVersion || !root || !chosen(version, false)) continue;
    gits.push(underTest(version, join(cacheDir, `git-${version}`)));
  }
  gits.sort((a, b) => byVersion(a.version, b.version));
  const unbuilt = vendored
    .filter((v) => chosen(v, false) && v !== systemVersion && (!root || !built.includes(v)))
    .sort(byVersion)
    .map((v) => (built.includes(v) ? `${v} (built, but mounting it needs root)` : v));
  const known = [systemVersion, ...built, ...vendored];
  const unknown = wanted.filter(
    (entry) => entry !== 'system' && !known.some((version) => selects(entry, version, false)),
  );
  return { gits, unbuilt, unknown, cacheDir, vendorDir };
}
