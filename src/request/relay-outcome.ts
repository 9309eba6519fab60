import { formatDuration } from '../config/values.js';
import { GitFcgiError, isGitFcgiError } from '../errors.js';
import type { BackendExit } from './backend-process.js';

/** How a relay ended: the one argument of BackendRelay's single exit, `end`. */
export type RelayOutcome =
  /** The output has ended and the backend exited: the response is complete. */
  | { readonly kind: 'done'; readonly status: number }
  /** A backend with a prelude failed before any output; nothing was sent: run another. */
  | { readonly kind: 'retry'; readonly exit: BackendExit }
  /** Bad CGI head, failing exit, unreadable output. */
  | { readonly kind: 'backend-failed'; readonly error: GitFcgiError }
  /** The client left (connection closed, FCGI_ABORT_REQUEST). */
  | { readonly kind: 'client-gone'; readonly error: GitFcgiError }
  /** The daemon ended the request (a stop out of patience, a broken FastCGI connection). */
  | { readonly kind: 'aborted'; readonly error: GitFcgiError }
  /** No byte moved either way for idle_timeout. */
  | { readonly kind: 'idle'; readonly idleTimeoutMs: number }
  /** The request body ended short of CONTENT_LENGTH. */
  | { readonly kind: 'truncated-body'; readonly received: number; readonly expected: number };

/** The outcomes that fail the request: the backend is killed. */
export type FailedOutcome = Exclude<RelayOutcome, { readonly kind: 'done' | 'retry' }>;

/** Status logged for requests whose client went away (nginx's convention). */
export const CLIENT_CLOSED = 499;

/** An exchange's abort reason as an outcome: client-gone unless the daemon gave a reason of its own. */
export function abortOutcome(reason: unknown): FailedOutcome {
  if (isGitFcgiError(reason) && reason.code !== 'ERR_CLIENT_ABORT') return { kind: 'aborted', error: reason };
  const error = isGitFcgiError(reason)
    ? reason
    : new GitFcgiError('ERR_CLIENT_ABORT', 'client went away', { cause: reason });
  return { kind: 'client-gone', error };
}

/** The error a failed request ends with. */
export function errorOf(outcome: FailedOutcome): GitFcgiError {
  switch (outcome.kind) {
    case 'backend-failed':
    case 'client-gone':
    case 'aborted':
      return outcome.error;
    case 'idle':
      return new GitFcgiError(
        'ERR_IDLE_TIMEOUT',
        `no data moved either way for ${formatDuration(outcome.idleTimeoutMs)} (idle_timeout): backend killed`,
        { status: 504 },
      );
    case 'truncated-body':
      // git http-backend would spin forever waiting for the missing bytes.
      return new GitFcgiError(
        'ERR_BODY_TRUNCATED',
        `request body ended after ${outcome.received} of ${outcome.expected} bytes`,
        { status: 400 },
      );
  }
}
