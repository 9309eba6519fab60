import type { Exchange } from '../exchange.js';
import { GitFcgiError, describeError, isGitFcgiError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BackendOutput, BackendOutputFactory, BodyTap } from './backend-output.js';
import type { BackendExit, BackendProcess } from './backend-process.js';
import { BodyToStdin } from './body-to-stdin.js';
import type { CgiHead } from './cgi-headers.js';
import { sendError } from './error-response.js';
import {
  CLIENT_CLOSED,
  abortOutcome,
  errorOf,
  type FailedOutcome,
  type RelayOutcome,
} from './relay-outcome.js';
import { StderrLines } from './stderr-lines.js';
import { StdoutToResponse, type SpliceRoute } from './stdout-to-response.js';

export interface RelayOptions {
  readonly idleTimeoutMs: number;
  readonly killGraceMs: number;
  /** CONTENT_LENGTH when the front end gave one; the body must deliver exactly that much. */
  readonly contentLength: number | null;
  readonly log: Logger;
  /**
   * Output the backend does not write itself (a direct `git upload-pack`): this head, and these
   * bytes before its first one. A backend that then exits non-zero before any output ends the
   * relay with `retry` instead of an answer.
   */
  readonly prelude?: { readonly head: CgiHead; readonly body: Buffer };
  /** A line to log after one of the backend's stderr lines, saying what to do about it. */
  readonly hint?: (stderrLine: string) => string | null;
  /** Sees every body byte sent, in order, until it returns false. */
  readonly tap?: BodyTap;
  /** Splices the rest of a large response (see SpliceRoute); unset: all through Node. */
  readonly splice?: SpliceRoute;
  /** Moves the backend's output; by default through Node (StdoutToResponse, with prelude and tap). */
  readonly output?: BackendOutputFactory;
}

export interface RelayResult {
  readonly status: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Exit code, or the signal name that ended the backend; null when none ran. */
  readonly exit: number | string | null;
  readonly error?: string;
  /** The backend (with a prelude) failed before any output; nothing was sent: run another. */
  readonly retry?: true;
  /** Answered from a cache (ref advertisements, fetches): no backend ran, or one for another request did. */
  readonly cached?: 'hit' | 'coalesced';
  /** The CGI head the response went out with (its `rest` is not to be kept). */
  readonly head?: CgiHead;
  /** Body bytes git-fcgi-splice moved (0 or absent: all went through Node). */
  readonly splicedBytes?: number;
}

/**
 * Moves bytes both ways at once between one request and its backend: request body -> stdin
 * (BodyToStdin) while stdout -> response (a BackendOutput), each direction pausing its source
 * when its destination is full. Every way out goes through `end`, which runs once.
 */
export class BackendRelay {
  private readonly input: BodyToStdin;
  private readonly output: BackendOutput;
  private readonly stderr: StderrLines;
  private outputEnded = false;
  private exit: BackendExit | null = null;
  private ended = false;
  private lastActivity = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private resolve: (result: RelayResult) => void = () => {};

  constructor(
    private readonly exchange: Exchange,
    private readonly backend: BackendProcess,
    private readonly options: RelayOptions,
  ) {
    this.input = new BodyToStdin(exchange.body, backend.stdin, options.contentLength, {
      activity: this.onActivity,
      truncated: (received, expected) => this.end({ kind: 'truncated-body', received, expected }),
      broken: this.onAbort,
    });
    this.output =
      options.output?.(exchange.response, backend) ??
      new StdoutToResponse(exchange.response, backend, {
        prelude: options.prelude,
        tap: options.tap,
        splice: options.splice,
      });
    this.stderr = new StderrLines((line) => {
      options.log.warn(`backend: ${line}`);
      const hint = options.hint?.(line);
      if (hint) options.log.warn(hint);
    });
  }

  run(): Promise<RelayResult> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.wire();
    });
  }

  /**
   * The one way out, whatever ended the relay; later calls do nothing. Stops the timer and every
   * listener, kills the process group unless the backend finished, ends the response (or cuts
   * it off: an error answer only while no header has gone out), and settles `run`'s promise
   * once the backend is reaped.
   */
  end(outcome: RelayOutcome): void {
    if (this.ended) return;
    // Ending the response can abort the exchange's signal synchronously: that must not re-enter.
    this.ended = true;
    clearTimeout(this.idleTimer);
    this.exchange.signal.removeEventListener('abort', this.onAbort);
    this.stderr.flush();
    switch (outcome.kind) {
      case 'retry': {
        // Nothing was sent and the request body is left unread, for the backend that runs next.
        this.input.stop('keep');
        this.output.stop();
        const { exit } = outcome;
        this.resolve({ status: 0, bytesIn: 0, bytesOut: 0, exit: exit.signal ?? exit.code, retry: true });
        return;
      }
      case 'done':
        this.input.stop('discard');
        this.output.finish();
        this.exchange.response.end(); // END_REQUEST after the last byte
        this.resolveOnceReaped(outcome.status);
        return;
      default:
        this.tearDown(outcome);
    }
  }

  /** For end() alone: kill the process group, answer or cut off, report. */
  private tearDown(outcome: FailedOutcome): void {
    const error = errorOf(outcome);
    const clientGone = outcome.kind === 'client-gone';
    this.backend.kill(this.options.killGraceMs);
    this.input.destroy();
    this.output.destroy();
    const { response } = this.exchange;
    if (clientGone) response.end();
    else if (!response.headersSent) sendError(response, error.status);
    else response.abort(error);
    if (!clientGone) this.options.log.warn('request failed', { reason: describeError(error) });
    this.resolveOnceReaped(clientGone ? CLIENT_CLOSED : error.status, error);
  }

  private resolveOnceReaped(status: number, error?: GitFcgiError): void {
    void Promise.all([this.backend.exited, this.output.settled()]).then(([exit]) => {
      const { head } = this.output;
      this.resolve({
        status,
        bytesIn: this.input.bytesIn,
        bytesOut: this.output.bytesOut,
        ...(this.output.splicedBytes > 0 ? { splicedBytes: this.output.splicedBytes } : {}),
        exit: exit.signal ?? exit.code,
        ...(head === null ? {} : { head }),
        ...(error === undefined ? {} : { error: describeError(error) }),
      });
    });
  }

  private wire(): void {
    const { backend, exchange } = this;
    this.input.start();
    this.output.start({
      activity: this.onActivity,
      ended: this.onOutputEnded,
      failed: (err) =>
        this.end(
          isGitFcgiError(err) && err.code === 'ERR_CLIENT_ABORT'
            ? { kind: 'client-gone', error: err }
            : { kind: 'backend-failed', error: backendFailure(err) },
        ),
    });
    backend.stderr.on('data', (chunk: Buffer) => this.stderr.push(chunk));
    backend.stderr.once('end', () => this.stderr.flush());
    backend.stderr.on('error', () => {}); // lost diagnostics are no reason to fail the request
    void backend.exited.then(this.onExit);
    exchange.signal.addEventListener('abort', this.onAbort, { once: true });
    if (exchange.signal.aborted) this.onAbort();
    this.armIdleTimer(this.options.idleTimeoutMs);
  }

  private readonly onActivity = (): void => {
    this.lastActivity = Date.now();
  };

  private readonly onOutputEnded = (): void => {
    this.outputEnded = true;
    this.settle();
  };

  private readonly onExit = (exit: BackendExit): void => {
    this.exit = exit;
    this.settle();
  };

  private readonly onAbort = (): void => {
    this.end(abortOutcome(this.exchange.signal.reason));
  };

  /** Both the output and the process are finished: the outcome depends on how. */
  private settle(): void {
    const { exit, output } = this;
    if (this.ended || !this.outputEnded || exit === null) return;
    const how = exit.signal ?? `exit ${exit.code}`;
    const { head } = output;
    if (output.retryable && exit.code !== 0) {
      this.end({ kind: 'retry', exit });
    } else if (head === null) {
      this.end({
        kind: 'backend-failed',
        error: new GitFcgiError('ERR_CGI_HEADER', `backend ended (${how}) before its headers`, {
          status: 502,
        }),
      });
    } else if (exit.code !== 0 && (this.exchange.response.headersSent || head.status < 400)) {
      this.end({
        kind: 'backend-failed',
        error: new GitFcgiError('ERR_BACKEND_EXIT', `backend failed (${how})`, { status: 502 }),
      });
    } else {
      this.end({ kind: 'done', status: head.status });
    }
  }

  private armIdleTimer(delayMs: number): void {
    this.idleTimer = setTimeout(() => {
      if (this.ended) return;
      const idleMs = Date.now() - this.lastActivity;
      const { idleTimeoutMs } = this.options;
      if (idleMs < idleTimeoutMs) this.armIdleTimer(idleTimeoutMs - idleMs);
      else this.end({ kind: 'idle', idleTimeoutMs });
    }, delayMs);
  }
}

function backendFailure(err: unknown): GitFcgiError {
  return isGitFcgiError(err)
    ? err
    : new GitFcgiError('ERR_BACKEND_EXIT', describeError(err), { status: 502, cause: err });
}
