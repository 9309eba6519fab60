import { STATUS_CODES } from 'node:http';
import type { ResponseSink } from '../exchange.js';

/**
 * A short plain-text error page. The reason logged for operators (paths, errno) stays in the
 * log; the client only learns the status.
 */
export function sendError(
  sink: ResponseSink,
  status: number,
  extraHeaders: ReadonlyArray<readonly [string, string]> = [],
): void {
  const text = `${status} ${STATUS_CODES[status] ?? 'Error'}\n`;
  sink.writeHead(status, [
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Content-Length', String(Buffer.byteLength(text))],
    ['Cache-Control', 'no-cache'],
    ...extraHeaders,
  ]);
  sink.write(Buffer.from(text));
  sink.end();
}
