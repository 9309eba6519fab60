/**
 * Every error git-fcgi raises on purpose carries a stable `code` (for logs, tests and
 * operators' grep) and the HTTP status it maps to when it ends a request before headers.
 */
export type ErrorCode =
  // FastCGI wire protocol (the peer sent something we cannot parse): connection is closed.
  | 'ERR_FCGI_VERSION'
  | 'ERR_FCGI_RECORD'
  | 'ERR_FCGI_PARAMS'
  | 'ERR_FCGI_PARAMS_TOO_LARGE'
  // Request validation.
  | 'ERR_BAD_PATH'
  | 'ERR_NOT_FOUND'
  // What git itself would die of (a broken gitfile or commondir): git's answer is 500.
  | 'ERR_GIT_REFUSES'
  | 'ERR_METHOD'
  | 'ERR_BAD_REQUEST'
  // Access control (src/access): no or bad credentials, not allowed, too many failed logins.
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_FORBIDDEN'
  | 'ERR_RATE_LIMITED'
  // Backend (git http-backend) failures.
  | 'ERR_BACKEND_SPAWN'
  | 'ERR_ENV_TOO_LARGE'
  | 'ERR_BACKEND_EXIT'
  | 'ERR_CGI_HEADER'
  | 'ERR_CGI_HEADER_TOO_LARGE'
  // git-fcgi-splice could not finish moving a response (a read or write failed, it is gone).
  | 'ERR_SPLICE'
  // Request body accounting and lifecycle.
  | 'ERR_BODY_TRUNCATED'
  | 'ERR_CLIENT_ABORT'
  | 'ERR_IDLE_TIMEOUT'
  | 'ERR_SHUTDOWN'
  // Limits: every backend slot busy and the queue full, or waited too long in the queue.
  | 'ERR_OVERLOADED'
  | 'ERR_QUEUE_TIMEOUT'
  // The pack cache's hook (git-fcgi-pack-hook) sent a malformed message: it runs git itself.
  | 'ERR_PACK_HOOK_PROTOCOL'
  // An unexpected local failure (EMFILE, EIO...) that must not look like the client's fault.
  | 'ERR_INTERNAL'
  // Startup / configuration.
  | 'ERR_CONFIG'
  | 'ERR_LISTEN'
  | 'ERR_PRIVILEGES';

export class GitFcgiError extends Error {
  readonly code: ErrorCode;
  /** HTTP status for this error when nothing has been sent to the client yet. */
  readonly status: number;
  /** Extra response headers for the error page, e.g. Retry-After on 503. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      status?: number;
      cause?: unknown;
      headers?: ReadonlyArray<readonly [name: string, value: string]>;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GitFcgiError';
    this.code = code;
    this.status = options.status ?? 500;
    this.headers = options.headers ?? [];
  }
}

export function isGitFcgiError(err: unknown): err is GitFcgiError {
  return err instanceof GitFcgiError;
}

/** A short, single-line description of any thrown value, for log lines. */
export function describeError(err: unknown): string {
  if (err instanceof GitFcgiError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
