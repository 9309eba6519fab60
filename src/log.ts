import { createWriteStream, type WriteStream } from 'node:fs';

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

const SEVERITY: Readonly<Record<LogLevel, number>> = { error: 0, warn: 1, info: 2, debug: 3 };
const SAFE_VALUE = /^[\w.,:/@%+=~-]*$/;
const RESERVED = new Set(['level', 'message', 'timestamp']);

/** `key=value` pairs, quoting only what needs it, so lines stay greppable in journalctl. */
function formatMeta(meta: Readonly<Record<string, unknown>>): string {
  let out = '';
  for (const key in meta) {
    const value = meta[key];
    if (value === undefined || RESERVED.has(key)) continue;
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    out += ` ${key}=${text !== '' && SAFE_VALUE.test(text) ? text : JSON.stringify(text)}`;
  }
  return out;
}

/** JSON with object keys sorted (stable lines, as the log format has always been), bigints as strings. */
function sortedReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) sorted[k] = (value as Record<string, unknown>)[k];
  return sorted;
}

/**
 * One log line, newline included. `meta` holds the child loggers' fields first, then the
 * call's; `level`, `message` and `timestamp` are the line's own and cannot be overridden.
 */
export function formatLine(
  format: LogFormat,
  level: LogLevel,
  message: string,
  meta: Readonly<Record<string, unknown>>,
  time: Date,
): string {
  const timestamp = time.toISOString();
  if (format === 'text') return `${timestamp} ${level} ${message}${formatMeta(meta)}\n`;
  return `${JSON.stringify({ ...meta, level, message, timestamp }, sortedReplacer)}\n`;
}

/** Where lines go: stderr, or a file opened for appending. */
interface Sink {
  write(line: string): void;
  close(): Promise<void>;
}

function openSink(file: string | null): Sink {
  if (file === null) {
    // Synchronous for files and pipes on Linux: nothing is lost when the process exits.
    return { write: (line) => void process.stderr.write(line), close: () => Promise.resolve() };
  }
  let stream: WriteStream | null = createWriteStream(file, { flags: 'a' });
  stream.on('error', (err) =>
    process.stderr.write(`git-fcgi: cannot write log file ${file}: ${err.message}\n`),
  );
  return {
    write: (line) => void stream?.write(line),
    close: () =>
      new Promise((resolve) => {
        if (stream === null) return resolve();
        stream.end(() => resolve());
        stream = null;
      }),
  };
}

/**
 * A small logger instead of a logging framework: the daemon logs a few lines per request, and a
 * framework's per-line pipeline (format objects, streams, child logger classes) cost more CPU
 * per request than the rest of the request's JavaScript, and some 7 MB of resident memory.
 */
function makeLogger(
  main: Sink,
  access: Sink | null,
  options: LogOptions,
  context: Readonly<Record<string, unknown>>,
): Logger {
  const max = SEVERITY[options.level];
  const emit = (sink: Sink, level: LogLevel, message: string, meta: LogMeta | undefined): void => {
    const fields = meta === undefined ? context : { ...context, ...meta };
    sink.write(formatLine(options.format, level, message, fields, new Date()));
  };
  const at =
    (level: LogLevel) =>
    (message: string, meta?: LogMeta): void => {
      if (SEVERITY[level] <= max) emit(main, level, message, meta);
    };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (meta) => makeLogger(main, access, options, { ...context, ...meta }),
    access: (meta) => {
      // Access lines are info lines: a level above info silences them, as it always has.
      if (access !== null && (access !== main || SEVERITY.info <= max)) emit(access, 'info', 'access', meta);
    },
    isDebug: () => options.level === 'debug',
  };
}

export interface ClosableLogger extends Logger {
  /** Flushes and closes file destinations (at exit, and before reopening for logrotate). */
  close(): Promise<void>;
}

export function createLogger(options: LogOptions): ClosableLogger {
  const main = openSink(options.file);
  const access = !options.accessLog
    ? null
    : options.accessFile === null
      ? main
      : openSink(options.accessFile);
  return {
    ...makeLogger(main, access, options, {}),
    async close() {
      await Promise.all([main.close(), ...(access !== null && access !== main ? [access.close()] : [])]);
    },
  };
}
