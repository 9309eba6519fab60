import { availableParallelism } from 'node:os';
import {
  formatOwner,
  parseAbsolutePath,
  parseAccount,
  parseClients,
  parseInteger,
  parseOwner,
  parseUrlPath,
  parseBool,
  parseDuration,
  parseEnum,
  parseHostPort,
  parseListen,
  parseMode,
  parseSize,
  type ListenAddress,
  type Owner,
} from './values.js';
import type { AccessSettings } from '../access/authorize.js';
import type { LogFormat, LogLevel } from '../log.js';

/**
 * Every setting, once: its section and key in the ini file, its command-line flag, its default
 * and its documentation. The loader, `--help`, and `--check-config` all read this table.
 */
export interface SettingDef<T> {
  readonly section: 'server' | 'git' | 'log';
  readonly key: string;
  /** commander flag spec, e.g. `--listen <address>`; absent: file only. */
  readonly flag?: string;
  readonly default: T;
  readonly parse: (raw: string) => T;
  /** How the value is shown by --check-config. */
  show?(value: T): string;
  readonly doc: string;
}

function def<T>(d: SettingDef<T>): SettingDef<T> {
  return d;
}

/**
 * git http-backend mostly waits on the network, but pack-objects is CPU-bound while it
 * compresses: a few backends per CPU keep the machine busy without thrashing it.
 */
const DEFAULT_MAX_CHILDREN = Math.max(4, 2 * availableParallelism());
/** Default queue length per backend slot: a waiting request costs one idle FastCGI connection. */
export const QUEUE_PER_CHILD = 64;

/** The queue length in effect: the setting, or its default relative to max_children. */
export const effectiveQueue = (c: { readonly queue: number | null; readonly maxChildren: number }): number =>
  c.queue ?? QUEUE_PER_CHILD * c.maxChildren;

const nullable =
  <T>(parse: (raw: string) => T) =>
  (raw: string): T | null =>
    raw.trim() === '' ? null : parse(raw);

export const SETTINGS = {
  listen: def<ListenAddress | null>({
    section: 'server',
    key: 'listen',
    flag: '--listen <address>',
    default: null,
    parse: nullable(parseListen),
    doc: 'FastCGI socket: unix:/path, /path, HOST:PORT or tcp:HOST:PORT. Unset: the socket passed on fd 0 (spawn-fcgi) or by systemd socket activation.',
  }),
  socketMode: def<number>({
    section: 'server',
    key: 'socket_mode',
    flag: '--socket-mode <mode>',
    default: 0o660,
    parse: parseMode,
    show: (mode) => `0${mode.toString(8)}`,
    doc: 'Permissions of the UNIX socket (octal). 0660: only the owner and its group (add nginx to it) may connect.',
  }),
  socketOwner: def<Owner | null>({
    section: 'server',
    key: 'socket_owner',
    flag: '--socket-owner <user[:group]>',
    default: null,
    parse: nullable(parseOwner),
    show: (owner) => (owner === null ? '' : formatOwner(owner)),
    doc: "Owner of the UNIX socket, e.g. git:nginx (set before privileges are dropped). Unset: the daemon's own user and group.",
  }),
  allowedClients: def<readonly string[] | 'any'>({
    section: 'server',
    key: 'allowed_clients',
    default: ['127.0.0.1'],
    parse: parseClients,
    show: (clients) => (clients === 'any' ? 'any' : clients.join(', ')),
    doc: 'For a TCP listener: the addresses nginx may connect from (comma-separated), or any. Others are disconnected and logged.',
  }),
  user: def<string | null>({
    section: 'server',
    key: 'user',
    flag: '--user <user>',
    default: null,
    parse: nullable(parseAccount),
    doc: 'After binding, run as this user (with its supplementary groups); the backends run as it too. Needs root to start. Unset: stay who started git-fcgi.',
  }),
  group: def<string | null>({
    section: 'server',
    key: 'group',
    flag: '--group <group>',
    default: null,
    parse: nullable(parseAccount),
    doc: "With user: the primary group to run as. Unset: the user's own primary group.",
  }),
  allowRoot: def<boolean>({
    section: 'server',
    key: 'allow_root',
    flag: '--allow-root',
    default: false,
    parse: parseBool,
    doc: 'Allow serving as root (git and its hooks would run as root). Without it, git-fcgi started with a config file refuses to run as root unless user is set; started from command-line flags alone it runs and warns.',
  }),
  pidFile: def<string | null>({
    section: 'server',
    key: 'pid_file',
    flag: '--pid-file <file>',
    default: null,
    parse: nullable(parseAbsolutePath),
    doc: "Write the daemon's pid here (after binding, before dropping privileges); removed at exit. Not needed under systemd.",
  }),
  http: def<{ host: string; port: number } | null>({
    section: 'server',
    key: 'http',
    flag: '--http <host:port>',
    default: null,
    parse: nullable(parseHostPort),
    doc: 'Also serve plain HTTP on HOST:PORT (for trying git-fcgi out and small setups without nginx).',
  }),
  maxParamsBytes: def<number>({
    section: 'server',
    key: 'max_params_size',
    default: 256 * 1024,
    parse: parseSize,
    doc: 'Largest FastCGI params block (all request headers and CGI variables) accepted from nginx.',
  }),
  maxChildren: def<number>({
    section: 'server',
    key: 'max_children',
    flag: '--max-children <n>',
    default: DEFAULT_MAX_CHILDREN,
    parse: (raw) => parseInteger(raw, 1, 100_000),
    doc: `Most backends (git requests) running at once; further requests wait in the queue. Default: 2 per CPU, at least 4 (--check-config shows the value).`,
  }),
  queue: def<number | null>({
    section: 'server',
    key: 'queue',
    flag: '--queue <n>',
    default: null,
    parse: nullable((raw) => parseInteger(raw, 0, 1_000_000)),
    show: (queue) => (queue === null ? `(${QUEUE_PER_CHILD} x max_children)` : String(queue)),
    doc: `Requests that may wait for a free backend (first come, first served); beyond that: 503 with Retry-After. 0: no waiting. Default: ${QUEUE_PER_CHILD} x max_children, so that a burst (a CI fleet cloning at once) waits instead of failing: git does not retry a 503.`,
  }),
  queueTimeoutMs: def<number>({
    section: 'server',
    key: 'queue_timeout',
    default: 30_000,
    parse: parseDuration,
    doc: 'A request that waited this long in the queue gets 503 with Retry-After.',
  }),
  idleTimeoutMs: def<number>({
    section: 'server',
    key: 'idle_timeout',
    flag: '--idle-timeout <duration>',
    default: 10 * 60_000,
    parse: parseDuration,
    doc: 'Kill a backend when no byte has moved in either direction for this long (504 if nothing was sent yet).',
  }),
  killGraceMs: def<number>({
    section: 'server',
    key: 'kill_grace',
    default: 2000,
    parse: parseDuration,
    doc: 'After SIGTERM to a backend process group, wait this long before SIGKILL.',
  }),
  shutdownTimeoutMs: def<number>({
    section: 'server',
    key: 'shutdown_timeout',
    default: 30_000,
    parse: parseDuration,
    doc: 'On SIGTERM/SIGINT: how long running requests may take to finish before their backends are killed.',
  }),
  spawnHelper: def<'auto' | 'on' | 'off'>({
    section: 'server',
    key: 'spawn_helper',
    flag: '--spawn-helper <mode>',
    default: 'auto',
    parse: (raw) => parseEnum(raw, ['auto', 'on', 'off'] as const),
    doc: "How backends are started. auto: through git-fcgi-spawnd, the small helper `npm ci` builds (needs a C compiler), falling back to Node's own spawn with a warning when it is missing; on: through the helper only (git-fcgi does not start without it); off: Node's spawn, which forks the whole daemon for every request (1-2 ms of CPU each, on the event loop).",
  }),
  pingPath: def<string | null>({
    section: 'server',
    key: 'ping_path',
    default: null,
    parse: nullable(parseUrlPath),
    doc: "A request for this path (e.g. /git-fcgi-ping) is answered 'pong' by git-fcgi itself, for health checks. Unset: off.",
  }),
  statusPath: def<string | null>({
    section: 'server',
    key: 'status_path',
    default: null,
    parse: nullable(parseUrlPath),
    doc: 'A request for this path (e.g. /git-fcgi-status) gets live figures: plain text, ?json, or ?openmetrics (Prometheus). Unset: off. Restrict it in nginx.',
  }),
  projectRoot: def<string | null>({
    section: 'git',
    key: 'project_root',
    flag: '--project-root <dir>',
    default: null,
    parse: nullable(parseAbsolutePath),
    doc: 'Directory holding the repositories (GIT_PROJECT_ROOT). A GIT_PROJECT_ROOT param from nginx takes precedence.',
  }),
  backend: def<string | null>({
    section: 'git',
    key: 'backend',
    flag: '--backend <path>',
    default: null,
    parse: nullable(parseAbsolutePath),
    doc: 'The CGI program to run. Default: git-http-backend in `git --exec-path`. SCRIPT_FILENAME from nginx is never run.',
  }),
  exportAll: def<boolean>({
    section: 'git',
    key: 'export_all',
    flag: '--export-all',
    default: false,
    parse: parseBool,
    doc: 'Serve every repository, not only those with a git-daemon-export-ok file (GIT_HTTP_EXPORT_ALL).',
  }),
  maxRequestBufferBytes: def<number | null>({
    section: 'git',
    key: 'max_request_buffer',
    default: null,
    parse: nullable(parseSize),
    doc: "Largest fetch negotiation git http-backend buffers (GIT_HTTP_MAX_REQUEST_BUFFER). Unset: git's default, 10M.",
  }),
  receiveMaxInputSizeBytes: def<number | null>({
    section: 'git',
    key: 'receive_max_input_size',
    default: null,
    parse: nullable(parseSize),
    doc: 'Largest push git accepts (receive.maxInputSize, passed through GIT_CONFIG_COUNT/KEY/VALUE). Unset: no limit.',
  }),
  refCacheBytes: def<number>({
    section: 'git',
    key: 'ref_cache',
    flag: '--ref-cache <size>',
    default: 8 * 1024 * 1024,
    parse: parseSize,
    show: (bytes) => (bytes === 0 ? '0 (off)' : String(bytes)),
    doc: 'Memory for ref advertisements (the first request of every fetch and clone) kept while nothing they depend on changes: refs, HEAD, packed-refs, config, packs, the git binary, checked with stat() on every request. A repeated advertisement is then served without running git. Only on local filesystems (not NFS/CIFS/FUSE), only for repositories with at most 256 loose refs and directories under refs/. 0: off. A reload (SIGHUP) empties it.',
  }),
  home: def<string | null>({
    section: 'git',
    key: 'home',
    default: null,
    parse: nullable((raw) => (raw.trim() === 'none' ? 'none' : parseAbsolutePath(raw))),
    show: (home) => home ?? "(the serving user's home directory)",
    doc: "HOME for git and its hooks, as sshd sets it, so that the serving user's ~/.gitconfig (safe.directory, ...) is read. Unset: that user's home directory from the password database; none: no HOME at all.",
  }),
  followSymlinks: def<boolean>({
    section: 'git',
    key: 'follow_symlinks',
    default: false,
    parse: parseBool,
    doc: 'Serve repositories reached through a symbolic link, a gitfile (`.git` file with `gitdir: PATH`) or a `commondir` file, as git would. Whatever is followed, git-fcgi never serves a repository that resolves outside project_root.',
  }),
  logLevel: def<LogLevel>({
    section: 'log',
    key: 'level',
    flag: '--log-level <level>',
    default: 'info',
    parse: (raw) => parseEnum(raw, ['error', 'warn', 'info', 'debug'] as const),
    doc: 'error, warn, info or debug.',
  }),
  logFormat: def<LogFormat>({
    section: 'log',
    key: 'format',
    flag: '--log-format <format>',
    default: 'text',
    parse: (raw) => parseEnum(raw, ['text', 'json'] as const),
    doc: 'text (key=value, for journald) or json (one object a line).',
  }),
  logFile: def<string | null>({
    section: 'log',
    key: 'file',
    default: null,
    parse: nullable(parseAbsolutePath),
    doc: 'Log to this file instead of stderr (stderr goes to the journal under systemd).',
  }),
  accessLog: def<boolean>({
    section: 'log',
    key: 'access_log',
    default: true,
    parse: parseBool,
    doc: 'One line per request: id, address, user, method, repository, service, status, bytes, duration, exit code.',
  }),
  accessFile: def<string | null>({
    section: 'log',
    key: 'access_file',
    default: null,
    parse: nullable(parseAbsolutePath),
    doc: 'Write the access log to this file instead of the main log.',
  }),
};

export type SettingName = keyof typeof SETTINGS;
type ValueOf<D> = D extends SettingDef<infer T> ? T : never;
/**
 * The effective, validated configuration: one frozen object, every default filled in; with the
 * access rules ([auth], [groups], [repo:…] sections), which do not fit the one-value table.
 */
export type Config = { readonly [K in SettingName]: ValueOf<(typeof SETTINGS)[K]> } & AccessSettings & {
    /** The [env] section: variables added to every backend's environment. */
    readonly env: Readonly<Record<string, string>>;
  };
