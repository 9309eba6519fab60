import type { Exchange } from '../exchange.js';
import { CONTENT_TYPES, renderStatus, statusFormat } from './status-format.js';
import type { StatusSnapshot } from './status.js';

export interface BuiltinPaths {
  readonly pingPath: string | null;
  readonly statusPath: string | null;
}

/** The path the client asked for, before any git-specific interpretation. */
function requestPath(params: ReadonlyMap<string, string>): string[] {
  const requestUri = params.get('REQUEST_URI') ?? '';
  const q = requestUri.indexOf('?');
  return [
    params.get('DOCUMENT_URI'),
    params.get('PATH_INFO'),
    q === -1 ? requestUri : requestUri.slice(0, q),
  ].filter((p): p is string => p !== undefined && p !== '');
}

/**
 * Answers the ping and status paths (php-fpm's ping.path and pm.status_path) without running
 * anything. Returns false when the request is for neither, so it goes to the git handler.
 */
export function answerBuiltin(
  exchange: Exchange,
  paths: BuiltinPaths,
  snapshot: () => StatusSnapshot,
): boolean {
  const { params } = exchange;
  const candidates = requestPath(params);
  const is = (path: string | null): boolean => path !== null && candidates.includes(path);
  let contentType: string;
  let text: string;
  if (is(paths.pingPath)) {
    contentType = CONTENT_TYPES.text;
    text = 'pong\n';
  } else if (is(paths.statusPath)) {
    const format = statusFormat(params.get('QUERY_STRING') ?? '');
    contentType = CONTENT_TYPES[format];
    text = renderStatus(snapshot(), format);
  } else {
    return false;
  }
  exchange.body.resume();
  const method = params.get('REQUEST_METHOD') ?? 'GET';
  const allowed = method === 'GET' || method === 'HEAD';
  const body = Buffer.from(allowed ? text : '405 Method Not Allowed\n');
  exchange.response.writeHead(allowed ? 200 : 405, [
    ['Content-Type', allowed ? contentType : CONTENT_TYPES.text],
    ['Content-Length', String(body.length)],
    ['Cache-Control', 'no-store'],
    ...(allowed ? [] : [['Allow', 'GET, HEAD'] as const]),
  ]);
  if (method !== 'HEAD') exchange.response.write(body);
  exchange.response.end();
  return true;
}
