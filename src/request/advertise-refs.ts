import { readFileSync, readdirSync, statSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { CgiHeaderParser, type CgiHead } from './cgi-headers.js';
import type { GitService } from './repo-path.js';

/**
 * The smart ref advertisement without git http-backend in between: `git upload-pack` (or
 * receive-pack) `--stateless-rpc --advertise-refs` is run directly, one exec instead of two,
 * and the head and `# service=` line git http-backend 2.39 writes before it are ours.
 *
 * Taken only when it is certain that git http-backend would answer 200 (repository exported,
 * service enabled, nothing in the configuration this module cannot read exactly); any doubt
 * means git http-backend runs as before. A direct run that fails before its first byte is also
 * retried through git http-backend, which then gives its own answer (404, 403, ...).
 */
export interface DirectAdvertisement {
  readonly program: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  /** What git http-backend would have written before upload-pack's output. */
  readonly head: CgiHead;
  readonly preamble: Buffer;
  /** Files outside the repository that the output depends on: the system config, the git binary. */
  readonly dependsOn: readonly string[];
}

type AdvertisedService = 'git-upload-pack' | 'git-receive-pack';

/** Where git's exec-path is known to go with /etc/gitconfig (built with prefix=/usr). */
const SYSTEM_CONFIG_BY_EXEC_DIR: ReadonlyMap<string, string> = new Map([
  ['/usr/lib/git-core', '/etc/gitconfig'],
  ['/usr/libexec/git-core', '/etc/gitconfig'],
]);

/** Variables that would make git read configuration from elsewhere than checked here. */
const CONFIG_ENV =
  /^(?:HOME|XDG_CONFIG_HOME|GIT_CONFIG(?!_COUNT$|_KEY_\d+$|_VALUE_\d+$)\w*|GIT_DIR|GIT_COMMON_DIR)$/;

/** Entries of the repository directory that would move its configuration or its git dir. */
const MOVED_GIT_DIR = new Set(['.git', 'commondir', 'config.worktree']);

export function directAdvertisement(
  backend: string,
  service: GitService | null,
  repoDir: string,
  env: Readonly<Record<string, string>>,
): DirectAdvertisement | null {
  if (service !== 'git-upload-pack' && service !== 'git-receive-pack') return null;
  if (path.basename(backend) !== 'git-http-backend') return null;
  // With a body (or HEAD) git http-backend does more than advertise: leave those to it.
  const bodyless = env.CONTENT_LENGTH === undefined && env.HTTP_CONTENT_ENCODING === undefined;
  if (env.REQUEST_METHOD !== 'GET' || !bodyless) return null;
  const execDir = path.dirname(backend);
  const systemConfig = SYSTEM_CONFIG_BY_EXEC_DIR.get(execDir);
  if (systemConfig === undefined || Object.keys(env).some((name) => CONFIG_ENV.test(name))) return null;
  if (!serviceCertainlyEnabled(service, env)) return null;
  // Synchronous, like the repository look-up: metadata from the dentry cache, and files read
  // only when they changed.
  if (!configIsClean(path.join(repoDir, 'config'), service) || !configIsClean(systemConfig, service))
    return null;
  let entries: Dirent[];
  try {
    entries = readdirSync(repoDir, { withFileTypes: true });
  } catch {
    return null;
  }
  if (entries.some((entry) => MOVED_GIT_DIR.has(entry.name))) return null;
  // git checks the mark with access(), which follows a symlink: only a plain entry is certain.
  const exportOk = entries.find((entry) => entry.name === 'git-daemon-export-ok');
  if (!('GIT_HTTP_EXPORT_ALL' in env) && (exportOk === undefined || exportOk.isSymbolicLink())) return null;
  const name = service.slice('git-'.length);
  const program = path.join(execDir, 'git');
  return {
    program,
    args: [name, '--stateless-rpc', '--advertise-refs', '.'],
    env: backendEnv(env, execDir),
    head: headFor(service),
    preamble: protocolVersion(env) === 2 ? Buffer.alloc(0) : serviceLine(service),
    dependsOn: [systemConfig, program],
  };
}

/**
 * http.uploadpack (default on) and http.receivepack (default: on when REMOTE_USER is set), as
 * git http-backend decides them when no config file mentions either (checked separately): the
 * GIT_CONFIG_COUNT/KEY/VALUE entries, the last one winning. Undecidable (a value git might
 * read otherwise, an include): false.
 */
export function serviceCertainlyEnabled(
  service: AdvertisedService,
  env: Readonly<Record<string, string>>,
): boolean {
  let enabled = service === 'git-upload-pack' || Boolean(env.REMOTE_USER);
  const wanted = service === 'git-upload-pack' ? 'http.uploadpack' : 'http.receivepack';
  const count = Number(env.GIT_CONFIG_COUNT ?? '0');
  for (let i = 0; i < count; i++) {
    const key = env[`GIT_CONFIG_KEY_${i}`]?.toLowerCase() ?? '';
    if (key.startsWith('include')) return false;
    if (key !== wanted) continue;
    const value = gitBool(env[`GIT_CONFIG_VALUE_${i}`] ?? '');
    if (value === undefined) return false;
    enabled = value;
  }
  return enabled;
}

/** git's git_parse_maybe_bool, for the spellings it accepts; undefined for anything else. */
function gitBool(value: string): boolean | undefined {
  const lower = value.toLowerCase();
  if (lower === 'true' || lower === 'yes' || lower === 'on') return true;
  if (lower === 'false' || lower === 'no' || lower === 'off' || lower === '') return false;
  return /^[+-]?\d+$/.test(value) ? Number(value) !== 0 : undefined;
}

/** What a config file says that matters here: an include, or a service's enabling variable. */
export interface ConfigMentions {
  readonly include: boolean;
  readonly uploadpack: boolean;
  readonly receivepack: boolean;
}

/**
 * Whether a config file may set http.uploadpack or http.receivepack: any variable of that name
 * in any section counts, and so does a value that merely contains it as a word (conservative).
 */
export function configMentions(text: string): ConfigMentions {
  const variable = (name: string): boolean =>
    new RegExp(`(?:^|[\\s\\]])${name}\\s*(?:[=;#]|$)`, 'im').test(text);
  return {
    include: /include/i.test(text),
    uploadpack: variable('uploadpack'),
    receivepack: variable('receivepack'),
  };
}

interface CachedVerdict {
  readonly version: string;
  readonly mentions: ConfigMentions;
}

/** Config verdicts by file, checked against the file's identity and times on every use. */
const verdicts = new Map<string, CachedVerdict>();
const MAX_CACHED = 1024;

/** The file certainly leaves the service's http.* switch alone. Missing: clean; unreadable: not. */
function configIsClean(file: string, service: AdvertisedService): boolean {
  let version: string;
  try {
    const s = statSync(file, { bigint: true });
    version = `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    return err instanceof Error && 'code' in err && err.code === 'ENOENT';
  }
  let mentions = verdicts.get(file)?.version === version ? verdicts.get(file)?.mentions : undefined;
  if (mentions === undefined) {
    try {
      mentions = configMentions(readFileSync(file, 'latin1'));
    } catch {
      return false;
    }
    if (verdicts.size >= MAX_CACHED) verdicts.clear();
    verdicts.set(file, { version, mentions });
  }
  return !mentions.include && !(service === 'git-upload-pack' ? mentions.uploadpack : mentions.receivepack);
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
function backendEnv(env: Readonly<Record<string, string>>, execDir: string): Record<string, string> {
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

/** hdr_nocache() and the Content-Type of http-backend.c's get_info_refs(), parsed as its output is. */
export function headFor(service: AdvertisedService): CgiHead {
  const block =
    'Expires: Fri, 01 Jan 1980 00:00:00 GMT\r\n' +
    'Pragma: no-cache\r\n' +
    'Cache-Control: no-cache, max-age=0, must-revalidate\r\n' +
    `Content-Type: application/x-${service}-advertisement\r\n\r\n`;
  const head = new CgiHeaderParser().push(Buffer.from(block, 'latin1'));
  if (head === null) throw new Error('unterminated built-in header block');
  return head;
}

/** `# service=git-upload-pack\n` as a pkt-line, then a flush-pkt. */
export function serviceLine(service: AdvertisedService): Buffer {
  const line = `# service=${service}\n`;
  return Buffer.from(`${(line.length + 4).toString(16).padStart(4, '0')}${line}0000`, 'latin1');
}
