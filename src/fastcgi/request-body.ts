import { Readable } from 'node:stream';

/** Bytes of request body buffered before the FastCGI socket is paused. */
export const REQUEST_BODY_HIGH_WATER_MARK = 64 * 1024;

/**
 * The request body (FCGI_STDIN) as a Readable. The connection pushes records into it and pauses
 * its socket when push() returns false; `_read` is where the consumer asks for more, so that is
 * where the socket is resumed (the undici api-pipeline pattern).
 */
export class RequestBody extends Readable {
  private readonly wantMore: () => void;

  constructor(wantMore: () => void) {
    super({ highWaterMark: REQUEST_BODY_HIGH_WATER_MARK });
    this.wantMore = wantMore;
  }

  override _read(): void {
    this.wantMore();
  }
}
