import { GitFcgiError } from '../errors.js';

/** The parsed CGI header block (RFC 3875 §6) and the first body bytes that came with it. */
export interface CgiHead {
  status: number;
  /** In the backend's order; values are latin1 strings, so every byte round-trips. */
  headers: Array<[string, string]>;
  /** Body bytes that followed the header block in the last chunk: a view into that chunk, not a copy. */
  rest: Buffer;
}

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;

/** RFC 9110 §5.6.2 token: also rejects a leading SP/HTAB, i.e. obsolete line folding. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Any control character but HTAB: NUL, a stray CR, and the rest would be unsafe to forward. */
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const BAD_VALUE_CHAR = /[\x00-\x08\x0a-\x1f\x7f]/;
const STATUS_VALUE = /^([1-5][0-9]{2})(?:[ \t]|$)/;
const OUTER_WHITESPACE = /^[ \t]+|[ \t]+$/g;

type State = 'head' | 'done' | 'failed';

/**
 * Reads the header block a CGI program writes before its body. Feed it stdout chunks until it
 * returns the head; from then on the chunks are body and go straight to the client, so the parser
 * is out of the hot path. Lines end in LF or CRLF; a line cut by a chunk boundary is the only
 * thing ever copied.
 */
export class CgiHeaderParser {
  readonly #maxBytes: number;
  #state: State = 'head';
  #error: unknown;
  /** Header bytes taken so far, line terminators included. */
  #consumed = 0;
  #lines = 0;
  #partial: Buffer[] = [];
  #partialBytes = 0;
  #status: number | undefined;
  #hasLocation = false;
  readonly #headers: Array<[string, string]> = [];
  /** Lower-cased name -> index in #headers, to collapse duplicates in place. */
  readonly #index = new Map<string, number>();

  constructor(maxBytes = 64 * 1024) {
    this.#maxBytes = maxBytes;
  }

  /** Returns the head once the empty line that ends the block has arrived, null until then. */
  push(chunk: Buffer): CgiHead | null {
    if (this.#state === 'failed') throw this.#error;
    if (this.#state === 'done') throw new Error('CgiHeaderParser.push() called after the header block ended');
    try {
      return this.#parse(chunk);
    } catch (err) {
      this.#state = 'failed';
      this.#error = err;
      throw err;
    }
  }

  /** Call when stdout ends: throws if it ended inside the header block. */
  end(): void {
    if (this.#state !== 'head') return;
    this.#state = 'failed';
    this.#error = fail(`backend output ended inside the header block (${this.#consumed} bytes)`);
    throw this.#error;
  }

  #parse(chunk: Buffer): CgiHead | null {
    let pos = 0;
    for (;;) {
      const lf = chunk.indexOf(LF, pos);
      if (lf === -1) {
        this.#take(chunk.length - pos);
        if (pos < chunk.length) {
          this.#partial.push(chunk.subarray(pos));
          this.#partialBytes += chunk.length - pos;
        }
        return null;
      }
      this.#take(lf + 1 - pos);
      let line = chunk;
      let start = pos;
      let end = lf;
      if (this.#partialBytes > 0) {
        this.#partial.push(chunk.subarray(pos, lf));
        line = Buffer.concat(this.#partial, this.#partialBytes + lf - pos);
        start = 0;
        end = line.length;
        this.#partial = [];
        this.#partialBytes = 0;
      }
      if (end > start && line[end - 1] === CR) end--;
      pos = lf + 1;
      this.#lines++;
      if (end === start) return this.#finish(chunk.subarray(pos));
      this.#field(line, start, end);
    }
  }

  #take(bytes: number): void {
    this.#consumed += bytes;
    if (this.#consumed > this.#maxBytes) {
      throw new GitFcgiError(
        'ERR_CGI_HEADER_TOO_LARGE',
        `backend header block exceeds ${this.#maxBytes} bytes without its terminating empty line`,
        { status: 502 },
      );
    }
  }

  #field(line: Buffer, start: number, end: number): void {
    const colon = line.indexOf(COLON, start);
    if (colon === -1 || colon >= end) throw fail(`line ${this.#lines} of the header block has no colon`);
    const name = line.toString('latin1', start, colon);
    if (!TOKEN.test(name)) {
      const first = line[start];
      throw fail(
        first === 0x20 || first === 0x09
          ? `line ${this.#lines}: folded header lines are not accepted`
          : `line ${this.#lines}: invalid header name ${JSON.stringify(name)}`,
      );
    }
    const value = line.toString('latin1', colon + 1, end).replace(OUTER_WHITESPACE, '');
    if (BAD_VALUE_CHAR.test(value)) throw fail(`line ${this.#lines}: control character in ${name} value`);

    const key = name.toLowerCase();
    if (key === 'status') {
      const match = STATUS_VALUE.exec(value);
      if (match?.[1] === undefined)
        throw fail(`line ${this.#lines}: invalid Status ${JSON.stringify(value)}`);
      this.#status = Number(match[1]);
      return;
    }
    if (key === 'location') this.#hasLocation = true;
    if (key === 'set-cookie') {
      this.#headers.push([name, value]);
      return;
    }
    // git http-backend repeats Expires/Pragma/Cache-Control after a late Status: the last copy wins.
    const at = this.#index.get(key);
    if (at === undefined) {
      this.#index.set(key, this.#headers.length);
      this.#headers.push([name, value]);
    } else {
      this.#headers[at] = [name, value];
    }
  }

  #finish(rest: Buffer): CgiHead {
    if (this.#headers.length === 0 && this.#status === undefined) {
      throw fail('backend sent an empty header block');
    }
    this.#state = 'done';
    const status = this.#status ?? (this.#hasLocation ? 302 : 200);
    return { status, headers: this.#headers, rest };
  }
}

function fail(message: string): GitFcgiError {
  return new GitFcgiError('ERR_CGI_HEADER', `invalid CGI response: ${message}`, { status: 502 });
}
