import type { ResponseSink } from '../exchange.js';
import type { BackendProcess } from './backend-process.js';
import type { CgiHead } from './cgi-headers.js';

export interface BackendOutputEvents {
  /** Output moved (for idle_timeout). */
  activity(): void;
  /** The output is over and all of it sent: nothing more will be written. */
  ended(): void;
  /**
   * The output cannot be relayed (a bad CGI head, a read error); an ERR_CLIENT_ABORT error: the
   * front end closed the connection (a splice found it closed before the daemon did).
   */
  failed(err: unknown): void;
}

/**
 * Sees every body byte sent, in order (`bytes` may be reused after the call returns). Returns
 * false once it needs no more: a cache that will not keep this answer.
 */
export type BodyTap = (bytes: Buffer) => boolean;

/**
 * The backend's output side as BackendRelay sees it: git's stdout on its way to the response,
 * CGI head first. StdoutToResponse moves the bytes through Node, and hands a large response's
 * rest to git-fcgi-splice: the splice's progress reports are `activity`, its end is `ended`,
 * and the relay writes END_REQUEST only after that.
 */
export interface BackendOutput {
  /** Starts moving output; called once. */
  start(events: BackendOutputEvents): void;
  /** The CGI head once known (a prelude's from the start). */
  readonly head: CgiHead | null;
  /** A prelude was given and nothing of it has gone out: a failing backend may be replaced. */
  readonly retryable: boolean;
  /** Body bytes sent, a prelude's included. */
  readonly bytesOut: number;
  /** Of those, the bytes git-fcgi-splice moved. */
  readonly splicedBytes: number;
  /** Resolves once bytesOut is final: at once, or when a splice has reported its end. */
  settled(): Promise<void>;
  /** The backend finished well: sends what is still held back (the head, the prelude), then lets go. */
  finish(): void;
  /** Lets go: no more output reaches the response, no more events the relay. */
  stop(): void;
  /** Lets go and closes the backend's output. */
  destroy(): void;
}

/** Makes the output side of one backend run. */
export type BackendOutputFactory = (response: ResponseSink, backend: BackendProcess) => BackendOutput;
