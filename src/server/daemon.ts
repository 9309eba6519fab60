import http from 'node:http';
import net from 'node:net';
import type { Config } from '../config/settings.js';
import type { Exchange, ExchangeHandler } from '../exchange.js';
import { GitFcgiError, describeError } from '../errors.js';
import { serveFastCgiConnection } from '../fastcgi/connection.js';
import type { Logger } from '../log.js';
import { bindFastCgi, type Bound } from './listen.js';
import { httpExchange } from './http-exchange.js';

export interface DaemonOptions {
  readonly config: Config;
  readonly handler: ExchangeHandler;
  readonly log: Logger;
}

/**
 * Owns the listeners and the set of requests in flight; knows nothing of what a request does.
 */
export class Daemon {
  private readonly fastcgi = net.createServer({ pauseOnConnect: false });
  private readonly http = http.createServer();
  private readonly bound: Bound[] = [];
  private readonly active = new Set<AbortController>();
  private readonly idleWaiters: Array<() => void> = [];

  constructor(private readonly options: DaemonOptions) {
    const track: ExchangeHandler = (exchange) => {
      this.options.handler(this.tracked(exchange));
    };
    this.fastcgi.on('connection', (socket) => {
      serveFastCgiConnection(socket, track, {
        maxParamsBytes: options.config.maxParamsBytes,
        log: (level, message, meta) => options.log[level](message, meta),
      });
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
   * Wraps the exchange so the request leaves the active set exactly when its response ends,
   * and so a stop that runs out of patience can abort it.
   */
  private tracked(exchange: Exchange): Exchange {
    // One controller per request, aborted by the client's signal or by a stop: cheaper than
    // AbortSignal.any(), which registers weak references and a finalizer for every request.
    const controller = new AbortController();
    const forward = (): void => controller.abort(exchange.signal.reason);
    if (exchange.signal.aborted) forward();
    else exchange.signal.addEventListener('abort', forward, { once: true });
    const done = (): void => {
      exchange.signal.removeEventListener('abort', forward);
      if (this.active.delete(controller) && this.active.size === 0) {
        for (const wake of this.idleWaiters.splice(0)) wake();
      }
    };
    this.active.add(controller);
    const { response } = exchange;
    return {
      params: exchange.params,
      body: exchange.body,
      signal: controller.signal,
      transport: exchange.transport,
      response: {
        get headersSent() {
          return response.headersSent;
        },
        writeHead: (status, headers) => response.writeHead(status, headers),
        write: (chunk) => response.write(chunk),
        onceDrain: (cb) => response.onceDrain(cb),
        end: () => {
          response.end();
          done();
        },
        abort: (reason) => {
          response.abort(reason);
          done();
        },
      },
    };
  }

  get activeRequests(): number {
    return this.active.size;
  }

  async start(): Promise<string[]> {
    const { config } = this.options;
    const listening: string[] = [];
    if (config.listen !== null || config.http === null) {
      const bound = await bindFastCgi(this.fastcgi, config.listen, config.socketMode);
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
   * Stops accepting and waits up to `timeoutMs` for the requests in flight; those still running
   * then are aborted (their backends killed). Returns how many had to be aborted.
   */
  async stop(timeoutMs: number): Promise<number> {
    this.fastcgi.close();
    this.http.close();
    this.http.closeIdleConnections();
    for (const b of this.bound) b.cleanup();
    if (this.active.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.idleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const left = this.active.size;
    for (const request of this.active) {
      request.abort(new GitFcgiError('ERR_SHUTDOWN', 'server shutting down', { status: 503 }));
    }
    return left;
  }
}
