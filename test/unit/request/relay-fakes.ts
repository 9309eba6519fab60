/**
 * A backend process and an exchange made of in-memory streams the test drives: no git, no
 * sockets. The fakes keep the contracts of BackendProcess and ResponseSink (src/exchange.ts).
 */
import { getEventListeners } from 'node:events';
import { PassThrough, Readable, Writable } from 'node:stream';
import type { Exchange, HeaderList, ResponseSink } from '../../../src/exchange.js';
import { GitFcgiError } from '../../../src/errors.js';
import type { LogMeta, Logger } from '../../../src/log.js';
import type { BackendExit, BackendProcess } from '../../../src/request/backend-process.js';

/** Lets microtasks, nextTicks and stream events run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * git http-backend as the relay sees it: stdout and stderr the test writes, a stdin that
 * collects what the relay writes and can be held full, an exit the test triggers.
 */
export class FakeBackend implements BackendProcess {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin: Writable;
  readonly pid = 4242;
  readonly exited: Promise<BackendExit>;
  /** kill()'s grace periods, one per call. */
  readonly kills: number[] = [];
  /** Bytes the backend read from its stdin. */
  readonly received: Buffer[] = [];
  stdinEnded = false;
  readStdout?: (onView: (view: Buffer) => boolean) => void;
  private holding = false;
  private held: Array<() => void> = [];
  private resolveExit: (exit: BackendExit) => void = () => {};

  constructor(options: { stdinHighWaterMark?: number } = {}) {
    this.stdin = new Writable({
      highWaterMark: options.stdinHighWaterMark ?? 16,
      write: (chunk: Buffer, _encoding, callback) => {
        this.received.push(Buffer.from(chunk));
        if (this.holding) this.held.push(() => callback());
        else callback();
      },
      final: (callback) => {
        this.stdinEnded = true;
        callback();
      },
    });
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
  }

  kill(graceMs: number): void {
    this.kills.push(graceMs);
  }

  /** The backend stops reading stdin: writes stay queued until releaseStdin(). */
  holdStdin(): void {
    this.holding = true;
  }

  releaseStdin(): void {
    this.holding = false;
    for (const callback of this.held.splice(0)) callback();
  }

  /** The backend closes its stdin without reading the rest: the next write fails with EPIPE. */
  closeStdin(): void {
    this.stdin.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
  }

  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    this.resolveExit({ code, signal });
  }

  /** Writes all of `output` to stdout, ends it, and exits with `code`: a backend that finished. */
  finish(output: string | Buffer, code = 0): void {
    this.stdout.end(output);
    this.exit(code);
  }

  get stdinBytes(): string {
    return Buffer.concat(this.received).toString();
  }

  /**
   * stdout read the way the spawn helper's socket is (readStdout): views of one buffer that is
   * overwritten by the next read. `feed` hands the sink the next read.
   */
  readIntoOneBuffer(): { feed: (bytes: string) => boolean; sinkSet: () => boolean } {
    const buffer = Buffer.alloc(64 * 1024);
    let sink: ((view: Buffer) => boolean) | null = null;
    this.readStdout = (onView) => {
      sink = onView;
    };
    return {
      sinkSet: () => sink !== null,
      feed: (bytes) => {
        if (sink === null) throw new Error('readStdout() was not called');
        const n = buffer.write(bytes);
        const more = sink(buffer.subarray(0, n));
        // What the next read does to a view kept too long. A view refused (false) stays valid
        // until stdout.resume(); the next feed() then overwrites it.
        if (more) buffer.fill('#');
        return more;
      },
    };
  }
}

export type ResponseEvent =
  | { readonly kind: 'head'; readonly status: number; readonly headers: HeaderList }
  /** `chunk` is the writer's own memory until flushed (as a socket's queue holds it), then a copy. */
  | { readonly kind: 'write'; chunk: Buffer }
  | { readonly kind: 'end' }
  | { readonly kind: 'abort'; readonly reason: Error };

/**
 * A response whose reader the test controls: `slow()` makes it hold every write (pending > 0,
 * write() false) until `drain()`. Throws on what the real sinks must never see: a second head,
 * a write after the end.
 */
export class FakeResponse implements ResponseSink {
  readonly events: ResponseEvent[] = [];
  /** Called from abort(), as FastCgiResponse aborts its request's signal. */
  onAbort: (reason: Error) => void = () => {};
  private isSlow = false;
  private pendingBytes = 0;
  private flushes: Array<() => void> = [];
  private drains: Array<() => void> = [];
  private done = false;

  get headersSent(): boolean {
    return this.events.some((e) => e.kind === 'head');
  }

  get pending(): number {
    return this.pendingBytes;
  }

  get ended(): boolean {
    return this.events.some((e) => e.kind === 'end');
  }

  get aborted(): Error | null {
    const event = this.events.find((e) => e.kind === 'abort');
    return event?.kind === 'abort' ? event.reason : null;
  }

  get status(): number | null {
    const event = this.events.find((e) => e.kind === 'head');
    return event?.kind === 'head' ? event.status : null;
  }

  get body(): string {
    return this.events.map((e) => (e.kind === 'write' ? e.chunk.toString() : '')).join('');
  }

  writeHead(status: number, headers: HeaderList): void {
    if (this.headersSent) throw new Error('writeHead() twice');
    if (this.done) throw new Error('writeHead() after the end');
    this.events.push({ kind: 'head', status, headers });
  }

  write(chunk: Buffer, flushed?: () => void): boolean {
    if (this.done) throw new Error('write() after the end');
    if (!this.headersSent) throw new Error('write() before writeHead()');
    if (!this.isSlow) {
      this.events.push({ kind: 'write', chunk: Buffer.from(chunk) });
      flushed?.();
      return true;
    }
    const event = { kind: 'write' as const, chunk };
    this.events.push(event);
    this.pendingBytes += chunk.length;
    this.flushes.push(() => {
      event.chunk = Buffer.from(chunk);
      flushed?.();
    });
    return false;
  }

  onceDrain(cb: () => void): void {
    if (this.isSlow && !this.done) this.drains.push(cb);
    else process.nextTick(cb);
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    this.events.push({ kind: 'end' });
    this.release();
  }

  abort(reason: Error): void {
    if (this.done) return;
    this.done = true;
    this.events.push({ kind: 'abort', reason });
    this.onAbort(reason);
    this.release();
  }

  /** The reader stops reading. */
  slow(): void {
    this.isSlow = true;
  }

  /** The reader catches up: everything written is flushed, then 'drain'. */
  drain(): void {
    this.isSlow = false;
    this.release();
  }

  private release(): void {
    this.pendingBytes = 0;
    for (const flushed of this.flushes.splice(0)) flushed();
    for (const cb of this.drains.splice(0)) cb();
  }
}

export interface FakeExchange extends Exchange {
  readonly body: PassThrough;
  readonly response: FakeResponse;
  /** The client goes away (connection closed or FCGI_ABORT_REQUEST). */
  clientGone(): void;
  /** The daemon aborts the request with a reason of its own (a stop out of patience). */
  abortWith(reason: Error): void;
}

export function fakeExchange(params: Record<string, string> = {}): FakeExchange {
  const controller = new AbortController();
  const response = new FakeResponse();
  return {
    params: new Map(Object.entries(params)),
    body: new PassThrough({ highWaterMark: 16 }),
    response,
    signal: controller.signal,
    transport: 'fastcgi',
    clientGone: () => controller.abort(new GitFcgiError('ERR_CLIENT_ABORT', 'client closed the connection')),
    abortWith: (reason) => controller.abort(reason),
  };
}

export interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly meta: LogMeta | undefined;
}

export function fakeLog(): Logger & { readonly lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (message: string, meta?: LogMeta): void => {
      lines.push({ level, message, meta });
    };
  const log = {
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    access: (meta: LogMeta) => lines.push({ level: 'access', message: '', meta }),
    child: () => log,
    isDebug: () => false,
  };
  return log;
}

/**
 * Events a stream still has listeners for, 'error' aside: error listeners may stay (as no-ops)
 * so that a stream failing later cannot take the daemon down.
 */
export function listenedEvents(stream: Readable | Writable): string[] {
  return ['data', 'end', 'drain', 'readable', 'finish', 'close'].filter((e) => stream.listenerCount(e) > 0);
}

export function abortListeners(signal: AbortSignal): number {
  return getEventListeners(signal, 'abort').length;
}
