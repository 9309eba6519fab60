import {
  accessSync,
  constants,
  lstatSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
  type Stats,
} from 'node:fs';
import path from 'node:path';
import { GitFcgiError } from '../errors.js';

/**
 * Where git http-backend would find a repository, and whether git-fcgi lets it: git's
 * `enter_repo()` (setup.c), step for step, then git-fcgi's own guarantees on the result.
 *
 * git tries `ROOT/PATH` with the suffixes `/.git`, ``, `.git/.git` and `.git`, in that order,
 * and takes the first that is a regular file (a gitfile: `gitdir: …`) or a directory that
 * is_git_directory() accepts; stat() follows symlinks. A gitfile is followed, and so is a
 * `commondir` file in the git directory. git then runs upload-pack/receive-pack with `.` in
 * that directory, and they call enter_repo(".") again: a `.git` inside it would be entered.
 *
 * git-fcgi answers what git would answer, and on top of it refuses (404) a repository that
 * - resolves, after every symlink, gitfile and commondir, to a directory that is not strictly
 *   inside the project root;
 * - is reached through a symlink or a gitfile or uses a commondir, unless follow_symlinks;
 * - holds a `.git` of its own that git's upload-pack would enter instead.
 * Access rules, the ref advertisement fast path and the backend all use this one answer.
 */
export interface Repository {
  /**
   * The repository's name for access rules, logs and hooks: its real common directory (where
   * objects and refs live) relative to the real project root, without a trailing `/.git`.
   * Every alias of a repository has the same name.
   */
  readonly name: string;
  /** The path git enters, as git builds it: the project root as given, the path, the suffix. */
  readonly entered: string;
  /** Real path of the git directory (HEAD, config); the gitfile's target when there is one. */
  readonly gitDir: string;
  /** Real path of the common directory (objects, refs): gitDir unless `commondir` says otherwise. */
  readonly commonDir: string;
  /** A gitfile was followed. */
  readonly viaGitfile: boolean;
}

/** enter_repo()'s suffixes, in its order. */
export const ENTER_REPO_SUFFIXES = ['/.git', '', '.git/.git', '.git'] as const;

/** read_gitfile_gently()'s limit. */
const MAX_GITFILE_BYTES = 1 << 20;

export interface LocateOptions {
  readonly followSymlinks: boolean;
}

/**
 * The repository `requested` (the path before the route, relative to the project root, e.g.
 * 'team/app' or 'team/app.git') names, or an error: ERR_NOT_FOUND (404) where git would not
 * find it or git-fcgi refuses it, ERR_GIT_REFUSES (500) where git would die (a broken gitfile
 * or commondir), ERR_CONFIG (500) when the project root itself is not there.
 */
export function locateRepository(projectRoot: string, requested: string, options: LocateOptions): Repository {
  const segments = requested.split('/');
  if (
    requested === '' ||
    path.isAbsolute(requested) ||
    requested.includes('\0') ||
    segments.some(isDotSegment)
  ) {
    throw new GitFcgiError(
      'ERR_BAD_PATH',
      `repository ${JSON.stringify(requested)} is not a clean relative path`,
      {
        status: 400,
      },
    );
  }
  let rootReal: string;
  try {
    rootReal = realpathSync.native(projectRoot);
  } catch (err) {
    throw new GitFcgiError('ERR_CONFIG', `project root ${projectRoot} is not accessible`, {
      status: 500,
      cause: err,
    });
  }
  const where = `${requested} under ${rootReal}`;
  // git: end_url_with_slash(root) + PATH_INFO, then the suffixes.
  const base = `${projectRoot.endsWith('/') ? projectRoot : `${projectRoot}/`}${requested}`;
  let entered: string | null = null;
  let isGitfile = false;
  let suffix = '';
  for (const candidateSuffix of ENTER_REPO_SUFFIXES) {
    const candidate = base + candidateSuffix;
    const st = statOrNull(candidate);
    if (st === null) continue;
    if (st.isFile() || (st.isDirectory() && isGitDirectory(candidate))) {
      entered = candidate;
      isGitfile = st.isFile();
      suffix = candidateSuffix;
      break;
    }
  }
  if (entered === null) throw notFound(`${where}: not a git repository (git's enter_repo() finds none)`);
  if (!options.followSymlinks) {
    const symlink = firstSymlink(projectRoot, `${requested}${suffix}`);
    if (symlink !== null) throw notFound(`${where}: ${symlink} is a symlink and follow_symlinks is off`);
    if (isGitfile) throw notFound(`${where}: ${entered} is a gitfile and follow_symlinks is off`);
  }
  // Without a symlink on the way (checked above), the path under the real root is the real path.
  const gitDir = isGitfile
    ? readGitfile(entered)
    : options.followSymlinks
      ? realpath(entered, where)
      : path.join(rootReal, `${requested}${suffix}`);
  const commonDir = readCommondir(gitDir);
  if (commonDir !== null && !options.followSymlinks) {
    throw notFound(`${where}: ${gitDir}/commondir points elsewhere and follow_symlinks is off`);
  }
  const common = commonDir ?? gitDir;
  for (const dir of new Set([gitDir, common])) {
    if (!isStrictlyInside(rootReal, dir))
      throw notFound(`${where}: resolves to ${dir}, outside the project root`);
  }
  // upload-pack and receive-pack run with "." in the git directory and enter_repo(".") again.
  const inner = statOrNull(path.join(gitDir, '.git'));
  if (
    inner !== null &&
    (inner.isFile() || (inner.isDirectory() && isGitDirectory(path.join(gitDir, '.git'))))
  ) {
    throw notFound(`${where}: ${gitDir} holds a .git of its own, which git would enter instead`);
  }
  const relative = path.relative(rootReal, common);
  const name = relative.endsWith('/.git') ? relative.slice(0, -'/.git'.length) : relative;
  return { name, entered, gitDir, commonDir: common, viaGitfile: isGitfile };
}

/**
 * is_git_directory(): HEAD passes validate_headref(), and the common directory has `objects`
 * and `refs` that access(X_OK) accepts. (GIT_OBJECT_DIRECTORY never reaches git from git-fcgi.)
 */
export function isGitDirectory(dir: string): boolean {
  if (!validHeadRef(path.join(dir, 'HEAD'))) return false;
  const common = readCommondir(dir) ?? dir;
  return executable(path.join(common, 'objects')) && executable(path.join(common, 'refs'));
}

/** validate_headref(): a symlink into refs/, `ref: refs/…`, or a detached object id. */
export function validHeadRef(file: string): boolean {
  let st;
  try {
    st = lstatSync(file, { throwIfNoEntry: false });
  } catch {
    return false;
  }
  if (st === undefined) return false;
  if (st.isSymbolicLink()) {
    try {
      return readlinkSync(file, 'latin1').startsWith('refs/');
    } catch {
      return false;
    }
  }
  let text: string;
  try {
    text = readFileSync(file, 'latin1').slice(0, 255);
  } catch {
    return false;
  }
  return isHeadRefText(text);
}

/** The content test of validate_headref(), for its first 255 bytes. */
export function isHeadRefText(text: string): boolean {
  if (text.startsWith('ref:') && /^\s*refs\//.test(text.slice(4))) return true;
  // get_oid_hex_any(): the hex digits of any hash algorithm git knows, whatever follows.
  return /^[0-9a-fA-F]{40}/.test(text);
}

/** get_common_dir_noenv(): the real path `commondir` names, or null when there is none. */
function readCommondir(gitDir: string): string | null {
  const file = path.join(gitDir, 'commondir');
  if (statOrNull(file) === null) return null;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw gitRefuses(`failed to read ${file}`, err);
  }
  const target = text.replace(/[\r\n]+$/, '');
  if (target === '') throw gitRefuses(`failed to read ${file}`);
  return realpath(
    path.isAbsolute(target) ? target : path.join(gitDir, target),
    `commondir of ${gitDir}`,
    true,
  );
}

/** read_gitfile_gently() where git would die on any error: the real path of the git directory. */
function readGitfile(file: string): string {
  let bytes: Buffer;
  try {
    if (statSync(file).size > MAX_GITFILE_BYTES) throw gitRefuses(`too large to be a .git file: '${file}'`);
    bytes = readFileSync(file);
  } catch (err) {
    if (err instanceof GitFcgiError) throw err;
    throw gitRefuses(`error reading ${file}`, err);
  }
  let text = bytes.toString('utf8');
  if (!text.startsWith('gitdir: ')) throw gitRefuses(`invalid gitfile format: ${file}`);
  text = text.replace(/[\r\n]+$/, '');
  if (text.length < 9) throw gitRefuses(`no path in gitfile: ${file}`);
  const named = text.slice('gitdir: '.length);
  const dir = path.isAbsolute(named) ? named : `${path.dirname(file)}/${named}`;
  if (!isGitDirectory(dir)) throw gitRefuses(`not a git repository: ${dir}`);
  return realpath(dir, file, true);
}

/** The first component of `relative` under `root` that is a symlink, or null. */
function firstSymlink(root: string, relative: string): string | null {
  let at = root;
  for (const segment of relative.split('/')) {
    at = path.join(at, segment);
    try {
      if (lstatSync(at).isSymbolicLink()) return at;
    } catch {
      return at; // stat() above found the whole path: a component that vanished since is refused
    }
  }
  return null;
}

function isStrictlyInside(root: string, dir: string): boolean {
  const prefix = root.endsWith(path.sep) ? root : root + path.sep;
  return dir.startsWith(prefix) && dir.length > prefix.length;
}

function realpath(file: string, where: string, gitDies = false): string {
  try {
    return realpathSync.native(file);
  } catch (err) {
    if (gitDies) throw gitRefuses(`${where}: cannot resolve ${file}`, err);
    throw notFound(`${where}: cannot resolve ${file}`, err);
  }
}

function statOrNull(file: string): Stats | null {
  try {
    // No exception for the usual miss: most requests try a suffix or two that is not there.
    return statSync(file, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function isDotSegment(segment: string): boolean {
  return segment === '' || segment === '.' || segment === '..';
}

function notFound(message: string, cause?: unknown): GitFcgiError {
  return new GitFcgiError(
    'ERR_NOT_FOUND',
    message,
    cause === undefined ? { status: 404 } : { status: 404, cause },
  );
}

/** What git would die of (its answer: 500), found before running it. */
function gitRefuses(message: string, cause?: unknown): GitFcgiError {
  return new GitFcgiError(
    'ERR_GIT_REFUSES',
    message,
    cause === undefined ? { status: 500 } : { status: 500, cause },
  );
}
