import { PassThrough, type Readable } from 'node:stream';
import type { GitInstalls } from '../advertisement/git-install.js';
import { GitFcgiError, isGitFcgiError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import type { Logger } from '../log.js';
import type { Repository } from '../request/locate-repository.js';
import type { FetchAnswer, FetchCapture, FetchResponseCache } from './fetch-cache.js';
import { fetchKey, planFetch } from './fetch-key.js';

export interface FetchContext {
  readonly installs: GitInstalls;
  readonly backend: string;
  readonly repository: Repository;
  /** The environment git http-backend will run in. */
  readonly env: Readonly<Record<string, string>>;
  readonly log: Logger;
}

/** What the fetch cache makes of one fetch. */
export interface FetchUse {
  /** The request as the backend must read it: its body was read here and is replayed. */
  readonly exchange: Exchange;
  /** The kept answer (at once, or after an identical request's run): no backend runs. */
  readonly answer?: FetchAnswer & { readonly how: 'hit' | 'coalesced' };
  /** Else the run whose answer may be kept, or null when it may not. */
  readonly capture: FetchCapture | null;
}

/**
 * For a fetch (upload-pack POST): null when the cache does not apply (off, or not everything it
 * depends on is known: fetch-key.ts). Else reads the body (small: MAX_FETCH_BODY_BYTES), and
 * gives the kept answer, or waits for an identical request git is answering now and gives its
 * answer, or sets up this request's run to be kept. Rejects when the client leaves meanwhile.
 */
export async function fetchFromCache(
  exchange: Exchange,
  cache: FetchResponseCache | null,
  context: FetchContext,
): Promise<FetchUse | null> {
  if (cache === null) return null;
  const { repository, env, log } = context;
  const plan = planFetch(context.installs, context.backend, repository, env);
  if (plan.dependsOn === null) {
    log.debug('fetch cache not used', { reason: plan.reason });
    return null;
  }
  const read = await readBody(exchange.body, plan.bodyBytes, exchange.signal);
  const replayed: Exchange = { ...exchange, body: replay(read.chunks, read.rest) };
  // A body other than announced is git http-backend's to judge, uncached.
  if (read.rest !== null || read.bytes !== plan.bodyBytes) return { exchange: replayed, capture: null };
  const key = fetchKey(context.backend, repository, env, Buffer.concat(read.chunks, read.bytes));
  const kept = cache.lookup(key);
  if (kept !== null) {
    return { exchange: replayed, answer: { ...kept, how: 'hit' }, capture: null };
  }
  const running = cache.inFlight(key);
  if (running === undefined) {
    return { exchange: replayed, capture: cache.capture(key, repository.gitDir, plan.dependsOn) };
  }
  // git is answering this very request for another client: its answer, once kept, is this one's.
  if (await untilAborted(running, exchange.signal)) {
    const answer = cache.lookup(key);
    if (answer !== null) {
      return { exchange: replayed, answer: { ...answer, how: 'coalesced' }, capture: null };
    }
  }
  // Not kept (too large, failed, the repository changed): this request runs git itself.
  return { exchange: replayed, capture: null };
}

/**
 * The body up to `expected` bytes and one more (so that a longer one shows); `rest` is the
 * stream still to be read when it was longer.
 */
async function readBody(
  body: Readable,
  expected: number,
  signal: AbortSignal,
): Promise<{ chunks: Buffer[]; bytes: number; rest: Readable | null }> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      bytes += chunk.length;
      if (bytes > expected) {
        cleanup();
        body.pause();
        resolve({ chunks, bytes, rest: body });
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ chunks, bytes, rest: null });
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onAbort = (): void => {
      cleanup();
      reject(abortError(signal.reason));
    };
    if (signal.aborted) {
      reject(abortError(signal.reason));
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    if (body.readableEnded) queueMicrotask(onEnd);
    else body.resume();
  });
}

/** The bytes read, then whatever of `rest` is left, as one stream with backpressure. */
function replay(chunks: readonly Buffer[], rest: Readable | null): Readable {
  const out = new PassThrough();
  for (const chunk of chunks) out.write(chunk);
  if (rest === null) out.end();
  else {
    rest.once('error', (err) => out.destroy(err));
    rest.pipe(out);
  }
  return out;
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortError(signal.reason));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

function abortError(reason: unknown): GitFcgiError {
  return isGitFcgiError(reason)
    ? reason
    : new GitFcgiError('ERR_CLIENT_ABORT', 'client went away', { status: 499, cause: reason });
}
