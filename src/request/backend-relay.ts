import { formatDuration } from '../config/values.js';
import type { Exchange } from '../exchange.js';
import { GitFcgiError, describeError, isGitFcgiError } from '../errors.js';
import { chunksDone } from '../heap-limits.js';
import type { Logger } from '../log.js';
import type { BackendExit, BackendProcess } from './backend-process.js';
import { CgiHeaderParser, type CgiHead } from './cgi-headers.js';
import { sendError } from './error-response.js';
import { StderrLines } from './stderr-lines.js';

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
  /** Sees every body byte sent, in order; `bytes` may be reused after the call returns. */
  readonly tap?: (bytes: Buffer) => void;
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
  /** Answered from the ref advertisement cache: no backend ran. */
  readonly cached?: true;
}

/** Status logged for requests whose client went away (nginx's convention). */
const CLIENT_CLOSED = 499;

/**
 * Moves bytes both ways at once between one request and its backend: request body -> stdin
 * while stdout -> response, each direction pausing its source when its destination is full.
 * Every way out (success, backend failure, client gone, idle, truncated body) goes through
 * `finish`, which runs once.
 */
export class BackendRelay {
  private readonly headerParser = new CgiHeaderParser();
  private readonly stderr: StderrLines;
  private head: CgiHead | null;
  /** The prelude's body while it is still to be sent. */
  private preludeBody: Buffer | null;
  private bytesIn = 0;
  private bytesOut = 0;
  private stdinOpen = true;
  private stdoutEnded = false;
  private exit: BackendExit | null = null;
  private done = false;
  private lastActivity = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private resolve: (result: RelayResult) => void = () => {};

  constructor(
    private readonly exchange: Exchange,
    private readonly backend: BackendProcess,
    private readonly options: RelayOptions,
  ) {
    this.stderr = new StderrLines((line) => {
      options.log.warn(`backend: ${line}`);
      const hint = options.hint?.(line);
      if (hint) options.log.warn(hint);
    });
    this.head = options.prelude?.head ?? null;
    this.preludeBody = options.prelude?.body ?? null;
  }

  run(): Promise<RelayResult> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.wire();
    });
  }

  private wire(): void {
    const { body, signal } = this.exchange;
    const { backend } = this;
    body.on('data', this.onBodyData);
    body.once('end', this.onBodyEnd);
    body.once('error', this.onAbort);
    // A backend run after another (a retry) gets a body that the first paused, or that has
    // already ended.
    if (body.readableEnded) queueMicrotask(this.onBodyEnd);
    else body.resume();
    backend.stdin.on('error', this.onStdinError);
    if (backend.readStdout !== undefined) backend.readStdout(this.onStdoutView);
    else backend.stdout.on('data', this.onStdout);
    // A stream that ended empty before anyone listened (a backend that failed at once) has
    // already emitted 'end': Node ends an empty readable without waiting for a reader.
    if (backend.stdout.readableEnded) queueMicrotask(this.onStdoutEnd);
    else backend.stdout.once('end', this.onStdoutEnd);
    backend.stdout.once('error', (err) => this.fail(err));
    backend.stderr.on('data', (chunk: Buffer) => this.stderr.push(chunk));
    backend.stderr.on('error', () => {}); // lost diagnostics are no reason to fail the request
    void this.backend.exited.then(this.onExit);
    signal.addEventListener('abort', this.onAbort, { once: true });
    if (signal.aborted) this.onAbort();
    this.armIdleTimer(this.options.idleTimeoutMs);
  }

  private readonly onBodyData = (chunk: Buffer): void => {
    this.lastActivity = Date.now();
    if (!this.stdinOpen) return; // the backend stopped reading: the rest is discarded
    const { contentLength } = this.options;
    if (contentLength !== null && this.bytesIn + chunk.length > contentLength) {
      chunk = chunk.subarray(0, contentLength - this.bytesIn);
    }
    this.bytesIn += chunk.length;
    chunksDone(chunk.length);
    if (chunk.length > 0 && !this.backend.stdin.write(chunk)) {
      this.exchange.body.pause();
      this.backend.stdin.once('drain', this.resumeBody);
    }
  };

  private readonly resumeBody = (): void => {
    if (!this.done) this.exchange.body.resume();
  };

  private readonly onBodyEnd = (): void => {
    // A backend that closed its stdin has answered without the rest: nothing is missing.
    if (!this.stdinOpen) return;
    const { contentLength } = this.options;
    if (contentLength !== null && this.bytesIn < contentLength) {
      // git http-backend would spin forever waiting for the missing bytes.
      this.fail(
        new GitFcgiError(
          'ERR_BODY_TRUNCATED',
          `request body ended after ${this.bytesIn} of ${contentLength} bytes`,
          { status: 400 },
        ),
      );
      return;
    }
    this.backend.stdin.end();
  };

  /** EPIPE: the backend closed stdin (it answered without reading everything). Not an error. */
  private readonly onStdinError = (): void => {
    this.stdinOpen = false;
    this.backend.stdin.removeListener('drain', this.resumeBody);
    this.resumeBody();
  };

  /** stdout as 'data' events: each chunk is the relay's to keep. */
  private readonly onStdout = (chunk: Buffer): void => {
    chunksDone(chunk.length);
    const body = this.bodyOf(chunk, false);
    if (body === null) return;
    const { response } = this.exchange;
    if (!response.write(body)) {
      this.backend.stdout.pause();
      response.onceDrain(this.resumeStdout);
    }
  };

  /**
   * stdout as views of the backend's read buffer (readStdout): the buffer is read into again
   * once this returns true, so true only when the response has handed every byte to the kernel;
   * otherwise reading stays paused until it has, and until the response may take more.
   */
  private readonly onStdoutView = (view: Buffer): boolean => {
    const body = this.bodyOf(view, true);
    if (body === null) return !this.done;
    const { response } = this.exchange;
    let flushed = false;
    let full = false;
    response.write(body, () => {
      flushed = true;
      if (full) response.onceDrain(this.resumeStdout);
    });
    // Not write()'s result: a 64 KiB view written while corked is over the socket's high-water
    // mark even when uncork() hands all of it to the kernel at once. Nothing left in the
    // socket's queue is what matters: the view is not referenced any more and reading goes on
    // without a stop and restart of the stdout socket (two epoll_ctl calls per read).
    if (response.pending === 0) return true;
    full = !flushed;
    if (flushed) response.onceDrain(this.resumeStdout);
    return false;
  };

  private readonly resumeStdout = (): void => {
    if (!this.done) this.backend.stdout.resume();
  };

  /**
   * What of a stdout chunk goes to the client: the CGI head is taken off first (and the
   * prelude put in front); null when nothing is to be sent. A view is copied while the head is
   * parsed, as the parser keeps partial lines.
   */
  private bodyOf(chunk: Buffer, isView: boolean): Buffer | null {
    this.lastActivity = Date.now();
    if (this.done) return null;
    if (this.head === null) {
      let parsed: CgiHead | null;
      try {
        parsed = this.headerParser.push(isView ? Buffer.from(chunk) : chunk);
      } catch (err) {
        this.fail(err);
        return null;
      }
      if (parsed === null) return null;
      this.head = parsed;
      chunk = parsed.rest;
      if (chunk.length === 0) return null;
    }
    this.sendHead();
    if (this.preludeBody !== null) {
      chunk = Buffer.concat([this.preludeBody, chunk]);
      this.preludeBody = null;
    }
    this.bytesOut += chunk.length;
    this.options.tap?.(chunk);
    return chunk;
  }

  /**
   * Headers go out with the first body byte (or at the end), not before: a backend that fails
   * between its headers and its body still gets a proper 502 instead of an empty 200.
   */
  private sendHead(): void {
    const { response } = this.exchange;
    if (this.head !== null && !response.headersSent) response.writeHead(this.head.status, this.head.headers);
  }

  private readonly onStdoutEnd = (): void => {
    this.stdoutEnded = true;
    this.settle();
  };

  private readonly onExit = (exit: BackendExit): void => {
    this.exit = exit;
    this.settle();
  };

  /** Both the output and the process are finished: decide how the response ends. */
  private settle(): void {
    const { exit, head } = this;
    if (this.done || !this.stdoutEnded || exit === null) return;
    this.stderr.flush();
    const how = exit.signal ?? `exit ${exit.code}`;
    if (this.preludeBody !== null && exit.code !== 0) {
      this.retry(exit);
    } else if (head === null) {
      this.fail(
        new GitFcgiError('ERR_CGI_HEADER', `backend ended (${how}) before its headers`, { status: 502 }),
      );
    } else if (exit.code !== 0 && (this.exchange.response.headersSent || head.status < 400)) {
      this.fail(new GitFcgiError('ERR_BACKEND_EXIT', `backend failed (${how})`, { status: 502 }));
    } else {
      this.sendHead();
      if (this.preludeBody !== null && this.preludeBody.length > 0) {
        this.bytesOut += this.preludeBody.length;
        this.options.tap?.(this.preludeBody);
        this.exchange.response.write(this.preludeBody);
      }
      this.preludeBody = null;
      this.finish(head.status);
    }
  }

  private readonly onAbort = (): void => {
    const reason: unknown = this.exchange.signal.reason;
    this.fail(
      isGitFcgiError(reason)
        ? reason
        : new GitFcgiError('ERR_CLIENT_ABORT', 'client went away', { cause: reason }),
    );
  };

  private armIdleTimer(delayMs: number): void {
    this.idleTimer = setTimeout(() => {
      const idleMs = Date.now() - this.lastActivity;
      if (idleMs < this.options.idleTimeoutMs) {
        this.armIdleTimer(this.options.idleTimeoutMs - idleMs);
        return;
      }
      this.fail(
        new GitFcgiError(
          'ERR_IDLE_TIMEOUT',
          `no data moved either way for ${formatDuration(this.options.idleTimeoutMs)} (idle_timeout): backend killed`,
          { status: 504 },
        ),
      );
    }, delayMs);
  }

  /** Teardown for every failure: kill the process group, answer or cut off, report. */
  private fail(err: unknown): void {
    if (this.done) return;
    // Ending the response can abort the exchange's signal synchronously: that must not re-enter.
    this.done = true;
    const error = isGitFcgiError(err)
      ? err
      : new GitFcgiError('ERR_BACKEND_EXIT', describeError(err), { status: 502, cause: err });
    const clientGone = error.code === 'ERR_CLIENT_ABORT';
    this.backend.kill(this.options.killGraceMs);
    const { response } = this.exchange;
    if (clientGone) response.end();
    else if (!response.headersSent) sendError(response, error.status);
    else response.abort(error);
    if (!clientGone) this.options.log.warn('request failed', { reason: describeError(error) });
    this.finish(clientGone ? CLIENT_CLOSED : error.status, error);
  }

  /** Nothing was sent and the request body is left unread, for the backend that runs next. */
  private retry(exit: BackendExit): void {
    this.detach();
    const { body } = this.exchange;
    body.removeListener('error', this.onAbort);
    body.pause();
    this.resolve({ status: 0, bytesIn: 0, bytesOut: 0, exit: exit.signal ?? exit.code, retry: true });
  }

  /** The relay lets go of the request and the backend's output: no more events reach it. */
  private detach(): void {
    this.done = true;
    clearTimeout(this.idleTimer);
    this.exchange.signal.removeEventListener('abort', this.onAbort);
    const { body } = this.exchange;
    body.removeListener('data', this.onBodyData);
    body.removeListener('end', this.onBodyEnd);
    this.backend.stdout.removeListener('data', this.onStdout);
  }

  private finish(status: number, error?: GitFcgiError): void {
    this.detach();
    this.exchange.body.resume(); // whatever is left of the body is discarded
    const { backend } = this;
    if (error === undefined) this.exchange.response.end();
    else {
      backend.stdin.destroy();
      backend.stdout.destroy();
    }
    void this.backend.exited.then((exit) => {
      this.resolve({
        status,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        exit: exit.signal ?? exit.code,
        ...(error === undefined ? {} : { error: describeError(error) }),
      });
    });
  }
}
