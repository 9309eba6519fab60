import type { Socket } from 'node:net';
import { GitFcgiError, describeError, isGitFcgiError } from '../errors.js';
import type { ExchangeHandler } from '../exchange.js';
import { FCGI_KEEP_CONN, ProtocolStatus, RecordType, Role } from './constants.js';
import {
  DEFAULT_MAX_EARLY_STDIN_BYTES,
  DEFAULT_MAX_REQS,
  getValuesAnswer,
  type FastCgiConnectionOptions,
} from './connection-options.js';
import { EarlyStdinBudget, FastCgiRequest } from './fastcgi-request.js';
import { FastCgiResponse } from './fastcgi-response.js';
import { decodeParams } from './name-value.js';
import { RecordParser } from './record-parser.js';
import { endRequestRecord, getValuesResult, recordHeader, unknownTypeRecord } from './record-writer.js';

export type { FastCgiConnectionOptions, LogFn } from './connection-options.js';

/** What the daemon may ask of a connection it has accepted. */
export interface FastCgiConnectionHandle {
  /**
   * Takes no request after the ones in progress: a connection idle between requests
   * (FCGI_KEEP_CONN) is ended now, one with requests in progress once they have been answered
   * (a request multiplexed onto it meanwhile is still served: it was sent before the front end
   * could know). One that has not sent its first request yet was accepted to be served: it gets
   * `firstRequestGraceMs` to send it.
   */
  drain(firstRequestGraceMs: number): void;
}

/**
 * Serves FastCGI responder requests on an accepted socket until it closes: one after the other
 * with FCGI_KEEP_CONN (nginx, Apache, HAProxy's `option keep-conn`), or several at once
 * (HAProxy's `option mpxs-conns`), up to `maxReqs`.
 */
export function serveFastCgiConnection(
  socket: Socket,
  handler: ExchangeHandler,
  options: FastCgiConnectionOptions,
): FastCgiConnectionHandle {
  return new FastCgiConnection(socket, handler, options);
}

class FastCgiConnection implements FastCgiConnectionHandle {
  // STDIN may come in pieces (the parser's `last`); the body is a byte stream, so they are
  // passed on as they come. A piece is never empty: only an empty record ends the body.
  private readonly parser = new RecordParser((type, id, content) => this.onRecord(type, id, content));
  private readonly peer: string;
  private readonly maxReqs: number;
  private readonly earlyStdin: EarlyStdinBudget;
  private readonly requests = new Map<number, FastCgiRequest>();
  /**
   * Requests whose body is over its high-water mark. FastCGI has no flow control per request:
   * the only way to stop one sender is to stop reading the socket, for every request on it. So
   * each request may buffer up to its body's mark, and the socket is paused while any is over it.
   */
  private readonly fullBodies = new Set<FastCgiRequest>();
  private paused = false;
  private peerEnded = false;
  /** A request came without FCGI_KEEP_CONN: close once none is left. */
  private closeWhenIdle = false;
  /** Whether a BEGIN_REQUEST ever arrived. */
  private begun = false;
  /** Set once we have decided to close: later records are ignored. */
  private closing = false;
  private peerProbe: NodeJS.Timeout | undefined;
  /** A response's connection is lent to a splice: records of our own wait in `held`. */
  private lent = false;
  private readonly held: Buffer[] = [];

  constructor(
    private readonly socket: Socket,
    private readonly handler: ExchangeHandler,
    private readonly options: FastCgiConnectionOptions,
  ) {
    this.peer = socket.remoteAddress === undefined ? 'unix' : `${socket.remoteAddress}:${socket.remotePort}`;
    this.maxReqs = options.maxReqs ?? DEFAULT_MAX_REQS;
    this.earlyStdin = new EarlyStdinBudget(options.maxEarlyStdinBytes ?? DEFAULT_MAX_EARLY_STDIN_BYTES);
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
      for (const req of [...this.requests.values()]) {
        req.abort(error);
        this.finish(req);
      }
      this.socket.destroy();
    }
  }

  private onRecord(type: number, id: number, content: Buffer): void {
    if (this.closing) return;
    const req = this.requests.get(id);
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
        if (req && !req.addStdin(content) && this.requests.get(id) === req) this.bodyFull(req);
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
    if (this.closeWhenIdle || this.closing) return;
    this.closeWhenIdle = true;
    if (this.requests.size > 0) return;
    if (this.begun) return this.endConnection();
    setTimeout(() => {
      if (!this.begun) this.socket.destroy();
    }, firstRequestGraceMs).unref();
  }

  private onBegin(id: number, role: number, keepConn: boolean): void {
    this.begun = true;
    if (this.requests.has(id))
      throw new GitFcgiError('ERR_FCGI_RECORD', `BEGIN_REQUEST for active request ${id}`);
    if (!keepConn) this.closeWhenIdle = true;
    if (role !== Role.RESPONDER) return this.refuse(id, ProtocolStatus.UNKNOWN_ROLE);
    if (this.requests.size >= this.maxReqs) {
      this.options.log('warn', 'FastCGI request refused: too many on one connection', {
        peer: this.peer,
        max: this.maxReqs,
      });
      return this.refuse(id, ProtocolStatus.OVERLOADED);
    }
    const limits = { maxParamsBytes: this.options.maxParamsBytes, earlyStdin: this.earlyStdin };
    const req: FastCgiRequest = new FastCgiRequest(id, keepConn, limits, () => this.bodyWantsMore(req));
    this.requests.set(id, req);
  }

  /** A request we do not take: END_REQUEST with why, and the connection goes on (or ends, if idle). */
  private refuse(id: number, protocolStatus: number): void {
    this.send(endRequestRecord(id, 0, protocolStatus));
    this.closeIfIdle();
  }

  private start(req: FastCgiRequest, params: Map<string, string>): void {
    const response = new FastCgiResponse(this.socket, req.id, {
      onEnd: () => this.onResponseEnd(req),
      onAbort: (reason, owed) => {
        req.abort(reason);
        this.finish(req);
        this.cutOff(req, owed);
      },
      canLend: () => this.requests.size === 1 && this.requests.get(req.id) === req && !this.closing,
      lent: (out) => {
        this.lent = out;
        if (!out) for (const record of this.held.splice(0)) this.send(record);
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

  private bodyFull(req: FastCgiRequest): void {
    this.fullBodies.add(req);
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /** The handler reads again (`_read`), or the request is gone. */
  private bodyWantsMore(req: FastCgiRequest): void {
    this.fullBodies.delete(req);
    if (this.paused && this.fullBodies.size === 0) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private onPeerEnd(): void {
    this.peerEnded = true;
    let complete = false;
    // Requests the peer had not finished sending cannot be finished now.
    for (const req of [...this.requests.values()]) {
      if (req.stdinDone && req.started) complete = true;
      else this.abortRequest(req, clientGone());
    }
    if (this.requests.size === 0) return this.endConnection();
    if (complete) this.probePeer();
  }

  /**
   * After 'end' only a write tells a half-close from a full close, and the backend may write
   * nothing for minutes (pack-objects counting a big repository, a request queued for a slot).
   * So an empty STDERR record is written now and every second: it ends a stream we never use,
   * harmless to a peer still reading, and fails on a closed one (EPIPE -> 'close' -> abort).
   * Over a UNIX socket the first write fails; over TCP the first draws a reset, the next fails.
   */
  private probePeer(): void {
    const probe = (): void => {
      const req = this.requests.values().next().value;
      if (req === undefined || this.closing) return clearInterval(this.peerProbe);
      this.send(EMPTY_STDERR(req.id));
    };
    probe();
    this.peerProbe = setInterval(probe, PEER_PROBE_INTERVAL_MS);
    this.peerProbe.unref();
  }

  private onClose(): void {
    this.closing = true;
    for (const req of [...this.requests.values()]) {
      req.abort(clientGone());
      this.finish(req);
    }
  }

  /**
   * Aborts the handler's signal; the handler then ends the response. A request whose handler
   * has not started yet is answered here.
   */
  private abortRequest(req: FastCgiRequest, reason: GitFcgiError): void {
    req.abort(reason);
    if (!req.started && this.requests.get(req.id) === req) {
      this.send(endRequestRecord(req.id, 0, ProtocolStatus.REQUEST_COMPLETE));
      this.onResponseEnd(req);
    }
  }

  /** END_REQUEST has been written: close once nothing is left, or wait for the next BEGIN_REQUEST. */
  private onResponseEnd(req: FastCgiRequest): void {
    if (this.requests.get(req.id) !== req) return;
    this.finish(req);
    this.closeIfIdle();
  }

  private closeIfIdle(): void {
    if (this.requests.size === 0 && (this.closeWhenIdle || this.peerEnded)) this.endConnection();
  }

  /** Forgets the request; whatever it did not read of STDIN is discarded from now on. */
  private finish(req: FastCgiRequest): void {
    if (this.requests.get(req.id) !== req) return;
    this.requests.delete(req.id);
    if (this.requests.size === 0) clearInterval(this.peerProbe);
    req.discardBody();
    this.bodyWantsMore(req);
  }

  /**
   * Ends the connection so that the front end fails the response of `failed`. nginx takes a
   * close without END_REQUEST as the normal end of a response without Content-Length, and would
   * hand the client a truncated body as complete; a record it must reject makes it break the
   * transfer. FastCGI has no way to fail one request of a multiplexed connection alone, so
   * the others on it fail with it: a visible error rather than a truncated clone taken as whole.
   */
  private cutOff(failed: FastCgiRequest, owed?: Buffer | 'broken'): void {
    this.closing = true;
    this.held.length = 0;
    if (this.socket.destroyed || this.socket.writableEnded || owed === 'broken') this.socket.destroy();
    else {
      // After a splice cut short inside a record: the rest of that record first.
      this.socket.end(owed === undefined ? INVALID_RECORD : Buffer.concat([owed, INVALID_RECORD]));
      lingerUntilFlushed(this.socket);
    }
    // Only now, with nothing more to be written, may their handlers end their responses.
    if (this.requests.size === 0) return;
    this.options.log('warn', 'FastCGI connection cut off with other requests on it', {
      peer: this.peer,
      failed: failed.id,
      others: this.requests.size,
    });
    const reason = new GitFcgiError(
      'ERR_CLIENT_ABORT',
      `connection cut off: request ${failed.id} on it failed after its headers`,
      { status: 499 },
    );
    for (const req of [...this.requests.values()]) {
      req.abort(reason);
      this.finish(req);
    }
  }

  /** Ends our side; the socket keeps reading (and discarding) until the peer closes. */
  private endConnection(): void {
    this.closing = true;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.end();
  }

  private send(record: Buffer): void {
    if (this.lent) this.held.push(record);
    else if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.write(record);
  }

  private meta(err: Error): Record<string, unknown> {
    const code = isGitFcgiError(err) ? err.code : undefined;
    return { peer: this.peer, ...(code === undefined ? {} : { code }), error: describeError(err) };
  }
}

/** How often a request whose peer sent 'end' checks that the peer is still there. */
const PEER_PROBE_INTERVAL_MS = 1000;
const EMPTY_STDERR = (requestId: number): Buffer => recordHeader(RecordType.STDERR, requestId, 0);

/** A record header with version 0: no FastCGI peer can accept it. */
const INVALID_RECORD = Buffer.alloc(8);
/** How long a cut-off connection is kept once its last bytes are out, for the peer to read them. */
const CUT_OFF_GRACE_MS = 2000;
/**
 * How long a cut-off connection waits for a front end that reads nothing (its client stopped
 * reading) to take the invalid record: nginx's default send_timeout.
 */
const CUT_OFF_LINGER_MS = 60_000;

/**
 * A cut-off connection is destroyed only once the invalid record has reached the kernel (and
 * CUT_OFF_GRACE_MS later), or when the front end closes it. Destroyed with the record still in
 * Node's buffer, the front end would read the bytes before it and then an ordinary end of the
 * connection, which nginx takes as the end of the response: a short body handed on as whole.
 * Past CUT_OFF_LINGER_MS it is destroyed anyway, over TCP with a reset, which nginx takes as an
 * error.
 */
function lingerUntilFlushed(socket: Socket): void {
  const grace = (): void => {
    clearTimeout(linger);
    setTimeout(() => socket.destroy(), CUT_OFF_GRACE_MS).unref();
  };
  const linger = setTimeout(() => {
    socket.off('finish', grace);
    if (socket.remoteAddress !== undefined) socket.resetAndDestroy();
    else socket.destroy();
  }, CUT_OFF_LINGER_MS);
  linger.unref();
  socket.once('finish', grace);
  socket.once('close', () => clearTimeout(linger));
}

/**
 * nginx closes the connection both when its client leaves and when it gives up on a request
 * itself (client_max_body_size, fastcgi_read_timeout): git-fcgi cannot tell which, nginx's
 * error log can.
 */
function clientGone(): GitFcgiError {
  return new GitFcgiError(
    'ERR_CLIENT_ABORT',
    'the front end closed the connection: the client left, or the front end gave up (its log says why)',
    { status: 499 },
  );
}
