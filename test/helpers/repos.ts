import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { defer, type Cleanup } from './cleanup.js';
import { refFormatOption, type InstalledGit, type RefFormat } from './git-versions.js';
import { run, type RunResult } from './run.js';
import { tmpDir } from './tmp.js';

/** The system git's http-backend: in /usr/lib/git-core on Debian, /usr/libexec/git-core on RHEL. */
export const GIT_HTTP_BACKEND = join(
  execFileSync('git', ['--exec-path'], { encoding: 'utf8' }).trim(),
  'git-http-backend',
);

export interface GitOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly input?: Buffer | string;
  readonly timeoutMs?: number;
  /** Run this git as if it were installed (test/helpers/git-versions.ts); default: the system git. */
  readonly git?: InstalledGit;
}

// One empty HOME per Cleanup, so that neither ~/.gitconfig nor credential helpers of whoever runs the tests
// leak in. Calls without a Cleanup share one directory that goes when the process exits.
const homes = new WeakMap<Cleanup, Promise<string>>();
let sharedHome: Promise<string> | undefined;

function homeFor(t: Cleanup | undefined): Promise<string> {
  if (t === undefined) {
    sharedHome ??= mkdtemp(join(tmpdir(), 'git-fcgi-home-')).then((dir) => {
      process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
      return dir;
    });
    return sharedHome;
  }
  let home = homes.get(t);
  if (home === undefined) {
    home = tmpDir(t, 'home-');
    homes.set(t, home);
  }
  return home;
}

/** Environment for every git the harness runs: no prompts, no system or user config, stable messages. */
export async function gitEnv(
  t: Cleanup | undefined,
  env: NodeJS.ProcessEnv = {},
): Promise<NodeJS.ProcessEnv> {
  // GIT_* inherited from the caller (e.g. GIT_DIR when tests run from a git hook) would redirect every command.
  const inherited = Object.keys(process.env).filter((key) => key.startsWith('GIT_'));
  return {
    ...Object.fromEntries(inherited.map((key) => [key, undefined])),
    HOME: await homeFor(t),
    XDG_CONFIG_HOME: undefined,
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    LC_ALL: 'C',
    ...env,
  };
}

/** Runs git and returns its output; a non-zero exit throws with git's stderr. */
export async function git(
  t: Cleanup | undefined,
  args: readonly string[],
  opts: GitOptions = {},
): Promise<RunResult> {
  const command = opts.git?.command('git', args) ?? { cmd: 'git', args };
  const result = await run(command.cmd, command.args, {
    ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
    ...(opts.input === undefined ? {} : { input: opts.input }),
    env: await gitEnv(t, opts.env),
    timeoutMs: opts.timeoutMs ?? 60_000,
  });
  if (result.code !== 0) {
    const why = result.signal ?? `exit ${result.code ?? '?'}`;
    const which = opts.git === undefined ? '' : ` (git ${opts.git.version})`;
    throw new Error(`git ${args.join(' ')}${which} failed (${why}):\n${result.stderr.toString('utf8')}`);
  }
  return result;
}

export interface BareRepoOptions {
  /** At least 1. */
  readonly commits?: number;
  /** Added in the first commit; names may contain slashes. */
  readonly files?: Readonly<Record<string, string | Buffer>>;
  readonly branch?: string;
  readonly timeoutMs?: number;
  /** The git that makes the repository (and its seed history); default: the system git. */
  readonly git?: InstalledGit;
  /** `git init --ref-format`; default: the git's own default. */
  readonly refFormat?: RefFormat;
}

export interface BareRepo {
  readonly path: string;
  /** The branch's commit. The same options give the same sha on every run. */
  readonly head: string;
}

const identity = ['-c', 'user.name=Git Fcgi Test', '-c', 'user.email=test@git-fcgi.invalid'];

/** `root/name` as a bare repository whose `branch` (also HEAD) holds a seed history with fixed dates. */
export async function createBareRepo(
  t: Cleanup,
  root: string,
  name: string,
  { commits = 1, files = {}, branch = 'main', timeoutMs = 120_000, ...how }: BareRepoOptions = {},
): Promise<BareRepo> {
  if (!Number.isInteger(commits) || commits < 1) throw new RangeError(`commits must be >= 1, got ${commits}`);
  const path = join(root, name);
  const using = how.git === undefined ? {} : { git: how.git };
  const format = how.refFormat === undefined ? [] : refFormatOption(how.git, how.refFormat);
  await mkdir(dirname(path), { recursive: true });
  await git(t, ['init', '-q', '--bare', ...format, `--initial-branch=${branch}`, path], {
    timeoutMs,
    ...using,
  });
  defer(t, () => rm(path, { recursive: true, force: true, maxRetries: 5 }));
  const work = await tmpDir(t, 'seed-');
  try {
    await git(t, ['init', '-q', `--initial-branch=${branch}`, work], { timeoutMs, ...using });
    for (const [file, content] of Object.entries(files)) {
      await mkdir(dirname(join(work, file)), { recursive: true });
      await writeFile(join(work, file), content);
    }
    for (let i = 1; i <= commits; i++) {
      await writeFile(join(work, 'history.txt'), `commit ${i}\n`, { flag: 'a' });
      await git(t, ['add', '-A'], { cwd: work, timeoutMs, ...using });
      // Fixed dates and identity make the shas reproducible, so failures can be compared across runs.
      const date = `${1_700_000_000 + i * 60} +0000`;
      await git(t, [...identity, 'commit', '-q', '-m', `commit ${i}`], {
        cwd: work,
        env: { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date },
        timeoutMs,
        ...using,
      });
    }
    await git(t, ['push', '-q', path, `HEAD:refs/heads/${branch}`], { cwd: work, timeoutMs, ...using });
  } finally {
    // The work tree can be large (randomBlobRepo); it is not needed once pushed.
    await rm(work, { recursive: true, force: true });
  }
  await git(t, ['symbolic-ref', 'HEAD', `refs/heads/${branch}`], { cwd: path, timeoutMs, ...using });
  const head = (await git(t, ['rev-parse', `refs/heads/${branch}`], { cwd: path, timeoutMs, ...using }))
    .stdout;
  return { path, head: head.toString('utf8').trim() };
}

export interface RandomBlobRepoOptions extends Omit<BareRepoOptions, 'files'> {
  readonly bytes: number;
  readonly fileName?: string;
}

/** A bare repo with one file of `bytes` random (incompressible) bytes, for large-transfer tests. */
export async function randomBlobRepo(
  t: Cleanup,
  root: string,
  name: string,
  { bytes, fileName = 'random.bin', ...rest }: RandomBlobRepoOptions,
): Promise<BareRepo & { readonly blob: Buffer }> {
  const blob = randomBytes(bytes);
  return { ...(await createBareRepo(t, root, name, { ...rest, files: { [fileName]: blob } })), blob };
}

/**
 * `count` commits on top of `base` in the (bare) repository `work`, each adding one file of
 * `bytes` random bytes; made without a work tree (fast). Returns their shas, oldest first.
 */
export async function randomCommits(
  t: Cleanup,
  work: string,
  base: string,
  count: number,
  bytes: number,
): Promise<string[]> {
  const env = {
    GIT_AUTHOR_NAME: 'p',
    GIT_AUTHOR_EMAIL: 'p@p',
    GIT_COMMITTER_NAME: 'p',
    GIT_COMMITTER_EMAIL: 'p@p',
  };
  const commits: string[] = [];
  for (let i = 0; i < count; i++) {
    const file = join(work, `blob-${i}`);
    await writeFile(file, randomBytes(bytes));
    const blob = (await git(t, ['hash-object', '-w', file], { cwd: work })).stdout.toString().trim();
    const input = `100644 blob ${blob}\tdata-${i}.bin\n`;
    const tree = (await git(t, ['mktree'], { cwd: work, input })).stdout.toString().trim();
    const commit = await git(t, ['commit-tree', tree, '-p', base, '-m', `commit ${i}`], { cwd: work, env });
    commits.push(commit.stdout.toString().trim());
  }
  return commits;
}
