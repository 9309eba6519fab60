import type { Readable, Writable } from 'node:stream';
import { chunksDone } from '../heap-limits.js';

export interface BodyToStdinEvents {
  /** Body bytes arrived (for idle_timeout). */
  activity(): void;
  /** The body ended short of its CONTENT_LENGTH. */
  truncated(received: number, expected: number): void;
  /** The body failed: the client is gone. */
  broken(): void;
}

/**
 * The request body into the backend's stdin: the body is paused while stdin is full, cut at
 * CONTENT_LENGTH, and discarded once the backend has closed its stdin.
 */
export class BodyToStdin {
  private bytes = 0;
  private stdinOpen = true;
  private stopped = false;

  constructor(
    private readonly body: Readable,
    private readonly stdin: Writable,
    /** CONTENT_LENGTH when the front end gave one; the body must deliver exactly that much. */
    private readonly contentLength: number | null,
    private readonly events: BodyToStdinEvents,
  ) {}

  /** Body bytes written to stdin. */
  get bytesIn(): number {
    return this.bytes;
  }

  start(): void {
    const { body } = this;
    body.on('data', this.onData);
    body.once('end', this.onEnd);
    body.once('error', this.onBodyError);
    // A backend run after another (a retry) gets a body that the first paused, or that has
    // already ended.
    if (body.readableEnded) queueMicrotask(this.onEnd);
    else body.resume();
    this.stdin.on('error', this.onStdinError);
  }

  /**
   * Lets go of body and stdin: no more events reach the relay. The rest of the body is left
   * paused for the backend that runs next (`keep`), or read and dropped (`discard`). Error
   * listeners that do nothing stay: a stream that fails later must not take the daemon down.
   */
  stop(rest: 'keep' | 'discard'): void {
    if (this.stopped) return;
    this.stopped = true;
    const { body, stdin } = this;
    body.removeListener('data', this.onData);
    body.removeListener('end', this.onEnd);
    body.removeListener('error', this.onBodyError);
    body.on('error', ignore);
    stdin.removeListener('drain', this.resumeBody);
    stdin.removeListener('error', this.onStdinError);
    stdin.on('error', ignore);
    if (rest === 'keep') body.pause();
    else body.resume();
  }

  /** Lets go, drops the rest of the body, and closes the backend's stdin. */
  destroy(): void {
    this.stop('discard');
    this.stdin.destroy();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.events.activity();
    if (!this.stdinOpen) return; // the backend stopped reading: the rest is discarded
    const { contentLength } = this;
    if (contentLength !== null && this.bytes + chunk.length > contentLength) {
      chunk = chunk.subarray(0, contentLength - this.bytes);
    }
    this.bytes += chunk.length;
    chunksDone(chunk.length);
    if (chunk.length > 0 && !this.stdin.write(chunk)) {
      this.body.pause();
      this.stdin.once('drain', this.resumeBody);
    }
  };

  private readonly resumeBody = (): void => {
    if (!this.stopped) this.body.resume();
  };

  private readonly onEnd = (): void => {
    // A backend that closed its stdin has answered without the rest: nothing is missing.
    if (this.stopped || !this.stdinOpen) return;
    const { contentLength } = this;
    if (contentLength !== null && this.bytes < contentLength) {
      this.events.truncated(this.bytes, contentLength);
      return;
    }
    this.stdin.end();
  };

  private readonly onBodyError = (): void => {
    if (!this.stopped) this.events.broken();
  };

  /** EPIPE: the backend closed stdin (it answered without reading everything). Not an error. */
  private readonly onStdinError = (): void => {
    this.stdinOpen = false;
    this.stdin.removeListener('drain', this.resumeBody);
    this.resumeBody();
  };
}

function ignore(): void {}
