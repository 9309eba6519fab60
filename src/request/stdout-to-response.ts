import type { Readable } from 'node:stream';
import type { GitFcgiError } from '../errors.js';
import type { ResponseLease, ResponseSink } from '../exchange.js';
import { chunksDone } from '../heap-limits.js';
import type { BackendOutput, BackendOutputEvents, BodyTap } from './backend-output.js';
import type { BackendProcess } from './backend-process.js';
import { CgiHeaderParser, type CgiHead } from './cgi-headers.js';
import type { Splice, SpliceEvents } from './splice-helper.js';

/**
 * When the rest of a response is spliced (git-fcgi-splice) instead of relayed through Node.
 * It takes over once all of these hold, checked each time the response has taken every byte
 * given to it:
 * - the backend's stdout is read through the spawn helper's socket (not Node's own pipes);
 * - at least `afterBytes` of the body went through Node (small answers never pay for a
 *   hand-off), the CGI head and any prelude among them;
 * - no tap wants more bytes (a cache keeping the answer; the fetch cache stops wanting them
 *   past its entry limit);
 * - the response can lend its connection (FastCGI, alone on it, nothing queued).
 */
export interface SpliceRoute {
  readonly afterBytes: number;
  /** SpliceHelper.splice; null when the helper cannot take it. */
  start(stdout: Readable, lease: ResponseLease, events: SpliceEvents): Splice | null;
}

export interface StdoutOptions {
  /**
   * Output the backend does not write itself (a direct `git upload-pack`): this head, and these
   * bytes before its first one.
   */
  readonly prelude?: { readonly head: CgiHead; readonly body: Buffer } | undefined;
  /** Sees every body byte sent, in order, until it returns false. */
  readonly tap?: BodyTap | undefined;
  /** Splices the rest of a large response; unset: everything goes through Node. */
  readonly splice?: SpliceRoute | undefined;
}

const noEvents: BackendOutputEvents = { activity() {}, ended() {}, failed() {} };

/**
 * The backend's stdout through Node into the response: the CGI head is parsed off, and stdout
 * is paused while the response is full.
 */
export class StdoutToResponse implements BackendOutput {
  private readonly headerParser = new CgiHeaderParser();
  private events = noEvents;
  private parsedHead: CgiHead | null;
  /** The prelude's body while it is still to be sent. */
  private preludeBody: Buffer | null;
  private bytes = 0;
  private stopped = false;
  private tapWants: boolean;
  private splice: Splice | null = null;
  /** While a splice runs: resolves at its last report. */
  private spliceOver: Promise<void> | null = null;
  private spliceEnded: () => void = () => {};
  /** Body bytes that went through Node before the splice took over. */
  private relayedBytes = 0;

  constructor(
    private readonly response: ResponseSink,
    private readonly backend: BackendProcess,
    private readonly options: StdoutOptions = {},
  ) {
    this.parsedHead = options.prelude?.head ?? null;
    this.preludeBody = options.prelude?.body ?? null;
    this.tapWants = options.tap !== undefined;
  }

  settled(): Promise<void> {
    return this.spliceOver ?? Promise.resolve();
  }

  /** Body bytes the splice moved (0: none took over). */
  get splicedBytes(): number {
    return this.splice === null ? 0 : this.bytes - this.relayedBytes;
  }

  get head(): CgiHead | null {
    return this.parsedHead;
  }

  get retryable(): boolean {
    return this.preludeBody !== null;
  }

  get bytesOut(): number {
    return this.bytes;
  }

  start(events: BackendOutputEvents): void {
    this.events = events;
    const { backend } = this;
    const { stdout } = backend;
    if (backend.readStdout !== undefined) backend.readStdout(this.onView);
    else stdout.on('data', this.onData);
    // A stream that ended empty before anyone listened (a backend that failed at once) has
    // already emitted 'end': Node ends an empty readable without waiting for a reader.
    if (stdout.readableEnded) queueMicrotask(this.onEnd);
    else stdout.once('end', this.onEnd);
    stdout.once('error', this.onError);
  }

  finish(): void {
    this.stop();
    this.sendHead();
    const rest = this.preludeBody;
    this.preludeBody = null;
    if (rest !== null && rest.length > 0) this.send(rest);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.splice?.cancel();
    const { stdout } = this.backend;
    stdout.removeListener('data', this.onData);
    stdout.removeListener('end', this.onEnd);
    stdout.removeListener('error', this.onError);
    // One that fails later must not take the daemon down.
    stdout.on('error', ignore);
  }

  destroy(): void {
    this.stop();
    this.backend.stdout.destroy();
  }

  /** stdout as 'data' events: each chunk is the relay's to keep. */
  private readonly onData = (chunk: Buffer): void => {
    chunksDone(chunk.length);
    const body = this.bodyOf(chunk, false);
    if (body === null) return;
    if (!this.send(body)) {
      this.backend.stdout.pause();
      this.response.onceDrain(this.resumeStdout);
    }
  };

  /**
   * stdout as views of the backend's read buffer (readStdout): the buffer is read into again
   * once this returns true, so true only when the response has handed every byte to the kernel;
   * otherwise reading stays paused until it has, and until the response may take more.
   */
  private readonly onView = (view: Buffer): boolean => {
    const body = this.bodyOf(view, true);
    if (body === null) return !this.stopped;
    const { response } = this;
    let flushed = false;
    let full = false;
    this.send(body, () => {
      flushed = true;
      if (full) response.onceDrain(this.resumeStdout);
    });
    // Not write()'s result: a 64 KiB view written while corked is over the socket's high-water
    // mark even when uncork() hands all of it to the kernel at once. Nothing left in the
    // socket's queue is what matters: the view is not referenced any more and reading goes on
    // without a stop and restart of the stdout socket (two epoll_ctl calls per read).
    if (response.pending === 0) return !this.trySplice();
    full = !flushed;
    if (flushed) response.onceDrain(this.resumeStdout);
    return false;
  };

  private readonly resumeStdout = (): void => {
    if (!this.stopped && !this.trySplice()) this.backend.stdout.resume();
  };

  /**
   * Hands the rest of stdout to the splice helper when the route's conditions hold (see
   * SpliceRoute); stdout stays paused from then on. True when a splice took over.
   */
  private trySplice(): boolean {
    const route = this.options.splice;
    if (route === undefined || this.splice !== null || this.stopped || this.tapWants) return false;
    if (this.preludeBody !== null || this.bytes < route.afterBytes) return false;
    if (this.backend.readStdout === undefined || this.response.lend === undefined) return false;
    const lease = this.response.lend();
    if (lease === null) return false;
    const splice = route.start(this.backend.stdout, lease, {
      progress: (bytes) => {
        this.bytes = this.relayedBytes + bytes;
        if (!this.stopped) this.events.activity();
      },
      ended: this.onSpliceEnded,
    });
    if (splice === null) {
      lease.giveBack({ headerAt: 8, owed: 0 });
      return false;
    }
    this.relayedBytes = this.bytes;
    this.splice = splice;
    this.spliceOver = new Promise((resolve) => (this.spliceEnded = resolve));
    return true;
  }

  private readonly onSpliceEnded = (bytes: number, error?: GitFcgiError): void => {
    this.bytes = this.relayedBytes + bytes;
    this.spliceEnded();
    // The helper has closed its copy: closing ours ends the stream for the spawn's bookkeeping.
    this.backend.stdout.destroy();
    if (this.stopped) return;
    if (error !== undefined) this.events.failed(error);
    else this.events.ended();
  };

  private readonly onEnd = (): void => {
    if (!this.stopped) this.events.ended();
  };

  private readonly onError = (err: Error): void => {
    if (!this.stopped) this.events.failed(err);
  };

  /**
   * What of a stdout chunk goes to the client: the CGI head is taken off first (and the
   * prelude put in front); null when nothing is to be sent. A view is copied while the head is
   * parsed, as the parser keeps partial lines.
   */
  private bodyOf(chunk: Buffer, isView: boolean): Buffer | null {
    if (this.stopped) return null;
    this.events.activity();
    if (this.parsedHead === null) {
      let parsed: CgiHead | null;
      try {
        parsed = this.headerParser.push(isView ? Buffer.from(chunk) : chunk);
      } catch (err) {
        this.events.failed(err);
        return null;
      }
      if (parsed === null) return null;
      this.parsedHead = parsed;
      chunk = parsed.rest;
      if (chunk.length === 0) return null;
    }
    this.sendHead();
    if (this.preludeBody !== null) {
      chunk = Buffer.concat([this.preludeBody, chunk]);
      this.preludeBody = null;
    }
    return chunk;
  }

  private send(body: Buffer, flushed?: () => void): boolean {
    this.bytes += body.length;
    if (this.tapWants && this.options.tap?.(body) === false) this.tapWants = false;
    return flushed === undefined ? this.response.write(body) : this.response.write(body, flushed);
  }

  /**
   * Headers go out with the first body byte (or at the end), not before: a backend that fails
   * between its headers and its body still gets a proper 502 instead of an empty 200.
   */
  private sendHead(): void {
    const { response } = this;
    if (this.parsedHead !== null && !response.headersSent) {
      response.writeHead(this.parsedHead.status, this.parsedHead.headers);
    }
  }
}

function ignore(): void {}
