import { readFile } from 'node:fs/promises';
import { confPath } from './nginx-conf.js';

/** An nginx access-log format with what a timeline needs: when, how long, what, and which upstream(s). */
export const TIMELINE_FORMAT =
  'log_format timeline \'$msec $request_time $status "$upstream_status" "$upstream_addr" "$request_completion" $request_method $uri\';';

/** The server-level directive that writes `file` in TIMELINE_FORMAT. */
export const timelineLog = (file: string): string => `access_log ${confPath(file)} timeline;`;

export type RequestKind = 'info/refs' | 'upload-pack' | 'receive-pack' | 'other';

export interface LoggedRequest {
  /** ms since the epoch: nginx's $msec less $request_time */
  readonly start: number;
  readonly end: number;
  readonly status: number;
  /** One per upstream tried, in order ("502, 200" when nginx went on to the next). */
  readonly upstreamStatus: readonly string[];
  readonly upstreamAddr: readonly string[];
  /**
   * $request_completion. A FastCGI upstream that closes without END_REQUEST (a killed host)
   * still counts as complete for nginx: only the client can tell that response was cut short.
   */
  readonly complete: boolean;
  readonly method: string;
  readonly uri: string;
  readonly kind: RequestKind;
}

export function requestKind(uri: string): RequestKind {
  if (uri.endsWith('/info/refs')) return 'info/refs';
  if (uri.endsWith('/git-upload-pack')) return 'upload-pack';
  if (uri.endsWith('/git-receive-pack')) return 'receive-pack';
  return 'other';
}

const LINE = /^(\d+\.\d+) (\d+\.\d+) (\d+) "([^"]*)" "([^"]*)" "([^"]*)" (\S+) (.+)$/;

export async function readTimeline(file: string): Promise<LoggedRequest[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const list = (value: string | undefined): string[] =>
    value === undefined || value === '-' ? [] : value.split(/\s*,\s*/);
  return text.split('\n').flatMap((line) => {
    const m = LINE.exec(line);
    if (m === null) return [];
    const end = Math.round(Number(m[1]) * 1000);
    const uri = m[8] ?? '';
    return [
      {
        start: end - Math.round(Number(m[2]) * 1000),
        end,
        status: Number(m[3]),
        upstreamStatus: list(m[4]),
        upstreamAddr: list(m[5]),
        complete: m[6] === 'OK',
        method: m[7] ?? '',
        uri,
        kind: requestKind(uri),
      },
    ];
  });
}

/** Failed as the client saw it: an error status, or a response broken off. */
export const failedRequest = (r: LoggedRequest): boolean => r.status >= 500 || !r.complete;

/** `{ 'info/refs': 3, ... }` for the requests given. */
export function countByKind(requests: readonly LoggedRequest[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of requests) counts[r.kind] = (counts[r.kind] ?? 0) + 1;
  return counts;
}
