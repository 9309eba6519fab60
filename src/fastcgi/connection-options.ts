export type LogFn = (
  level: 'debug' | 'info' | 'warn' | 'error',
  message: string,
  meta?: Record<string, unknown>,
) => void;

export interface FastCgiConnectionOptions {
  /** Cap on the concatenated PARAMS stream of one request. */
  readonly maxParamsBytes: number;
  readonly log: LogFn;
  /** Reported as FCGI_MAX_CONNS in GET_VALUES_RESULT (default 1024). */
  readonly maxConns?: number;
  /**
   * Requests one connection may carry at once (multiplexed, as HAProxy's `option mpxs-conns`
   * sends them); more get END_REQUEST with FCGI_OVERLOADED. Reported as FCGI_MAX_REQS in
   * GET_VALUES_RESULT. Default 100.
   */
  readonly maxReqs?: number;
  /** Cap on STDIN that arrives before the end of PARAMS, across a connection's requests (default 1 MiB). */
  readonly maxEarlyStdinBytes?: number;
}

export const DEFAULT_MAX_EARLY_STDIN_BYTES = 1024 * 1024;
/**
 * Bounds what one connection holds: each request up to max_params_size of params and its
 * body's high-water mark (64 KiB) plus one socket read.
 */
export const DEFAULT_MAX_REQS = 100;

/** The GET_VALUES_RESULT pairs for the names asked: only those we know, in the order asked. */
export function getValuesAnswer(
  options: FastCgiConnectionOptions,
  asked: Iterable<string>,
): Array<[string, string]> {
  const known = new Map([
    ['FCGI_MAX_CONNS', String(options.maxConns ?? 1024)],
    ['FCGI_MAX_REQS', String(options.maxReqs ?? DEFAULT_MAX_REQS)],
    ['FCGI_MPXS_CONNS', '1'],
  ]);
  const answer: Array<[string, string]> = [];
  for (const name of asked) {
    const value = known.get(name);
    if (value !== undefined) answer.push([name, value]);
  }
  return answer;
}
