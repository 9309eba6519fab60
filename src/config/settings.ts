import {
  parseAbsolutePath,
  parseBool,
  parseDuration,
  parseEnum,
  parseHostPort,
  parseListen,
  parseMode,
  parseSize,
  type ListenAddress,
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
  followSymlinks: def<boolean>({
    section: 'git',
    key: 'follow_symlinks',
    default: false,
    parse: parseBool,
    doc: 'Serve repositories reached through symbolic links (never ones that resolve outside project_root).',
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
export type Config = { readonly [K in SettingName]: ValueOf<(typeof SETTINGS)[K]> } & AccessSettings;
