/** What git-fcgi's JSON log (`format = json`, level debug) says about one request. */
export interface LoggedRequest {
  /** The access line, once the request has finished. */
  readonly access?: Readonly<Record<string, unknown>>;
  /** Each program started for it (`backend started ... backend=PATH`), in order. */
  readonly backends: readonly string[];
}

/** The requests in a JSON log, by id (`req`); lines that are not JSON objects are skipped. */
export function requestsInLog(text: string): Map<string, LoggedRequest> {
  const found = new Map<string, { access?: Record<string, unknown>; backends: string[] }>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof entry.req !== 'string') continue;
    let request = found.get(entry.req);
    if (request === undefined) found.set(entry.req, (request = { backends: [] }));
    if (entry.message === 'access') request.access = entry;
    else if (entry.message === 'backend started' && typeof entry.backend === 'string')
      request.backends.push(entry.backend);
  }
  return found;
}

/** How a ref advertisement was answered. */
export type AnsweredBy =
  'direct' | 'direct, then git http-backend' | 'git http-backend' | 'cache' | 'nothing';

/** From the programs a request started: `directProgram` is the direct run's (`.../git-core/git`). */
export function answeredBy(request: LoggedRequest, directProgram: string): AnsweredBy {
  if (request.access?.cache === 'hit') return 'cache';
  const direct = request.backends.includes(directProgram);
  const backend = request.backends.some((program) => program !== directProgram);
  if (direct) return backend ? 'direct, then git http-backend' : 'direct';
  return backend ? 'git http-backend' : 'nothing';
}
