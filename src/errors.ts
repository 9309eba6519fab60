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
  | 'ERR_METHOD'
  | 'ERR_BAD_REQUEST'
  | 'ERR_CONTENT_TYPE'
  // Backend (git http-backend) failures.
  | 'ERR_BACKEND_SPAWN'
  | 'ERR_BACKEND_EXIT'
  | 'ERR_CGI_HEADER'
  | 'ERR_CGI_HEADER_TOO_LARGE'
  // Request body accounting and lifecycle.
  | 'ERR_BODY_TRUNCATED'
  | 'ERR_CLIENT_ABORT'
  | 'ERR_IDLE_TIMEOUT'
  | 'ERR_SHUTDOWN'
  // An unexpected local failure (EMFILE, EIO...) that must not look like the client's fault.
  | 'ERR_INTERNAL'
  // Startup / configuration.
  | 'ERR_CONFIG'
  | 'ERR_LISTEN';

export class GitFcgiError extends Error {
  readonly code: ErrorCode;
  /** HTTP status for this error when nothing has been sent to the client yet. */
  readonly status: number;

  constructor(code: ErrorCode, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GitFcgiError';
    this.code = code;
    this.status = options.status ?? 500;
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
