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
  /** Reported as FCGI_MAX_REQS in GET_VALUES_RESULT (default 1024). */
  readonly maxReqs?: number;
  /** Cap on STDIN that arrives before the end of PARAMS (default 1 MiB). */
  readonly maxEarlyStdinBytes?: number;
}

export const DEFAULT_MAX_EARLY_STDIN_BYTES = 1024 * 1024;

/** The GET_VALUES_RESULT pairs for the names asked: only those we know, in the order asked. */
export function getValuesAnswer(
  options: FastCgiConnectionOptions,
  asked: Iterable<string>,
): Array<[string, string]> {
  const known = new Map([
    ['FCGI_MAX_CONNS', String(options.maxConns ?? 1024)],
    ['FCGI_MAX_REQS', String(options.maxReqs ?? 1024)],
    ['FCGI_MPXS_CONNS', '0'],
  ]);
  const answer: Array<[string, string]> = [];
  for (const name of asked) {
    const value = known.get(name);
    if (value !== undefined) answer.push([name, value]);
  }
  return answer;
}
