import { lstatSync, readFileSync, readdirSync, statSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { CgiHeaderParser, type CgiHead } from '../request/cgi-headers.js';
import { NO_CACHE_HEADERS } from '../request/error-response.js';
import type { Repository } from '../request/locate-repository.js';
import type { GitService } from '../request/repo-path.js';
import { dependenciesOf, configFiles, type Dependencies, type RefStorage } from './depends-on.js';
import { gitBool, parseGitConfig, type ConfigEntry } from './git-config.js';
import { isTestedRelease, type GitInstall } from './git-install.js';

/**
 * The smart ref advertisement without git http-backend in between: `git upload-pack` (or
 * receive-pack) `--http-backend-info-refs .` is run directly in the git directory, as git
 * http-backend runs it, one exec instead of two; the head and the `# service=` line git
 * http-backend writes before it are ours.
 *
 * Taken only when it is certain that git http-backend would answer 200 with exactly these
 * bytes: a git release CI compares (git-install.ts), a repository git-fcgi located without
 * gitfile or commondir and owned by the serving user, an environment and config files whose
 * every relevant setting is read here, a ref storage it knows. Any doubt: git http-backend
 * runs, as always. A direct run that still fails before its first byte is retried through git
 * http-backend, which then gives its own answer.
 */
export interface DirectAdvertisement {
  readonly program: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  /** What git http-backend would have written before upload-pack's output. */
  readonly head: CgiHead;
  readonly preamble: Buffer;
  /** Everything the answer depends on (depends-on.ts). */
  readonly dependsOn: Dependencies;
}

export type AdvertisedService = 'git-upload-pack' | 'git-receive-pack';

export type Plan =
  | { readonly direct: DirectAdvertisement; readonly reason?: undefined }
  | { readonly direct: null; readonly reason: string };

/** GIT_* variables whose effect on the advertisement is known: read here, or part of the cache key. */
const KNOWN_GIT_VARIABLES =
  /^(?:GIT_PROJECT_ROOT|GIT_HTTP_EXPORT_ALL|GIT_HTTP_MAX_REQUEST_BUFFER|GIT_PROTOCOL|GIT_NAMESPACE|GIT_COMMITTER_NAME|GIT_COMMITTER_EMAIL|GIT_CONFIG_COUNT|GIT_CONFIG_KEY_\d+|GIT_CONFIG_VALUE_\d+|GIT_FCGI_\w+)$/;

/** Repository extensions (core.repositoryformatversion = 1) the fast path understands. */
const KNOWN_EXTENSIONS = new Set(['objectformat', 'refstorage', 'preciousobjects', 'noop']);

/** Entries of the git directory that would move its configuration or its git dir. */
const MOVED_GIT_DIR = new Set(['.git', 'commondir', 'config.worktree']);

export function planDirectAdvertisement(
  install: GitInstall | null,
  backend: string,
  service: GitService | null,
  repository: Repository,
  env: Readonly<Record<string, string>>,
): Plan {
  const no = (reason: string): Plan => ({ direct: null, reason });
  if (service !== 'git-upload-pack' && service !== 'git-receive-pack')
    return no(`service ${service ?? 'none'}`);
  if (!isPlainGet(env)) return no('not a plain GET');
  const known = knownDependencies(install, backend, repository, env);
  if (known.dependsOn === null) return no(known.reason);
  const { gitDirEntries, config } = known;
  // git checks the mark with access(), which follows a symlink: only a plain entry is certain.
  const exportOk = gitDirEntries.find((entry) => entry.name === 'git-daemon-export-ok');
  if (!('GIT_HTTP_EXPORT_ALL' in env) && (exportOk === undefined || exportOk.isSymbolicLink())) {
    return no('not exported (git answers 404)');
  }
  const enabled = serviceEnabled(service, config, env);
  if (enabled !== true)
    return no(enabled === false ? `${service} disabled (git answers 403)` : `http.* not understood`);
  return {
    direct: {
      program: known.install.program,
      args: [service.slice('git-'.length), '--http-backend-info-refs', '.'],
      env: runServiceEnv(env, path.dirname(known.install.program)),
      head: headFor(service),
      preamble: protocolVersion(env) === 2 ? Buffer.alloc(0) : serviceLine(service),
      dependsOn: known.dependsOn,
    },
  };
}

/** Everything git reads to serve this repository in this environment, when that is certain. */
export type KnownDependencies =
  | {
      readonly dependsOn: Dependencies;
      readonly install: GitInstall;
      readonly storage: RefStorage;
      /** The git directory's entries, as read for the check. */
      readonly gitDirEntries: readonly Dirent[];
      /** Every config entry git reads, files then command line, in git's order. */
      readonly config: readonly ConfigEntry[];
      readonly reason?: undefined;
    }
  | { readonly dependsOn: null; readonly reason: string };

/**
 * The list of what git reads for this repository (depends-on.ts), when every item is known:
 * a git release CI compares (git-install.ts), a repository git-fcgi located without gitfile
 * or commondir and owned by the serving user, no GIT_* variable whose effect is not known,
 * config files that are read here whole (no includes), a ref storage it knows. Otherwise why not.
 */
export function knownDependencies(
  install: GitInstall | null,
  backend: string,
  repository: Repository,
  env: Readonly<Record<string, string>>,
): KnownDependencies {
  const no = (reason: string): KnownDependencies => ({ dependsOn: null, reason });
  if (install === null) return no(`${backend} is not git-http-backend in a known exec-path`);
  if (!isTestedRelease(install.version))
    return no(`git ${install.version ?? '(version not known yet)'} is not a tested release`);
  if (repository.viaGitfile || repository.commonDir !== repository.gitDir) return no('gitfile or commondir');
  const unknown = Object.keys(env).find((name) => name.startsWith('GIT_') && !KNOWN_GIT_VARIABLES.test(name));
  if (unknown !== undefined) return no(`${unknown} in the environment`);
  if (!ownedByServingUser(repository.entered))
    return no('not owned by the serving user (safe.directory decides)');
  // Synchronous, like the repository look-up: metadata from the dentry cache, and files read
  // only when they changed.
  let entries: Dirent[];
  try {
    entries = readdirSync(repository.gitDir, { withFileTypes: true });
  } catch {
    return no('git directory unreadable');
  }
  if (entries.some((entry) => MOVED_GIT_DIR.has(entry.name))) return no('.git, commondir or config.worktree');
  const files = configFiles(repository.gitDir, install, env);
  const configs: ConfigEntry[][] = [];
  for (const file of files) {
    const parsed = readConfig(file);
    if (parsed === null) return no(`${file} unreadable or not understood`);
    configs.push(parsed);
  }
  const storage = refStorageOf(configs.at(-1) ?? [], install.version);
  if (typeof storage !== 'string' || (storage !== 'files' && storage !== 'reftable')) {
    return no(storage.reason);
  }
  const config = [...configs.flat(), ...commandLineConfig(env)];
  if (config.some((entry) => entry.key.startsWith('include'))) return no('config includes');
  return {
    dependsOn: dependenciesOf(repository, storage, install, backend, env),
    install,
    storage,
    gitDirEntries: entries,
    config,
  };
}

/**
 * With a body (or HEAD) git http-backend does more than advertise: those are left to it.
 * CONTENT_LENGTH=0 (HAProxy and Caddy send it with every GET) is no body: git http-backend then
 * pipes nothing into the service's stdin where it would otherwise close it; the service does
 * not read stdin for an advertisement either way.
 */
export function isPlainGet(env: Readonly<Record<string, string>>): boolean {
  return (
    env.REQUEST_METHOD === 'GET' &&
    (env.CONTENT_LENGTH === undefined || env.CONTENT_LENGTH === '0') &&
    env.HTTP_CONTENT_ENCODING === undefined
  );
}

let servingUid: number | undefined;

/**
 * git's is_path_owned_by_current_uid() (lstat): owned by the effective user, or by root when
 * that is root. Anything else makes git consult safe.directory: git http-backend decides then.
 */
function ownedByServingUser(entered: string): boolean {
  // Read at the first request: privileges are dropped before git-fcgi serves.
  servingUid ??= process.geteuid?.() ?? -1;
  const euid = servingUid;
  try {
    return lstatSync(entered).uid === euid;
  } catch {
    return false;
  }
}

/**
 * The ref storage the repository's own config names (extensions.refStorage, git >= 2.45):
 * 'files' or 'reftable'; otherwise why the fast path does not know.
 */
export function refStorageOf(
  repoConfig: readonly ConfigEntry[],
  version: string | null,
): RefStorage | { reason: string } {
  let formatVersion = 0;
  let storage: string = 'files';
  const extensions: string[] = [];
  for (const { key, value } of repoConfig) {
    if (key === 'core.repositoryformatversion') {
      if (value === null || !/^\d+$/.test(value))
        return { reason: 'core.repositoryformatversion not understood' };
      formatVersion = Number(value);
    } else if (key.startsWith('extensions.')) {
      const name = key.slice('extensions.'.length);
      extensions.push(name);
      if (name === 'refstorage') storage = (value ?? '').toLowerCase();
    }
  }
  if (formatVersion > 1) return { reason: `repository format version ${formatVersion}` };
  if (extensions.length > 0 && formatVersion !== 1) return { reason: 'extensions in a version 0 repository' };
  const unknown = extensions.find((name) => !KNOWN_EXTENSIONS.has(name));
  if (unknown !== undefined) return { reason: `extensions.${unknown}` };
  if (storage === 'reftable') {
    const [major = 0, minor = 0] = (version ?? '').split('.').map(Number);
    return major > 2 || (major === 2 && minor >= 45)
      ? 'reftable'
      : { reason: 'reftable with a git before 2.45' };
  }
  return storage === 'files' ? 'files' : { reason: `ref storage ${storage}` };
}

/** GIT_CONFIG_COUNT/KEY/VALUE as git reads them (command-line scope, after every file). */
function commandLineConfig(env: Readonly<Record<string, string>>): ConfigEntry[] {
  const count = Number(env.GIT_CONFIG_COUNT ?? '0');
  const entries: ConfigEntry[] = [];
  for (let i = 0; i < count; i++) {
    entries.push({
      key: (env[`GIT_CONFIG_KEY_${i}`] ?? '').toLowerCase(),
      value: env[`GIT_CONFIG_VALUE_${i}`] ?? '',
    });
  }
  return entries;
}

/**
 * http.uploadpack (default on) and http.receivepack (default: on when REMOTE_USER is set), as
 * git http-backend's http_config() and select_service() decide them: the last value wins.
 * undefined: a value git would read otherwise than here.
 */
export function serviceEnabled(
  service: AdvertisedService,
  config: readonly ConfigEntry[],
  env: Readonly<Record<string, string>>,
): boolean | undefined {
  let enabled = service === 'git-upload-pack' || Boolean(env.REMOTE_USER);
  const wanted = service === 'git-upload-pack' ? 'http.uploadpack' : 'http.receivepack';
  for (const { key, value } of config) {
    if (key !== wanted) continue;
    const parsed = gitBool(value);
    if (parsed === undefined) return undefined;
    enabled = parsed;
  }
  return enabled;
}

/** Parsed config files by path, checked against the file's identity and times on every use. */
const parsedConfigs = new Map<string, { readonly version: string; readonly entries: ConfigEntry[] | null }>();
const MAX_CACHED = 1024;

/** A config file's entries; [] when it does not exist, null when unreadable or not understood. */
function readConfig(file: string): ConfigEntry[] | null {
  let version: string;
  try {
    const s = statSync(file, { throwIfNoEntry: false });
    if (s === undefined) return [];
    version = `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  } catch {
    return null;
  }
  const cached = parsedConfigs.get(file);
  if (cached?.version === version) return cached.entries;
  let entries: ConfigEntry[] | null;
  try {
    entries = parseGitConfig(readFileSync(file, 'utf8'));
  } catch {
    entries = null;
  }
  if (parsedConfigs.size >= MAX_CACHED) parsedConfigs.clear();
  parsedConfigs.set(file, { version, entries });
  return entries;
}

/** determine_protocol_version_server(): the highest `version=` that GIT_PROTOCOL names. */
export function protocolVersion(env: Readonly<Record<string, string>>): number {
  // git http-backend copies HTTP_GIT_PROTOCOL into GIT_PROTOCOL unless that is already set.
  const protocol = env.GIT_PROTOCOL ?? env.HTTP_GIT_PROTOCOL;
  let version = 0;
  for (const item of protocol?.split(':') ?? []) {
    const value = item.startsWith('version=') ? item.slice('version='.length) : undefined;
    const parsed = value === '1' ? 1 : value === '2' ? 2 : 0;
    version = Math.max(version, parsed);
  }
  return version;
}

/** The environment git http-backend's run_service() gives its child. */
function runServiceEnv(env: Readonly<Record<string, string>>, execDir: string): Record<string, string> {
  const user = env.REMOTE_USER || 'anonymous';
  const host = env.REMOTE_ADDR || '(none)';
  const protocol = env.GIT_PROTOCOL ?? env.HTTP_GIT_PROTOCOL;
  return {
    ...env,
    PATH: `${execDir}:${env.PATH ?? ''}`,
    ...(protocol === undefined ? {} : { GIT_PROTOCOL: protocol }),
    GIT_COMMITTER_NAME: env.GIT_COMMITTER_NAME ?? user,
    GIT_COMMITTER_EMAIL: env.GIT_COMMITTER_EMAIL ?? `${user}@http.${host}`,
  };
}

const heads = new Map<AdvertisedService, CgiHead>();

/** hdr_nocache() and the Content-Type of http-backend.c's get_info_refs(), parsed as its output is. */
export function headFor(service: AdvertisedService): CgiHead {
  const known = heads.get(service);
  if (known !== undefined) return known;
  const block =
    NO_CACHE_HEADERS.map(([name, value]) => `${name}: ${value}\r\n`).join('') +
    `Content-Type: application/x-${service}-advertisement\r\n\r\n`;
  const head = new CgiHeaderParser().push(Buffer.from(block, 'latin1'));
  if (head === null) throw new Error('unterminated built-in header block');
  heads.set(service, head);
  return head;
}

/** `# service=git-upload-pack\n` as a pkt-line, then a flush-pkt. */
export function serviceLine(service: AdvertisedService): Buffer {
  const line = `# service=${service}\n`;
  return Buffer.from(`${(line.length + 4).toString(16).padStart(4, '0')}${line}0000`, 'latin1');
}
