import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Exchange, HeaderList, ResponseSink } from '../exchange.js';
import { GitFcgiError } from '../errors.js';

/**
 * The quick-start HTTP listener speaks to the same request handler as FastCGI: it builds the
 * params nginx would send (`include fastcgi_params` + PATH_INFO $uri + HTTP_* headers).
 */
export function httpParams(req: IncomingMessage): Map<string, string> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  const params = new Map<string, string>([
    ['REQUEST_METHOD', req.method ?? 'GET'],
    ['REQUEST_URI', url],
    ['DOCUMENT_URI', rawPath],
    ['QUERY_STRING', q === -1 ? '' : url.slice(q + 1)],
    ['SERVER_PROTOCOL', `HTTP/${req.httpVersion}`],
    ['REMOTE_ADDR', req.socket.remoteAddress ?? ''],
    ['REMOTE_PORT', String(req.socket.remotePort ?? '')],
    ['SERVER_ADDR', req.socket.localAddress ?? ''],
    ['SERVER_PORT', String(req.socket.localPort ?? '')],
    ['CONTENT_TYPE', req.headers['content-type'] ?? ''],
    ['CONTENT_LENGTH', req.headers['content-length'] ?? ''],
  ]);
  // Like nginx's $uri: percent-decoded once. A malformed escape leaves PATH_INFO unset (400).
  try {
    params.set('PATH_INFO', decodeURIComponent(rawPath));
  } catch {
    params.delete('DOCUMENT_URI');
  }
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = `HTTP_${(raw[i] ?? '').toUpperCase().replace(/-/g, '_')}`;
    if (name === 'HTTP_CONTENT_TYPE' || name === 'HTTP_CONTENT_LENGTH') continue;
    const prev = params.get(name);
    params.set(name, prev === undefined ? (raw[i + 1] ?? '') : `${prev}, ${raw[i + 1] ?? ''}`);
  }
  return params;
}

class HttpSink implements ResponseSink {
  private finished = false;

  constructor(private readonly res: ServerResponse) {}

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  writeHead(status: number, headers: HeaderList): void {
    const flat: string[] = [];
    for (const [name, value] of headers) flat.push(name, value);
    this.res.writeHead(status, flat);
  }

  write(chunk: Buffer, flushed?: () => void): boolean {
    return flushed === undefined ? this.res.write(chunk) : this.res.write(chunk, () => flushed());
  }

  get pending(): number {
    return this.res.writableLength;
  }

  onceDrain(cb: () => void): void {
    if (!this.res.writableNeedDrain) process.nextTick(cb);
    else this.res.once('drain', cb);
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.res.end();
  }

  abort(reason: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.res.destroy(reason);
  }
}

export function httpExchange(req: IncomingMessage, res: ServerResponse): Exchange {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) {
      controller.abort(new GitFcgiError('ERR_CLIENT_ABORT', 'client closed the connection'));
    }
  });
  return {
    params: httpParams(req),
    body: req,
    response: new HttpSink(res),
    signal: controller.signal,
    transport: 'http',
  };
}
