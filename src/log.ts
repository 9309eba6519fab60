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

function transport(file: string | null): winston.transport {
  if (file !== null) return new winston.transports.File({ filename: file });
  return new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] });
}

function wrap(w: winston.Logger, accessW: winston.Logger | null, level: LogLevel): Logger {
  return {
    error: (m, meta) => w.error(m, meta),
    warn: (m, meta) => w.warn(m, meta),
    info: (m, meta) => w.info(m, meta),
    debug: (m, meta) => w.debug(m, meta),
    child: (meta) => wrap(w.child(meta), accessW === null ? null : accessW.child(meta), level),
    access: (meta) => accessW?.info('access', meta),
    isDebug: () => level === 'debug',
  };
}

export interface ClosableLogger extends Logger {
  /** Flushes and closes file transports (at exit, and before reopening for logrotate). */
  close(): Promise<void>;
}

export function createLogger(options: LogOptions): ClosableLogger {
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
  const closeOne = (w: winston.Logger): Promise<void> =>
    new Promise((resolve) => {
      w.once('finish', () => resolve());
      w.end();
    });
  return {
    ...wrap(main, access, options.level),
    async close() {
      await Promise.all([closeOne(main), ...(access !== null && access !== main ? [closeOne(access)] : [])]);
    },
  };
}
