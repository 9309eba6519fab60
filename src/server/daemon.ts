import http from 'node:http';
import net from 'node:net';
import type { Config } from '../config/settings.js';
import type { Exchange, ExchangeHandler, RequestHandler } from '../exchange.js';
import { GitFcgiError, describeError } from '../errors.js';
import { serveFastCgiConnection, type FastCgiConnectionHandle } from '../fastcgi/connection.js';
import type { Logger } from '../log.js';
import { answerBuiltin } from './builtin-pages.js';
import { clientFilter } from './client-filter.js';
import { bindFastCgi, type Bound } from './listen.js';
import { httpExchange } from './http-exchange.js';
import type { NumericOwner } from './privileges.js';
import type { StatusSnapshot } from './status.js';

export interface DaemonOptions {
  readonly config: Config;
  readonly handler: RequestHandler;
  readonly log: Logger;
  /** Live figures for the status page. */
  readonly status: () => StatusSnapshot;
  /** Numeric owner of the UNIX socket (socket_owner, resolved). */
  readonly socketOwner?: NumericOwner | null;
}

/**
 * How long a connection accepted before a stop may take to send its first request. nginx sends
 * it as soon as it has connected; anything slower is not a front end waiting for an answer.
 */
const FIRST_REQUEST_GRACE_MS = 5000;

/**
 * Owns the listeners and the set of requests in flight; knows nothing of what a request does.
 */
export class Daemon {
  private readonly fastcgi = net.createServer({ pauseOnConnect: false });
  private readonly http = http.createServer();
  private readonly bound: Bound[] = [];
  private readonly active = new Set<AbortController>();
  /** Accepted FastCGI connections until they close: a stop serves what they bring. */
  private readonly connections = new Map<net.Socket, FastCgiConnectionHandle>();
  private stopping = false;
  private readonly idleWaiters: Array<() => void> = [];
  private config: Config;
  private allowed: (socket: net.Socket) => boolean;
  /** Requests that arrived between binding and open() (privileges not dropped yet): held. */
  private opened = false;
  private readonly early: Exchange[] = [];
  private readonly dispatch: ExchangeHandler;

  constructor(private readonly options: DaemonOptions) {
    this.config = options.config;
    this.allowed = clientFilter(options.config.allowedClients);
    const track: ExchangeHandler = (exchange) => {
      if (!this.opened) {
        this.early.push(exchange);
        return;
      }
      // Ping and status are the daemon's own: no slot, no backend, no path validation.
      if (answerBuiltin(exchange, this.config, options.status)) return;
      const { exchange: tracked, handled } = this.tracked(exchange);
      void this.options.handler(tracked).then(handled, handled);
    };
    this.dispatch = track;
    this.fastcgi.on('connection', (socket) => {
      if (!this.allowed(socket)) {
        options.log.warn('connection refused: client not in allowed_clients', {
          addr: socket.remoteAddress,
        });
        socket.destroy();
        return;
      }
      const connection = serveFastCgiConnection(socket, track, {
        maxParamsBytes: this.config.maxParamsBytes,
        log: (level, message, meta) => options.log[level](message, meta),
      });
      this.connections.set(socket, connection);
      socket.once('close', () => {
        this.connections.delete(socket);
        this.wakeIfIdle();
      });
      if (this.stopping) connection.drain(FIRST_REQUEST_GRACE_MS);
    });
    this.fastcgi.on('error', (err) =>
      options.log.error('FastCGI listener error', { reason: describeError(err) }),
    );
    this.http.on('request', (req, res) => track(httpExchange(req, res)));
    this.http.on('clientError', (_err, socket) => socket.destroy());
    // Long fetches and pushes are normal: timeouts are ours (idle_timeout), not Node's defaults.
    this.http.requestTimeout = 0;
    this.http.headersTimeout = 60_000;
    this.http.keepAliveTimeout = 5_000;
  }

  /**
   * Wraps the exchange so the request leaves the active set once its response has ended *and*
   * its handler has finished (the backend reaped, the access line written), and so a stop that
   * runs out of patience can abort it.
   */
  private tracked(exchange: Exchange): { exchange: Exchange; handled: () => void } {
    // One controller per request, aborted by the client's signal or by a stop: cheaper than
    // AbortSignal.any(), which registers weak references and a finalizer for every request.
    const controller = new AbortController();
    const forward = (): void => controller.abort(exchange.signal.reason);
    if (exchange.signal.aborted) forward();
    else exchange.signal.addEventListener('abort', forward, { once: true });
    let pending = 2; // the response, the handler
    let responseDone = false;
    const settle = (): void => {
      if (--pending > 0) return;
      exchange.signal.removeEventListener('abort', forward);
      if (this.active.delete(controller)) this.wakeIfIdle();
    };
    const done = (): void => {
      if (responseDone) return;
      responseDone = true;
      settle();
    };
    this.active.add(controller);
    const { response } = exchange;
    return {
      handled: settle,
      exchange: {
        params: exchange.params,
        body: exchange.body,
        signal: controller.signal,
        transport: exchange.transport,
        response: {
          get headersSent() {
            return response.headersSent;
          },
          writeHead: (status, headers) => response.writeHead(status, headers),
          write: (chunk, flushed) => response.write(chunk, flushed),
          get pending() {
            return response.pending;
          },
          onceDrain: (cb) => response.onceDrain(cb),
          end: () => {
            response.end();
            done();
          },
          abort: (reason) => {
            response.abort(reason);
            done();
          },
          ...(response.lend === undefined ? {} : { lend: response.lend.bind(response) }),
        },
      },
    };
  }

  get activeRequests(): number {
    return this.active.size;
  }

  /**
   * Takes new settings for what follows (connections, ping/status, allowed_clients). Listen
   * addresses stay as bound: changing them needs a restart.
   */
  reconfigure(config: Config): void {
    this.config = config;
    this.allowed = clientFilter(config.allowedClients);
  }

  /**
   * Starts handling requests; until then they wait. The first listener accepts while the next
   * is still being bound, and nothing may run before the privileges are dropped.
   */
  open(): void {
    this.opened = true;
    for (const exchange of this.early.splice(0)) this.dispatch(exchange);
  }

  async start(): Promise<string[]> {
    const { config } = this;
    const listening: string[] = [];
    if (config.listen !== null || config.http === null) {
      const bound = await bindFastCgi(
        this.fastcgi,
        config.listen,
        config.socketMode,
        this.options.socketOwner ?? null,
      );
      this.bound.push(bound);
      listening.push(`fastcgi ${bound.description}`);
    }
    if (config.http !== null) {
      const { host, port } = config.http;
      await new Promise<void>((resolve, reject) => {
        this.http.once('error', reject);
        this.http.listen(port, host, () => {
          this.http.removeListener('error', reject);
          resolve();
        });
      });
      const addr = this.http.address();
      const actualPort = typeof addr === 'object' && addr !== null ? addr.port : port;
      listening.push(`http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`);
    }
    return listening;
  }

  /**
   * Stops accepting and waits up to `timeoutMs` for the requests in flight and for those on
   * connections already accepted; those still running then are aborted (their backends
   * killed). Returns how many had to be aborted.
   *
   * Connections not yet accepted stay in the listening socket's backlog. Under socket
   * activation systemd holds that socket, so the next git-fcgi serves them: a restart loses no
   * request. Every connection accepted here is served here, even one whose request had not
   * arrived yet when the stop began; connections kept open between requests are closed.
   */
  async stop(timeoutMs: number): Promise<number> {
    this.stopping = true;
    this.fastcgi.close();
    for (const connection of this.connections.values()) {
      connection.drain(Math.min(timeoutMs, FIRST_REQUEST_GRACE_MS));
    }
    this.http.close();
    this.http.closeIdleConnections();
    for (const b of this.bound) b.cleanup();
    await this.idle(timeoutMs);
    const left = this.active.size;
    for (const request of this.active) {
      request.abort(new GitFcgiError('ERR_SHUTDOWN', 'server shutting down', { status: 503 }));
    }
    // Aborted requests still kill and reap their backends and log their outcome: give them the
    // kill grace period (SIGTERM, then SIGKILL) and a second more.
    await this.idle(this.config.killGraceMs + 1000);
    return left;
  }

  private get isIdle(): boolean {
    return this.active.size === 0 && this.connections.size === 0;
  }

  private wakeIfIdle(): void {
    if (this.isIdle) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  /** Resolves when no request is in flight and no FastCGI connection open, or after `timeoutMs`. */
  private idle(timeoutMs: number): Promise<void> {
    if (this.isIdle) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
