import type { ResponseSink } from '../exchange.js';
import type { BackendProcess } from './backend-process.js';
import type { CgiHead } from './cgi-headers.js';

export interface BackendOutputEvents {
  /** Output moved (for idle_timeout). */
  activity(): void;
  /** The output is over and all of it sent: nothing more will be written. */
  ended(): void;
  /** The output cannot be relayed (a bad CGI head, a read error). */
  failed(err: unknown): void;
}

/**
 * The backend's output side as BackendRelay sees it: git's stdout on its way to the response,
 * CGI head first. StdoutToResponse moves the bytes through Node. A splice (git's stdout spliced
 * into the FastCGI socket by the spawn helper once git-fcgi has parsed the head) would take its
 * place: its progress reports are `activity`, its last splice is `ended`, and the relay writes
 * END_REQUEST only after that.
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
  /** The backend finished well: sends what is still held back (the head, the prelude), then lets go. */
  finish(): void;
  /** Lets go: no more output reaches the response, no more events the relay. */
  stop(): void;
  /** Lets go and closes the backend's output. */
  destroy(): void;
}

/** Makes the output side of one backend run. */
export type BackendOutputFactory = (response: ResponseSink, backend: BackendProcess) => BackendOutput;
