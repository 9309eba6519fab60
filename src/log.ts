import { closeSync, openSync } from 'node:fs';
import winston from 'winston';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'text' | 'json';
export type LogMeta = Readonly<Record<string, unknown>>;

export interface Logger {
  error(message: string, meta?: LogMeta): void;
  warn(message: string, meta?: LogMeta): void;
  info(message: string, meta?: LogMeta): void;
  debug(message: string, meta?: LogMeta): void;
  /** A logger whose every line carries `meta` (e.g. the request id). */
  child(meta: LogMeta): Logger;
  /** One access-log line (the `access` channel; may be switched off or sent to its own file). */
  access(meta: LogMeta): void;
  isDebug(): boolean;
}

export interface LogOptions {
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** null: stderr (journald under systemd). */
  readonly file: string | null;
  readonly accessLog: boolean;
  /** null: the same destination as the main log. */
  readonly accessFile: string | null;
}

const SAFE_VALUE = /^[\w.,:/@%+=~-]*$/;

/** `key=value` pairs, quoting only what needs it, so lines stay greppable in journalctl. */
function formatMeta(meta: Record<string, unknown>): string {
  let out = '';
  for (const [key, value] of Object.entries(meta)) {
    if (value === undefined || key === 'level' || key === 'message' || key === 'timestamp') continue;
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    out += ` ${key}=${text !== '' && SAFE_VALUE.test(text) ? text : JSON.stringify(text)}`;
  }
  return out;
}

function lineFormat(format: LogFormat): winston.Logform.Format {
  if (format === 'json') return winston.format.combine(winston.format.timestamp(), winston.format.json());
  return winston.format.combine(
    winston.format.timestamp(),
    winston.format.printf((info) => {
      const { timestamp, level, message, ...meta } = info;
      return `${String(timestamp)} ${level} ${String(message)}${formatMeta(meta)}`;
    }),
  );
}

/**
 * Log files that cannot be opened for appending. winston fails late and fatally on them, so
 * they are checked first: at startup (exit 1) and on reload (the new config is refused).
 */
export function logFileProblems(options: LogOptions): string[] {
  const files = [options.file, options.accessLog ? options.accessFile : null];
  return files.flatMap((file) => {
    if (file === null) return [];
    try {
      closeSync(openSync(file, 'a', 0o640));
      return [];
    } catch (err) {
      return [`[log] cannot write ${file}: ${(err as Error).message}`];
    }
  });
}

function transport(file: string | null): winston.transport {
  if (file !== null) {
    const t = new winston.transports.File({ filename: file });
    // A file that cannot be (re)opened, e.g. after privileges were dropped, must not kill the
    // daemon through an unhandled 'error' event: say so where systemd still collects it.
    t.on('error', (err: Error) => process.stderr.write(`git-fcgi: log file ${file}: ${err.message}\n`));
    return t;
  }
  return new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] });
}

/** A line logged after the log was closed (a request finishing as the daemon exits). */
function lateLine(level: LogLevel, message: string, meta: LogMeta): void {
  process.stderr.write(`${level} ${message}${formatMeta(meta)}\n`);
}

/** The winston loggers in use; replaced as a whole when the log settings change. */
interface Sinks {
  readonly main: winston.Logger;
  /** null: the access log is off. May be `main`. */
  readonly access: winston.Logger | null;
  readonly level: LogLevel;
  /** Set when the loggers are being ended: winston throws "write after end" from then on. */
  closed: boolean;
}

/**
 * Every Logger, children included, writes through `current()`, so a reload (new level, format
 * or files, or reopening files after logrotate) also applies to requests already running.
 */
function wrap(current: () => Sinks, meta: LogMeta): Logger {
  const write = (level: LogLevel, message: string, extra?: LogMeta): void => {
    const { main, closed } = current();
    // winston builds and formats the whole entry before its level filter drops it.
    if (!main.isLevelEnabled(level)) return;
    // After close() (exiting) winston throws "write after end": the line goes to stderr instead.
    if (closed) lateLine(level, message, { ...meta, ...extra });
    else main.log(level, message, { ...meta, ...extra });
  };
  return {
    error: (m, extra) => write('error', m, extra),
    warn: (m, extra) => write('warn', m, extra),
    info: (m, extra) => write('info', m, extra),
    debug: (m, extra) => write('debug', m, extra),
    child: (more) => wrap(current, { ...meta, ...more }),
    access: (extra) => {
      const { access, closed } = current();
      if (access === null) return;
      if (closed) lateLine('info', 'access', { ...meta, ...extra });
      else access.info('access', { ...meta, ...extra });
    },
    isDebug: () => current().level === 'debug',
  };
}

export interface ClosableLogger extends Logger {
  /** Applies new log settings; files are closed and opened again (SIGHUP after logrotate). */
  reconfigure(options: LogOptions): Promise<void>;
  /** Flushes and closes file transports (at exit). */
  close(): Promise<void>;
}

function openSinks(options: LogOptions): Sinks {
  const main = winston.createLogger({
    level: options.level,
    format: lineFormat(options.format),
    transports: [transport(options.file)],
  });
  const access = !options.accessLog
    ? null
    : options.accessFile === null
      ? main
      : winston.createLogger({
          level: 'info',
          format: lineFormat(options.format),
          transports: [transport(options.accessFile)],
        });
  return { main, access, level: options.level, closed: false };
}

function closeSinks(sinks: Sinks): Promise<void> {
  const closeOne = (w: winston.Logger): Promise<void> =>
    new Promise((resolve) => {
      w.once('finish', () => resolve());
      w.end();
    });
  sinks.closed = true;
  const { main, access } = sinks;
  return Promise.all([
    closeOne(main),
    ...(access !== null && access !== main ? [closeOne(access)] : []),
  ]).then(() => undefined);
}

export function createLogger(options: LogOptions): ClosableLogger {
  let sinks = openSinks(options);
  return {
    ...wrap(() => sinks, {}),
    async reconfigure(next) {
      const old = sinks;
      sinks = openSinks(next);
      await closeSinks(old);
    },
    async close() {
      await closeSinks(sinks);
    },
  };
}
