import { GitFcgiError } from '../errors.js';
import { decodeParams } from './name-value.js';
import { RequestBody } from './request-body.js';

export interface RequestLimits {
  readonly maxParamsBytes: number;
  /** Shared by the requests of one connection. */
  readonly earlyStdin: EarlyStdinBudget;
}

/**
 * STDIN that arrives before the end of its request's PARAMS cannot pause the socket (the rest
 * of PARAMS may be queued behind it), so it is capped instead: across all the requests of one
 * connection, or multiplexed requests could each hold the cap.
 */
export class EarlyStdinBudget {
  usedBytes = 0;
  constructor(readonly capBytes: number) {}
}

/**
 * STDIN contents smaller than this are copied: a small view would pin its whole socket chunk
 * (up to 64 KiB) for as long as it sits in the body's buffer.
 */
const COPY_BELOW_BYTES = 4096;

/** What one FastCGI request has received so far: PARAMS until they end, then the body. */
export class FastCgiRequest {
  readonly controller = new AbortController();
  readonly body: RequestBody;
  stdinDone = false;
  private params: Buffer[] | null = [];
  private paramsBytes = 0;
  private earlyStdinBytes = 0;

  constructor(
    readonly id: number,
    readonly keepConn: boolean,
    private readonly limits: RequestLimits,
    wantMore: () => void,
  ) {
    this.body = new RequestBody(wantMore);
  }

  /** True once PARAMS have ended (and the handler has been given the request). */
  get started(): boolean {
    return this.params === null;
  }

  /**
   * Adds a PARAMS record; returns the decoded params when this was the empty, final one.
   * Params over the cap are counted and dropped, not kept: the request then ends with
   * `paramsTooLarge` set and empty params, to be answered 431 rather than by closing the
   * connection (which nginx would turn into a 502).
   */
  addParams(content: Buffer): Map<string, string> | null {
    if (this.params === null) return null;
    if (content.length === 0) {
      const all = Buffer.concat(this.params, this.paramsTooLarge ? 0 : this.paramsBytes);
      this.params = null;
      // From now on the body's own backpressure bounds it.
      this.releaseEarlyStdin();
      return this.paramsTooLarge ? new Map() : decodeParams(all);
    }
    this.paramsBytes += content.length;
    if (this.paramsBytes > this.limits.maxParamsBytes) this.params = [];
    // Copied: PARAMS are small, and views would pin every chunk they arrived in.
    else this.params.push(Buffer.from(content));
    return null;
  }

  /** Set once PARAMS went over maxParamsBytes: they were dropped. */
  get paramsTooLarge(): boolean {
    return this.paramsBytes > this.limits.maxParamsBytes;
  }

  /** The coded error for a request whose params were too large. */
  paramsError(): GitFcgiError {
    return new GitFcgiError(
      'ERR_FCGI_PARAMS_TOO_LARGE',
      `PARAMS of ${this.paramsBytes} bytes exceed ${this.limits.maxParamsBytes}`,
      { status: 431 },
    );
  }

  /**
   * Adds a STDIN record (empty: end of body). Returns false when the body is full and the
   * socket should pause. STDIN before the end of PARAMS is only counted against its cap: the
   * rest of PARAMS may be queued behind it, so pausing then could deadlock.
   */
  addStdin(content: Buffer): boolean {
    if (this.stdinDone) return true;
    if (content.length === 0) {
      this.stdinDone = true;
      if (!this.body.destroyed) this.body.push(null);
      return true;
    }
    if (this.body.destroyed) return true;
    if (this.params !== null) {
      const budget = this.limits.earlyStdin;
      this.earlyStdinBytes += content.length;
      budget.usedBytes += content.length;
      if (budget.usedBytes > budget.capBytes) {
        throw new GitFcgiError(
          'ERR_FCGI_RECORD',
          `more than ${budget.capBytes} bytes of STDIN before the end of PARAMS`,
        );
      }
    }
    const accepted = this.body.push(content.length < COPY_BELOW_BYTES ? Buffer.from(content) : content);
    return accepted || this.params !== null;
  }

  /** Aborts the handler's signal (once) and drops the body. */
  abort(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
    this.discardBody();
  }

  /** Drops whatever the handler did not read; later STDIN is ignored. */
  discardBody(): void {
    this.releaseEarlyStdin();
    // Without an error: a body nobody listens to must not raise an unhandled 'error'.
    if (!this.body.destroyed) this.body.destroy();
  }

  private releaseEarlyStdin(): void {
    this.limits.earlyStdin.usedBytes -= this.earlyStdinBytes;
    this.earlyStdinBytes = 0;
  }
}
