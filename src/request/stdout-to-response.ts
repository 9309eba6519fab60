import type { ResponseSink } from '../exchange.js';
import { chunksDone } from '../heap-limits.js';
import type { BackendOutput, BackendOutputEvents } from './backend-output.js';
import type { BackendProcess } from './backend-process.js';
import { CgiHeaderParser, type CgiHead } from './cgi-headers.js';

export interface StdoutOptions {
  /**
   * Output the backend does not write itself (a direct `git upload-pack`): this head, and these
   * bytes before its first one.
   */
  readonly prelude?: { readonly head: CgiHead; readonly body: Buffer } | undefined;
  /** Sees every body byte sent, in order; `bytes` may be reused after the call returns. */
  readonly tap?: ((bytes: Buffer) => void) | undefined;
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

  constructor(
    private readonly response: ResponseSink,
    private readonly backend: BackendProcess,
    private readonly options: StdoutOptions = {},
  ) {
    this.parsedHead = options.prelude?.head ?? null;
    this.preludeBody = options.prelude?.body ?? null;
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
    if (response.pending === 0) return true;
    full = !flushed;
    if (flushed) response.onceDrain(this.resumeStdout);
    return false;
  };

  private readonly resumeStdout = (): void => {
    if (!this.stopped) this.backend.stdout.resume();
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
    this.options.tap?.(body);
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
