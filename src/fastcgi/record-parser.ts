import { GitFcgiError } from '../errors.js';
import { FCGI_HEADER_LEN, FCGI_VERSION_1, RecordType } from './constants.js';

/**
 * A record's content, or for STDIN and DATA a piece of it: `last` is false for every piece but
 * the one that ends the record (always true for other types, and for an empty record).
 */
export type RecordCallback = (type: number, requestId: number, content: Buffer, last: boolean) => void;

const HEADER = 0;
const CONTENT = 1;
const PADDING = 2;
const EMPTY = Buffer.alloc(0);

/** Content length a record type must have; -1 where any length is legal. */
const FIXED_LENGTH = new Int16Array(256).fill(-1);
FIXED_LENGTH[RecordType.BEGIN_REQUEST] = 8;
FIXED_LENGTH[RecordType.ABORT_REQUEST] = 0;
FIXED_LENGTH[RecordType.END_REQUEST] = 8;
FIXED_LENGTH[RecordType.UNKNOWN_TYPE] = 8;

/** 1: management record (requestId must be 0); 2: application record (must not be 0); 0: type we do not know. */
const ID_RULE = new Uint8Array(256);
for (const type of [RecordType.GET_VALUES, RecordType.GET_VALUES_RESULT, RecordType.UNKNOWN_TYPE]) {
  ID_RULE[type] = 1;
}
for (let type: number = RecordType.BEGIN_REQUEST; type <= RecordType.DATA; type++) ID_RULE[type] = 2;

/** Streams whose content is handed on as it arrives (a byte stream, whatever the records). */
const STREAMED = new Uint8Array(256);
STREAMED[RecordType.STDIN] = 1;
STREAMED[RecordType.DATA] = 1;
/**
 * FastCGI record framing as a state machine (header -> content -> padding), fed chunks of any
 * size. Content is a zero-copy view of the chunk when the record lies inside it. A record that
 * spans chunks is copied whole, except STDIN and DATA: their content is a byte stream, handed
 * on in pieces, each a view of its chunk (`last` marks the record's end), so that a request
 * body is never copied or allocated again here. (nginx sends a streamed body in records of up to
 * 32 KiB; with 64 KiB reads about every other one spans two.) A view must not be kept past the
 * chunk's lifetime if the caller reuses chunks (net.Socket does not).
 *
 * Records are checked only for what makes them impossible to frame or dispatch; what they mean
 * is the connection's business. After any throw (including from `onRecord`) the parser is dead.
 */
export class RecordParser {
  private readonly onRecord: RecordCallback;
  private readonly header = Buffer.alloc(FCGI_HEADER_LEN);
  private headerFilled = 0;
  private state = HEADER;
  private type = 0;
  private requestId = 0;
  private contentLength = 0;
  private paddingLength = 0;
  private content: Buffer | null = null;
  private contentFilled = 0;
  /** STDIN and DATA: content bytes of the current record not handed on yet. */
  private contentLeft = 0;
  private paddingLeft = 0;
  private dead = false;
  private failure: unknown = undefined;

  constructor(onRecord: RecordCallback) {
    this.onRecord = onRecord;
  }

  push(chunk: Buffer): void {
    if (this.dead) throw this.failure;
    try {
      this.parse(chunk);
    } catch (err) {
      this.dead = true;
      this.failure = err;
      throw err;
    }
  }

  private parse(chunk: Buffer): void {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.state === HEADER) {
        if (this.headerFilled === 0 && end - pos >= FCGI_HEADER_LEN) {
          this.readHeader(chunk, pos);
          pos += FCGI_HEADER_LEN;
        } else {
          const n = Math.min(FCGI_HEADER_LEN - this.headerFilled, end - pos);
          chunk.copy(this.header, this.headerFilled, pos, pos + n);
          this.headerFilled += n;
          pos += n;
          if (this.headerFilled < FCGI_HEADER_LEN) return;
          this.headerFilled = 0;
          this.readHeader(this.header, 0);
        }
        if (this.contentLength === 0) this.emit(EMPTY);
      } else if (this.state === CONTENT) {
        if (STREAMED[this.type] === 1) {
          const n = Math.min(this.contentLeft, end - pos); // > 0: content is left, and so is chunk
          pos += n;
          this.contentLeft -= n;
          const piece = chunk.subarray(pos - n, pos);
          if (this.contentLeft === 0) this.emit(piece);
          else this.onRecord(this.type, this.requestId, piece, false);
          continue;
        }
        if (this.content === null) {
          if (end - pos >= this.contentLength) {
            pos += this.contentLength;
            this.emit(chunk.subarray(pos - this.contentLength, pos));
            continue;
          }
          this.content = Buffer.allocUnsafe(this.contentLength);
        }
        const n = Math.min(this.contentLength - this.contentFilled, end - pos);
        chunk.copy(this.content, this.contentFilled, pos, pos + n);
        this.contentFilled += n;
        pos += n;
        if (this.contentFilled === this.contentLength) {
          const content = this.content;
          this.content = null;
          this.contentFilled = 0;
          this.emit(content);
        }
      } else {
        const n = Math.min(this.paddingLeft, end - pos);
        this.paddingLeft -= n;
        pos += n;
        if (this.paddingLeft === 0) this.state = HEADER;
      }
    }
  }

  private readHeader(buf: Buffer, at: number): void {
    const version = buf.readUInt8(at);
    if (version !== FCGI_VERSION_1) {
      throw new GitFcgiError('ERR_FCGI_VERSION', `unsupported FastCGI version ${version}`);
    }
    const type = buf.readUInt8(at + 1);
    const requestId = buf.readUInt16BE(at + 2);
    const contentLength = buf.readUInt16BE(at + 4);
    const fixed = FIXED_LENGTH[type] ?? -1;
    if (fixed !== -1 && contentLength !== fixed) {
      throw new GitFcgiError('ERR_FCGI_RECORD', `record type ${type} with content length ${contentLength}`);
    }
    const rule = ID_RULE[type];
    if ((rule === 1 && requestId !== 0) || (rule === 2 && requestId === 0)) {
      throw new GitFcgiError('ERR_FCGI_RECORD', `record type ${type} with request id ${requestId}`);
    }
    this.type = type;
    this.requestId = requestId;
    this.contentLength = contentLength;
    this.contentLeft = contentLength;
    this.paddingLength = buf.readUInt8(at + 6);
    this.state = CONTENT;
  }

  /** Moves on past the content before calling out, so the callback sees a consistent parser. */
  private emit(content: Buffer): void {
    this.paddingLeft = this.paddingLength;
    this.state = this.paddingLength > 0 ? PADDING : HEADER;
    this.onRecord(this.type, this.requestId, content, true);
  }
}
