import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { GitFcgiError } from '../errors.js';
import type { HeaderList, LeaseReturn, ResponseLease, ResponseSink } from '../exchange.js';
import { ProtocolStatus, RecordType } from './constants.js';
import { endRequestRecord, recordHeader, writeStreamRecords } from './record-writer.js';

export interface ResponseHooks {
  /** After END_REQUEST has been written (or could not be, the socket being gone). */
  onEnd(): void;
  /**
   * The handler gave up on the response: the connection must be cut off. `owed`: the bytes
   * that complete a record a splice cut short, to be written first; 'broken': write nothing.
   */
  onAbort(reason: Error, owed?: Buffer | 'broken'): void;
  /** Whether this request is alone on its connection, which may then be lent. */
  canLend(): boolean;
  /** The connection is lent out (true) or back (false): the connection writes nothing meanwhile. */
  lent(out: boolean): void;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\r\n\0]/;

/**
 * ResponseSink for one FastCGI request: a CGI header block and the body as STDOUT records,
 * then an empty STDOUT and END_REQUEST, always last. Every method is safe once the socket is
 * gone; after end() or abort() everything is a no-op.
 */
export class FastCgiResponse implements ResponseSink {
  private readonly socket: Socket;
  private readonly requestId: number;
  private readonly hooks: ResponseHooks;
  private sentHeaders = false;
  private done = false;
  private lentOut = false;
  /** end() or abort() called while lent: run when the lease comes back. */
  private deferred: (() => void) | null = null;
  /** How a splice left the stream when it did not end at a record boundary. */
  private cut: Buffer | 'broken' | null = null;

  constructor(socket: Socket, requestId: number, hooks: ResponseHooks) {
    this.socket = socket;
    this.requestId = requestId;
    this.hooks = hooks;
  }

  get headersSent(): boolean {
    return this.sentHeaders;
  }

  writeHead(status: number, headers: HeaderList): void {
    if (this.done) return;
    if (this.sentHeaders) throw new Error('writeHead() called twice');
    if (!Number.isInteger(status) || status < 100 || status > 999) {
      throw new GitFcgiError('ERR_CGI_HEADER', `invalid status ${status}`, { status: 502 });
    }
    let block = `Status: ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    for (const [name, value] of headers) {
      if (!TOKEN.test(name) || BAD_VALUE.test(value)) {
        throw new GitFcgiError('ERR_CGI_HEADER', `invalid response header ${JSON.stringify(name)}`, {
          status: 502,
        });
      }
      block += `${name}: ${value}\r\n`;
    }
    this.sentHeaders = true;
    // latin1 keeps header bytes as they were parsed, like node:http does.
    if (this.writable())
      writeStreamRecords(
        this.socket,
        RecordType.STDOUT,
        this.requestId,
        Buffer.from(`${block}\r\n`, 'latin1'),
      );
  }

  write(chunk: Buffer, flushed?: () => void): boolean {
    if (this.done || !this.writable()) {
      if (flushed !== undefined) process.nextTick(flushed);
      return true;
    }
    if (!this.sentHeaders) throw new Error('write() before writeHead()');
    if (this.lentOut || this.cut !== null)
      throw new Error('write() while the connection is lent to a splice');
    return writeStreamRecords(this.socket, RecordType.STDOUT, this.requestId, chunk, flushed);
  }

  get pending(): number {
    return this.socket.writableLength;
  }

  onceDrain(cb: () => void): void {
    const socket = this.socket;
    if (this.done || !this.writable() || !socket.writableNeedDrain) {
      process.nextTick(cb);
      return;
    }
    // 'close' too: a socket that dies while full never drains, and the caller must not hang.
    const fire = (): void => {
      socket.off('drain', fire);
      socket.off('close', fire);
      cb();
    };
    socket.on('drain', fire);
    socket.on('close', fire);
  }

  end(): void {
    if (this.done) return;
    if (this.lentOut) {
      this.deferred ??= () => this.end();
      return;
    }
    // A splice that stopped inside a record: the response cannot end well any more.
    if (this.cut !== null) return this.abort(new Error('the response was cut short by its splice'));
    this.done = true;
    if (this.writable()) {
      const id = this.requestId;
      this.socket.write(
        Buffer.concat([
          recordHeader(RecordType.STDOUT, id, 0),
          endRequestRecord(id, 0, ProtocolStatus.REQUEST_COMPLETE),
        ]),
      );
    }
    this.hooks.onEnd();
  }

  abort(reason: Error): void {
    if (this.done) return;
    if (this.lentOut) {
      this.deferred = () => this.abort(reason);
      return;
    }
    this.done = true;
    this.hooks.onAbort(reason, this.cut ?? undefined);
  }

  lend(): ResponseLease | null {
    const handle = (this.socket as unknown as { _handle?: object | null })._handle;
    if (this.done || this.lentOut || this.cut !== null || !this.sentHeaders || !this.writable()) return null;
    if (handle == null || this.socket.writableLength > 0 || !this.hooks.canLend()) return null;
    this.lentOut = true;
    this.hooks.lent(true);
    let given = false;
    return {
      handle,
      requestId: this.requestId,
      giveBack: (where) => {
        if (given) return;
        given = true;
        this.giveBack(where);
      },
    };
  }

  private giveBack(where: LeaseReturn): void {
    this.lentOut = false;
    if (where === 'broken') this.cut = 'broken';
    else if (where.owed > 0 || where.headerAt < 8) {
      // The rest of the record the front end is in the middle of: its header's missing bytes,
      // then filler for its content. What follows it (cutOff's invalid record) fails the response.
      const header = where.headerAt < 8 ? recordHeader(RecordType.STDOUT, this.requestId, where.owed) : null;
      this.cut = Buffer.concat([
        header?.subarray(where.headerAt) ?? Buffer.alloc(0),
        Buffer.alloc(where.owed),
      ]);
    }
    this.hooks.lent(false);
    const next = this.deferred;
    this.deferred = null;
    next?.();
  }

  /** False once the socket is gone or failing (a write after the peer closed fails with EPIPE at once). */
  private writable(): boolean {
    const socket = this.socket;
    return !socket.destroyed && !socket.writableEnded && socket.errored === null;
  }
}
