import type { Readable } from 'node:stream';

/** Response headers in order, names as the backend wrote them. */
export type HeaderList = ReadonlyArray<readonly [name: string, value: string]>;

/**
 * Where a response goes: a FastCGI request (STDOUT records) or the quick-start HTTP
 * listener. The request handler only ever talks to this interface.
 */
export interface ResponseSink {
  /** Status and headers; called at most once, before any write(). */
  writeHead(status: number, headers: HeaderList): void;
  /**
   * Body bytes. Returns false when the transport is full: wait for onceDrain before writing more.
   * The transport keeps a reference to `chunk` until it has handed it to the kernel: `flushed`
   * is then called (also if the transport failed). A caller that reuses the chunk's memory must
   * wait for that unless `pending` is 0 right after the write.
   */
  write(chunk: Buffer, flushed?: () => void): boolean;
  /** Bytes accepted by write() and not yet handed to the kernel. */
  readonly pending: number;
  /** Calls `cb` once, when write() may be called again (immediately if it may already). */
  onceDrain(cb: () => void): void;
  /** Finishes the response normally (FastCGI: empty STDOUT + END_REQUEST). Idempotent. */
  end(): void;
  /**
   * Cuts the response off without finishing it, so the client sees a broken response rather
   * than a complete one. Idempotent; a no-op after end().
   */
  abort(reason: Error): void;
  readonly headersSent: boolean;
  /**
   * The response's connection, lent to git-fcgi-splice (src/request/splice-helper.ts): only a
   * FastCGI response whose headers are out, with nothing of it still queued, alone on its
   * connection. Null otherwise. Until the lease is given back nothing else writes to the
   * connection; end() and abort() called meanwhile take effect then.
   */
  lend?(): ResponseLease | null;
}

/**
 * Where a splice left the FastCGI stream: `headerAt` bytes of the current record's header were
 * written (8: all of it, or none begun) and `owed` bytes of its content are still due. 'broken':
 * unknown, the connection is not to be written any more.
 */
export type LeaseReturn = { readonly headerAt: number; readonly owed: number } | 'broken';

/** A FastCGI connection lent out for a splice. */
export interface ResponseLease {
  /** The connection's handle, for the helper (a libuv stream: Pipe or TCP). */
  readonly handle: object;
  /** The FastCGI request id the records carry. */
  readonly requestId: number;
  /** The helper has let go (closed its descriptor). Idempotent. */
  giveBack(where: LeaseReturn): void;
}

/** One request as the handler sees it, whatever transport carried it. */
export interface Exchange {
  /** CGI/FastCGI params as the front end sent them (nginx `fastcgi_param`s, HTTP_* headers). */
  readonly params: ReadonlyMap<string, string>;
  /** The request body (FCGI_STDIN). Ends when the front end signals end of input. */
  readonly body: Readable;
  readonly response: ResponseSink;
  /** Aborted when the client goes away: connection closed, FCGI_ABORT_REQUEST, or transport error. */
  readonly signal: AbortSignal;
  readonly transport: 'fastcgi' | 'http';
}

export type ExchangeHandler = (exchange: Exchange) => void;

/**
 * The request stage behind the daemon: settles once everything about the request is done,
 * its access-log line included, so that a stop waits for it.
 */
export type RequestHandler = (exchange: Exchange) => Promise<void>;
