import type { Socket } from 'node:net';
import { GitFcgiError, describeError, isGitFcgiError } from '../errors.js';
import type { ExchangeHandler } from '../exchange.js';
import { FCGI_KEEP_CONN, ProtocolStatus, RecordType, Role } from './constants.js';
import {
  DEFAULT_MAX_EARLY_STDIN_BYTES,
  getValuesAnswer,
  type FastCgiConnectionOptions,
} from './connection-options.js';
import { FastCgiRequest } from './fastcgi-request.js';
import { FastCgiResponse } from './fastcgi-response.js';
import { decodeParams } from './name-value.js';
import { RecordParser } from './record-parser.js';
import { endRequestRecord, getValuesResult, recordHeader, unknownTypeRecord } from './record-writer.js';

export type { FastCgiConnectionOptions, LogFn } from './connection-options.js';

/** What the daemon may ask of a connection it has accepted. */
export interface FastCgiConnectionHandle {
  /**
   * Takes no request after the current one: a connection idle between requests
   * (FCGI_KEEP_CONN) is ended now, one in a request after its response. One that has not sent
   * its first request yet was accepted to be served: it gets `firstRequestGraceMs` to send it.
   */
  drain(firstRequestGraceMs: number): void;
}

/**
 * Serves FastCGI responder requests on an accepted socket until it closes: one request at a
 * time (nginx never multiplexes), several in a row with FCGI_KEEP_CONN.
 */
export function serveFastCgiConnection(
  socket: Socket,
  handler: ExchangeHandler,
  options: FastCgiConnectionOptions,
): FastCgiConnectionHandle {
  return new FastCgiConnection(socket, handler, options);
}

class FastCgiConnection implements FastCgiConnectionHandle {
  private readonly parser = new RecordParser((type, id, content) => this.onRecord(type, id, content));
  private readonly peer: string;
  private active: FastCgiRequest | null = null;
  private pausedForBody = false;
  private peerEnded = false;
  /** Set once we have decided to close: later records are ignored. */
  private closing = false;
  private peerProbe: NodeJS.Timeout | undefined;
  /** Whether a BEGIN_REQUEST ever arrived. */
  private begun = false;
  /** Set by drain(): no request after the current one. */
  private draining = false;

  constructor(
    private readonly socket: Socket,
    private readonly handler: ExchangeHandler,
    private readonly options: FastCgiConnectionOptions,
  ) {
    this.peer = socket.remoteAddress === undefined ? 'unix' : `${socket.remoteAddress}:${socket.remotePort}`;
    // Half-open, so that 'end' from the peer is ours to interpret: a client may shut down its
    // side once it has sent the whole request and still read the response. nginx never does;
    // it closes the whole connection when its client goes away, which also arrives as 'end'.
    // See onPeerEnd for how the two are told apart.
    socket.allowHalfOpen = true;
    socket.on('data', (chunk: Buffer) => this.guard(() => this.parser.push(chunk)));
    socket.on('end', () => this.guard(() => this.onPeerEnd()));
    socket.on('close', () => this.guard(() => this.onClose()));
    socket.on('error', (err) => this.options.log('debug', 'FastCGI socket error', this.meta(err)));
  }

  /** Nothing a peer sends may throw out of a socket event handler: fail the connection instead. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (isGitFcgiError(error)) this.options.log('warn', 'FastCGI protocol error', this.meta(error));
      else this.options.log('error', 'internal error on FastCGI connection', this.meta(error));
      this.closing = true;
      this.active?.abort(error);
      this.finish(this.active);
      this.socket.destroy();
    }
  }

  private onRecord(type: number, id: number, content: Buffer): void {
    if (this.closing) return;
    const req = this.active !== null && this.active.id === id ? this.active : null;
    switch (type) {
      case RecordType.BEGIN_REQUEST:
        return this.onBegin(id, content.readUInt16BE(0), (content.readUInt8(2) & FCGI_KEEP_CONN) !== 0);
      case RecordType.PARAMS: {
        const params = req?.addParams(content);
        if (req && params) this.start(req, params);
        return;
      }
      case RecordType.STDIN:
        // While paused we read nothing, so a peer that closes then goes unnoticed until the
        // handler reads on (or a write fails): the price of not buffering the body.
        if (req && !req.addStdin(content) && this.active === req && !this.pausedForBody) {
          this.pausedForBody = true;
          this.socket.pause();
        }
        return;
      case RecordType.ABORT_REQUEST:
        if (req)
          this.abortRequest(req, new GitFcgiError('ERR_CLIENT_ABORT', 'FCGI_ABORT_REQUEST', { status: 499 }));
        return;
      case RecordType.GET_VALUES:
        return this.send(getValuesResult(getValuesAnswer(this.options, decodeParams(content).keys())));
      case RecordType.DATA: // FILTER role only.
      case RecordType.END_REQUEST: // These are sent by applications, never to them.
      case RecordType.STDOUT:
      case RecordType.STDERR:
      case RecordType.GET_VALUES_RESULT:
      case RecordType.UNKNOWN_TYPE:
        return;
      default:
        this.send(unknownTypeRecord(type));
    }
  }

  drain(firstRequestGraceMs: number): void {
    if (this.draining || this.closing) return;
    this.draining = true;
    if (this.active !== null) return;
    if (this.begun) return this.endConnection();
    setTimeout(() => {
      if (!this.begun) this.socket.destroy();
    }, firstRequestGraceMs).unref();
  }

  private onBegin(id: number, role: number, keepConn: boolean): void {
    this.begun = true;
    if (this.active !== null) {
      if (this.active.id === id)
        throw new GitFcgiError('ERR_FCGI_RECORD', `BEGIN_REQUEST for active request ${id}`);
      return this.send(endRequestRecord(id, 0, ProtocolStatus.CANT_MPX_CONN));
    }
    if (role !== Role.RESPONDER) {
      this.send(endRequestRecord(id, 0, ProtocolStatus.UNKNOWN_ROLE));
      if (!keepConn) this.endConnection();
      return;
    }
    const limits = {
      maxParamsBytes: this.options.maxParamsBytes,
      maxEarlyStdinBytes: this.options.maxEarlyStdinBytes ?? DEFAULT_MAX_EARLY_STDIN_BYTES,
    };
    this.active = new FastCgiRequest(id, keepConn, limits, () => this.resumeForBody());
  }

  private start(req: FastCgiRequest, params: Map<string, string>): void {
    const response = new FastCgiResponse(this.socket, req.id, {
      onEnd: () => this.onResponseEnd(req),
      onAbort: (reason) => {
        req.abort(reason);
        this.finish(req);
        this.cutOff();
      },
    });
    if (req.paramsTooLarge) return this.refuseParams(req, response);
    const { body, controller } = req;
    try {
      this.handler({ params, body, response, signal: controller.signal, transport: 'fastcgi' });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.options.log('error', 'request handler threw', this.meta(error));
      response.abort(error);
    }
  }

  /** Too-large PARAMS get a short 431 (what nginx does for headers it cannot hold); no handler runs. */
  private refuseParams(req: FastCgiRequest, response: FastCgiResponse): void {
    this.options.log('warn', 'FastCGI params too large', this.meta(req.paramsError()));
    const text = Buffer.from('431 Request Header Fields Too Large\n');
    response.writeHead(431, [
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Content-Length', String(text.length)],
    ]);
    response.write(text);
    response.end();
  }

  private onPeerEnd(): void {
    this.peerEnded = true;
    const req = this.active;
    if (req === null) return this.endConnection();
    if (req.stdinDone && req.started) return this.probePeer(req);
    this.abortRequest(req, clientGone());
  }

  /**
   * After 'end' only a write tells a half-close from a full close, and the backend may write
   * nothing for minutes (pack-objects counting a big repository, a request queued for a slot).
   * So an empty STDERR record is written now and every second: it ends a stream we never use,
   * harmless to a peer still reading, and fails on a closed one (EPIPE -> 'close' -> abort).
   * Over a UNIX socket the first write fails; over TCP the first draws a reset, the next fails.
   */
  private probePeer(req: FastCgiRequest): void {
    const probe = (): void => {
      if (this.active !== req || this.closing) return clearInterval(this.peerProbe);
      this.send(EMPTY_STDERR(req.id));
    };
    probe();
    this.peerProbe = setInterval(probe, PEER_PROBE_INTERVAL_MS);
    this.peerProbe.unref();
  }

  private onClose(): void {
    this.closing = true;
    this.active?.abort(clientGone());
    this.finish(this.active);
  }

  /**
   * Aborts the handler's signal; the handler then ends the response. A request whose handler
   * has not started yet is answered here.
   */
  private abortRequest(req: FastCgiRequest, reason: GitFcgiError): void {
    req.abort(reason);
    if (!req.started && this.active === req) {
      this.send(endRequestRecord(req.id, 0, ProtocolStatus.REQUEST_COMPLETE));
      this.onResponseEnd(req);
    }
  }

  /** END_REQUEST has been written: close, or wait for the next BEGIN_REQUEST. */
  private onResponseEnd(req: FastCgiRequest): void {
    if (this.active !== req) return;
    this.finish(req);
    if (!req.keepConn || this.peerEnded || this.draining) this.endConnection();
  }

  /** Forgets the request; whatever it did not read of STDIN is discarded from now on. */
  private finish(req: FastCgiRequest | null): void {
    if (req === null || this.active !== req) return;
    clearInterval(this.peerProbe);
    this.active = null;
    req.discardBody();
    this.resumeForBody();
  }

  private resumeForBody(): void {
    if (!this.pausedForBody) return;
    this.pausedForBody = false;
    this.socket.resume();
  }

  /**
   * Ends the connection so that the front end fails the response. nginx takes a close without
   * END_REQUEST as the normal end of a response without Content-Length, and would hand the
   * client a truncated body as complete; a record it must reject makes it break the transfer.
   */
  private cutOff(): void {
    this.closing = true;
    if (this.socket.destroyed || this.socket.writableEnded) {
      this.socket.destroy();
      return;
    }
    this.socket.end(INVALID_RECORD);
    setTimeout(() => this.socket.destroy(), CUT_OFF_GRACE_MS).unref();
  }

  /** Ends our side; the socket keeps reading (and discarding) until the peer closes. */
  private endConnection(): void {
    this.closing = true;
    this.resumeForBody();
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
  }

  private send(record: Buffer): void {
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.write(record);
  }

  private meta(err: Error): Record<string, unknown> {
    const code = isGitFcgiError(err) ? err.code : undefined;
    return { peer: this.peer, ...(code === undefined ? {} : { code }), error: describeError(err) };
  }
}

const PEER_PROBE_INTERVAL_MS = 1000;
const EMPTY_STDERR = (requestId: number): Buffer => recordHeader(RecordType.STDERR, requestId, 0);

/** A record header with version 0: no FastCGI peer can accept it. */
const INVALID_RECORD = Buffer.alloc(8);
/** How often a request whose peer sent 'end' checks that the peer is still there. */
/** How long a cut-off connection may take to flush before it is destroyed. */
const CUT_OFF_GRACE_MS = 2000;

function clientGone(): GitFcgiError {
  return new GitFcgiError('ERR_CLIENT_ABORT', 'client closed the connection', { status: 499 });
}
