import {
  formatDuration,
  formatListen,
  formatOwner,
  formatSize,
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
import { cpusForGit } from './cpus.js';
import type { LogFormat, LogLevel } from '../log.js';

/**
 * Every setting, once: its section and key in the ini file, its command-line flag, its default
 * and its documentation. The loader, `--help`, `--check-config`, etc/git-fcgi.ini and the man
 * page all read this table.
 */
export interface SettingDef<T> {
  readonly section: 'server' | 'git' | 'log';
  readonly key: string;
  /** commander flag spec, e.g. `--listen <address>`; absent: file only. */
  readonly flag?: string;
  readonly default: T;
  readonly parse: (raw: string) => T;
  /** The value as written in the ini file: `parse(format(v))` gives `v` back. Default: formatValue. */
  format?(value: T): string;
  /** How --check-config shows the value, when that needs more words than `format`. */
  show?(value: T): string;
  /** The default as the ini file writes it, when it depends on the machine (else format(default)). */
  readonly defaultText?: string;
  /** Bound or dropped once at startup: a reload (SIGHUP) keeps the running value. */
  readonly restart?: true;
  /** A typical value, with why, for etc/git-fcgi.ini and the man page. */
  readonly example?: { readonly value: string; readonly note?: string };
  /** Sentences for --help, etc/git-fcgi.ini and the man page: what it does, units, what unset means. */
  readonly doc: string;
}

function def<T>(d: SettingDef<T>): SettingDef<T> {
  return d;
}

/**
 * One backend per CPU git gets for pack-objects, which is CPU-bound and already runs its delta
 * search on every CPU (pack.threads): more of them at once finish a burst no sooner on a machine
 * git has to itself (32 depth-1 fetches on 2 idle CPUs: the same git CPU with 2 to 16 at once,
 * 2 done first; README: Bursts) but make each request wait longer for its pack and hold more
 * memory. Two more for requests that wait on the network (a slow client reading a clone holds
 * its backend), and at least 4.
 */
export const defaultMaxChildren = (cpus: number): number => Math.max(4, cpus + 2);
const DEFAULT_MAX_CHILDREN = defaultMaxChildren(cpusForGit());
/**
 * Longer than the 600 s the shipped front-end configs wait for a response: a burst that takes
 * longer than that fails at the front end whatever git-fcgi does, and a shorter wait here
 * would refuse requests the front end still waits for (test/unit/config/queue-timeout.test.ts).
 */
export const DEFAULT_QUEUE_TIMEOUT_MS = 15 * 60_000;
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
    restart: true,
    example: { value: 'unix:/run/git-fcgi/git-fcgi.sock', note: 'leave unset with git-fcgi.socket' },
    doc: 'The FastCGI socket nginx connects to: unix:/path or /path (a UNIX socket, created with socket_mode and socket_owner; a stale one is replaced), HOST:PORT or tcp:HOST:PORT (TCP, for the addresses in allowed_clients). Unset: the socket passed on fd 0 (spawn-fcgi, systemd StandardInput=socket) or by systemd socket activation (LISTEN_FDS); without either, git-fcgi exits with an error unless http is set.',
  }),
  socketMode: def<number>({
    section: 'server',
    key: 'socket_mode',
    flag: '--socket-mode <mode>',
    default: 0o660,
    parse: parseMode,
    format: (mode) => `0${mode.toString(8)}`,
    restart: true,
    doc: 'Permissions of the UNIX socket, in octal. 0660: only its owner and its group may connect, so nginx must be in the group (socket_owner).',
  }),
  socketOwner: def<Owner | null>({
    section: 'server',
    key: 'socket_owner',
    flag: '--socket-owner <user[:group]>',
    default: null,
    parse: nullable(parseOwner),
    format: (owner) => (owner === null ? '' : formatOwner(owner)),
    restart: true,
    example: { value: 'git:nginx', note: 'Debian: git:www-data' },
    doc: "Owner of the UNIX socket as user, user:group or :group, names or numeric ids, set while git-fcgi is still root (before user takes effect). Unset: the daemon's own user and group.",
  }),
  allowedClients: def<readonly string[] | 'any'>({
    section: 'server',
    key: 'allowed_clients',
    default: ['127.0.0.1'],
    parse: parseClients,
    doc: 'For a TCP listener: the IP addresses nginx may connect from, comma-separated (IPv4 or IPv6, no ranges), or any. A connection from another address is closed at once and logged. Not used for UNIX sockets (socket_mode guards them).',
  }),
  user: def<string | null>({
    section: 'server',
    key: 'user',
    flag: '--user <user>',
    default: null,
    parse: nullable(parseAccount),
    restart: true,
    example: { value: 'git', note: 'not needed under the systemd unit, which starts as git' },
    doc: 'After binding its sockets, run as this user (name or numeric id, with its supplementary groups); git and its hooks run as it too. Needs git-fcgi to be started as root. Unset: stay the user that started git-fcgi.',
  }),
  group: def<string | null>({
    section: 'server',
    key: 'group',
    flag: '--group <group>',
    default: null,
    parse: nullable(parseAccount),
    restart: true,
    doc: "With user: the primary group to run as (name or numeric id). Unset: the user's own primary group.",
  }),
  allowRoot: def<boolean>({
    section: 'server',
    key: 'allow_root',
    flag: '--allow-root',
    default: false,
    parse: parseBool,
    restart: true,
    doc: 'Allow serving as root, so that git and its hooks run as root. Without it, git-fcgi started with a config file refuses to run as root unless user is set; started from command-line flags alone it runs and logs a warning.',
  }),
  pidFile: def<string | null>({
    section: 'server',
    key: 'pid_file',
    flag: '--pid-file <file>',
    default: null,
    parse: nullable(parseAbsolutePath),
    restart: true,
    doc: "Write the daemon's pid to this file (absolute path) after binding, before dropping privileges; it is removed at exit. Not needed under systemd. Unset: no pid file.",
  }),
  http: def<{ host: string; port: number } | null>({
    section: 'server',
    key: 'http',
    flag: '--http <host:port>',
    default: null,
    parse: nullable(parseHostPort),
    format: (http) => (http === null ? '' : formatListen({ kind: 'tcp', ...http })),
    restart: true,
    doc: 'Also serve plain HTTP on HOST:PORT (port 0: any free port, logged), for trying git-fcgi out and for small setups without nginx. No TLS: bind it to a loopback address or put a proxy in front. Unset: no HTTP listener.',
  }),
  maxParamsBytes: def<number>({
    section: 'server',
    key: 'max_params_size',
    default: 256 * 1024,
    parse: parseSize,
    format: formatSize,
    doc: "Largest FastCGI params block (all request headers and CGI variables together) accepted from nginx; a larger one is refused with 431. Request headers become the backend's environment, which execve limits on its own: a request with one header over 128K, or all of them over a quarter of the stack limit (2M with the usual 8M), gets 431 whatever this says.",
  }),
  maxChildren: def<number>({
    section: 'server',
    key: 'max_children',
    flag: '--max-children <n>',
    default: DEFAULT_MAX_CHILDREN,
    parse: (raw) => (raw.trim() === '' ? DEFAULT_MAX_CHILDREN : parseInteger(raw, 1, 100_000)),
    defaultText: '',
    doc: 'Most backends (git http-backend processes, one per request) running at once, 1 to 100000; further requests wait in the queue. Unset: the CPUs git gets plus 2, at least 4 (--check-config shows the value): pack-objects is CPU-bound and already uses every CPU, so more at once only make each clone wait longer; the 2 are for requests waiting on the network. CPUs count the affinity mask and a cgroup CPU quota (docker --cpus, systemd CPUQuota=).',
  }),
  queue: def<number | null>({
    section: 'server',
    key: 'queue',
    flag: '--queue <n>',
    default: null,
    parse: nullable((raw) => parseInteger(raw, 0, 1_000_000)),
    show: (queue) => (queue === null ? `(${QUEUE_PER_CHILD} x max_children)` : String(queue)),
    doc: `Requests that may wait for a free backend, first come, first served; one more gets 503 with Retry-After. 0: no waiting. Unset: ${QUEUE_PER_CHILD} x max_children, so that a burst (a CI fleet cloning at once) waits instead of failing: git does not retry a 503.`,
  }),
  queueTimeoutMs: def<number>({
    section: 'server',
    key: 'queue_timeout',
    default: DEFAULT_QUEUE_TIMEOUT_MS,
    parse: parseDuration,
    format: formatDuration,
    doc: 'A request that has waited this long in the queue gets 503 with Retry-After (git does not retry it). Keep it longer than the front end waits for a response (nginx fastcgi_read_timeout, Apache ProxyPass timeout=, HAProxy timeout server; 600s in the shipped configs): the front end then gives up first, and its closing the connection takes the request out of the queue, so no request is refused while someone still waits for it.',
  }),
  idleTimeoutMs: def<number>({
    section: 'server',
    key: 'idle_timeout',
    flag: '--idle-timeout <duration>',
    default: 10 * 60_000,
    parse: parseDuration,
    format: formatDuration,
    doc: "Kill a backend's process group when no byte has moved in either direction (request body in, response out) for this long; the client gets 504 if nothing was sent yet, else a cut-off response.",
  }),
  killGraceMs: def<number>({
    section: 'server',
    key: 'kill_grace',
    default: 2000,
    parse: parseDuration,
    format: formatDuration,
    doc: "How long a backend's process group has between SIGTERM and SIGKILL, whenever git-fcgi ends a backend (idle_timeout, a client gone, shutdown).",
  }),
  shutdownTimeoutMs: def<number>({
    section: 'server',
    key: 'shutdown_timeout',
    default: 30_000,
    parse: parseDuration,
    format: formatDuration,
    doc: 'On SIGTERM or SIGINT: how long running requests may take to finish before their backends are killed and git-fcgi exits. New connections are refused meanwhile.',
  }),
  spawnHelper: def<'auto' | 'on' | 'off'>({
    section: 'server',
    key: 'spawn_helper',
    flag: '--spawn-helper <mode>',
    default: 'auto',
    parse: (raw) => parseEnum(raw, ['auto', 'on', 'off'] as const),
    restart: true,
    doc: "How backends are started. auto: through git-fcgi-spawnd, the small helper the build makes (needs a C compiler), falling back to Node's own spawn with a warning when it is missing; on: through the helper only (git-fcgi does not start without it); off: Node's spawn, which forks the whole daemon for every request (1-2 ms of CPU each, on the event loop).",
  }),
  splice: def<'auto' | 'off'>({
    section: 'server',
    key: 'splice',
    flag: '--splice <mode>',
    default: 'auto',
    parse: (raw) => parseEnum(raw, ['auto', 'off'] as const),
    restart: true,
    doc: "Large responses (past their first MiB: clones, big fetches) leave the event loop: git-fcgi-splice, a small helper the build makes, moves git's output into the FastCGI connection with splice(2), and git-fcgi ends the request when it is done. auto: when the helper is built and backends start through git-fcgi-spawnd, over FastCGI (not --http); off: every byte goes through Node.",
  }),
  pingPath: def<string | null>({
    section: 'server',
    key: 'ping_path',
    default: null,
    parse: nullable(parseUrlPath),
    example: { value: '/git-fcgi-ping' },
    doc: "A request for exactly this URL path is answered 'pong' by git-fcgi itself, without running git, for health checks. Unset: off.",
  }),
  statusPath: def<string | null>({
    section: 'server',
    key: 'status_path',
    default: null,
    parse: nullable(parseUrlPath),
    example: { value: '/git-fcgi-status' },
    doc: 'A request for exactly this URL path gets live figures (backends running, queue, requests, bytes, the ref, fetch and pack caches): plain text, ?json, or ?openmetrics (Prometheus). Unset: off. Anyone who reaches it sees them: restrict it in nginx.',
  }),
  projectRoot: def<string | null>({
    section: 'git',
    key: 'project_root',
    flag: '--project-root <dir>',
    default: null,
    parse: nullable(parseAbsolutePath),
    example: { value: '/srv/git' },
    doc: 'Directory holding the repositories (GIT_PROJECT_ROOT); a request for /team/app.git serves PROJECT_ROOT/team/app.git. A GIT_PROJECT_ROOT param from nginx takes precedence. Unset: nginx must pass GIT_PROJECT_ROOT, else requests fail with 500 and a logged error.',
  }),
  backend: def<string | null>({
    section: 'git',
    key: 'backend',
    flag: '--backend <path>',
    default: null,
    parse: nullable(parseAbsolutePath),
    doc: 'The CGI program to run for every request (absolute path). Unset: git-http-backend in `git --exec-path` (/usr/lib/git-core on Debian, /usr/libexec/git-core on RHEL). SCRIPT_FILENAME from nginx is never run.',
  }),
  exportAll: def<boolean>({
    section: 'git',
    key: 'export_all',
    flag: '--export-all',
    default: false,
    parse: parseBool,
    doc: 'Serve every repository under project_root (GIT_HTTP_EXPORT_ALL). false: only repositories that contain a git-daemon-export-ok file; the others get 404.',
  }),
  maxRequestBufferBytes: def<number | null>({
    section: 'git',
    key: 'max_request_buffer',
    default: null,
    parse: nullable(parseSize),
    format: (bytes) => (bytes === null ? '' : formatSize(bytes)),
    doc: "Largest fetch negotiation git http-backend buffers in memory (GIT_HTTP_MAX_REQUEST_BUFFER); a fetch that needs more fails. Unset: git's default, 10M.",
  }),
  receiveMaxInputSizeBytes: def<number | null>({
    section: 'git',
    key: 'receive_max_input_size',
    default: null,
    parse: nullable(parseSize),
    format: (bytes) => (bytes === null ? '' : formatSize(bytes)),
    doc: "Largest push git accepts (git's receive.maxInputSize, passed through GIT_CONFIG_COUNT/KEY/VALUE); a larger pack is refused by git. Unset: no limit.",
  }),
  refCacheBytes: def<number>({
    section: 'git',
    key: 'ref_cache',
    flag: '--ref-cache <size>',
    default: 8 * 1024 * 1024,
    parse: parseSize,
    format: formatSize,
    show: (bytes) => (bytes === 0 ? '0 (off)' : formatSize(bytes)),
    doc: 'Memory for ref advertisements (the first request of every fetch and clone) kept while nothing they depend on changes (the repository directory and its owner, HEAD, the refs in files or reftable storage, the system, global and repository config, packs, the git binary), checked with stat() on every request. A repeated advertisement is then served without running git. Only on local filesystems (not NFS/CIFS/FUSE), only for repositories with at most 256 loose refs and directories under refs/, only for git releases CI tests (2.39, 2.43, 2.47, 2.55). 0: off. A reload (SIGHUP) empties it.',
  }),
  fetchCacheBytes: def<number>({
    section: 'git',
    key: 'fetch_cache',
    flag: '--fetch-cache <size>',
    default: 8 * 1024 * 1024,
    parse: parseSize,
    format: formatSize,
    show: (bytes) => (bytes === 0 ? '0 (off)' : formatSize(bytes)),
    doc: "Memory for git's answers to fetches (upload-pack POSTs with a body of at most 64 KiB), kept per request body while nothing they depend on changes (what ref_cache checks, plus the loose objects' directories and objects/info), checked with stat() on every request. An identical fetch, from a fleet of CI runners fetching the same new commits, is then answered without running git; identical fetches arriving while git answers the first wait for its answer instead of running git too. An answer may take a quarter of it at most; bigger ones (clones) are left to pack_cache. Same conditions as ref_cache, and not for repositories with alternates. 0: off. A reload (SIGHUP) empties it.",
  }),
  packCacheBytes: def<number>({
    section: 'git',
    key: 'pack_cache',
    flag: '--pack-cache <size>',
    default: 1024 * 1024 * 1024,
    parse: parseSize,
    format: formatSize,
    show: (bytes) => (bytes === 0 ? '0 (off)' : formatSize(bytes)),
    restart: true,
    doc: 'Disk for packs git upload-pack sends (clones and fetches), kept under pack_cache_dir and shared by identical requests: the first one runs git pack-objects, identical ones arriving meanwhile read the same output as it is written, later ones read the file, as long as nothing in the repository changed (refs, packs, config, shallow). Works through uploadpack.packObjectsHook and the small git-fcgi-pack-hook program the build makes (needs a C compiler; without it the cache is off). Least recently used packs are removed to stay within the size; a pack that does not fit, or a full disk, is streamed without being kept. On by default, measured: 32 concurrent identical depth-1 fetches (a 12 MB pack) took 6.7 s of git CPU with it and 98 s without, and a repeat took 2.7 s; the size bounds the disk it can take (at most half of what is free at start). 0: off (the hook is not set at all).',
  }),
  packCacheMaxAgeMs: def<number>({
    section: 'git',
    key: 'pack_cache_max_age',
    default: 5 * 60_000,
    parse: parseDuration,
    format: formatDuration,
    restart: true,
    doc: 'How long a cached pack is served after it was made (as in Gitaly): a burst of identical fetches shares one pack, and the disk does not fill with old ones.',
  }),
  packCacheDir: def<string | null>({
    section: 'git',
    key: 'pack_cache_dir',
    default: null,
    parse: nullable(parseAbsolutePath),
    show: (dir) => dir ?? '($CACHE_DIRECTORY, else a private directory under the temporary directory)',
    restart: true,
    example: { value: '/var/cache/git-fcgi' },
    doc: "Directory for the pack cache's files; it must belong to the serving user and be closed to everyone else (mode 0700), else git-fcgi does not start. Files in it named pack-* are deleted at start. Unset: $CACHE_DIRECTORY when systemd sets it (the units say CacheDirectory=git-fcgi), else a private directory under the temporary directory, removed at exit.",
  }),
  home: def<string | null>({
    section: 'git',
    key: 'home',
    default: null,
    parse: nullable((raw) => (raw.trim() === 'none' ? 'none' : parseAbsolutePath(raw))),
    show: (home) => home ?? "(the serving user's home directory)",
    example: { value: '/var/lib/git-fcgi' },
    doc: "HOME for git and its hooks, as sshd sets it, so that the serving user's ~/.gitconfig (safe.directory, uploadpack.*, ...) is read. Unset: that user's home directory from the password database; none: no HOME at all.",
  }),
  followSymlinks: def<boolean>({
    section: 'git',
    key: 'follow_symlinks',
    default: false,
    parse: parseBool,
    doc: 'Serve repositories reached through a symbolic link, a gitfile (a `.git` file with `gitdir: PATH`) or a `commondir` file, as git would. false: such a request gets 404. Whatever is followed, git-fcgi never serves a repository that resolves outside project_root.',
  }),
  logLevel: def<LogLevel>({
    section: 'log',
    key: 'level',
    flag: '--log-level <level>',
    default: 'info',
    parse: (raw) => parseEnum(raw, ['error', 'warn', 'info', 'debug'] as const),
    doc: 'The least severe messages logged: error, warn, info or debug (the most detail).',
  }),
  logFormat: def<LogFormat>({
    section: 'log',
    key: 'format',
    flag: '--log-format <format>',
    default: 'text',
    parse: (raw) => parseEnum(raw, ['text', 'json'] as const),
    doc: 'text (a message and key=value pairs, one line each, for journald) or json (one object a line, for log shippers).',
  }),
  logFile: def<string | null>({
    section: 'log',
    key: 'file',
    default: null,
    parse: nullable(parseAbsolutePath),
    example: { value: '/var/log/git-fcgi/git-fcgi.log', note: 'the unit makes /var/log/git-fcgi writable' },
    doc: 'Log to this file (absolute path, appended to, reopened on SIGHUP for logrotate) instead of stderr. Unset: stderr, which goes to the journal under systemd.',
  }),
  accessLog: def<boolean>({
    section: 'log',
    key: 'access_log',
    default: true,
    parse: parseBool,
    doc: 'Log one line per request: id, client address, user, method, repository, service, status, bytes, duration, exit code of git. false: no access log.',
  }),
  accessFile: def<string | null>({
    section: 'log',
    key: 'access_file',
    default: null,
    parse: nullable(parseAbsolutePath),
    example: { value: '/var/log/git-fcgi/access.log' },
    doc: 'Write the access log to this file (absolute path, reopened on SIGHUP) instead of the main log. Unset: the main log.',
  }),
};

/** A value as the ini file writes it, for settings without a `format` of their own. */
export function formatValue(value: unknown): string {
  if (value === null) return '';
  if (Array.isArray(value)) return value.join(', ');
  if (typeof value === 'object') return formatListen(value as ListenAddress);
  return String(value);
}

/** The setting's default as its line in the ini file writes it. */
export function defaultText<T>(setting: SettingDef<T>): string {
  if (setting.defaultText !== undefined) return setting.defaultText;
  return setting.format ? setting.format(setting.default) : formatValue(setting.default);
}

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
