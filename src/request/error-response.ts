import type { HeaderList, ResponseSink } from '../exchange.js';

/** git http-backend's hdr_nocache(): on its answers and refusals alike. */
export const NO_CACHE_HEADERS: HeaderList = [
  ['Expires', 'Fri, 01 Jan 1980 00:00:00 GMT'],
  ['Pragma', 'no-cache'],
  ['Cache-Control', 'no-cache, max-age=0, must-revalidate'],
];

/**
 * A refusal written as git http-backend writes its own (not_found(), forbidden(),
 * die_webcgi()): the status, the headers the status needs (Allow, WWW-Authenticate,
 * Retry-After), the no-cache headers, and no body. git prints a text body as `remote:` lines,
 * where git http-backend sends none; the reason is in git-fcgi's log.
 */
export function sendError(sink: ResponseSink, status: number, extraHeaders: HeaderList = []): void {
  sink.writeHead(status, [...extraHeaders, ...NO_CACHE_HEADERS]);
  sink.end();
}
