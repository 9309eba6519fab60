import assert from 'node:assert/strict';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { isLocalFilesystem } from '../../../src/advertisement/depends-on.js';
import { GitFcgiError, isGitFcgiError } from '../../../src/errors.js';
import { FetchResponseCache } from '../../../src/fetch-cache/fetch-cache.js';
import { fetchKey } from '../../../src/fetch-cache/fetch-key.js';
import { fetchFromCache, type FetchContext, type FetchUse } from '../../../src/fetch-cache/fetch-use.js';
import { suiteCleanup } from '../../helpers/cleanup.js';
import { withDeadline } from '../../helpers/deadline.js';
import {
  BACKEND,
  bareRepository,
  bodyIn,
  DEADLINE_MS,
  exchangeOf,
  fetchBody,
  fetchEnv,
  isPending,
  okHead,
  quietLog,
  readAll,
  type Fixture,
} from './fixtures.js';

const WANT = '1'.repeat(40);
const BODY = fetchBody(WANT, ['2'.repeat(40), '3'.repeat(40)]);
const ANSWER = Buffer.from('000dpackfile\n0009\x01PACK0000');

describe('fetch cache in use', { skip: !isLocalFilesystem(tmpdir()) }, () => {
  const suite = suiteCleanup(after);
  let fixture: Fixture;

  before(async () => {
    fixture = await bareRepository(suite);
  });

  const contextFor = (body: Buffer, extra: Record<string, string> = {}): FetchContext => ({
    installs: fixture.installs,
    backend: BACKEND,
    repository: fixture.repository,
    env: fetchEnv(fixture, body, extra),
    log: quietLog,
  });

  /** fetchFromCache for a request whose body arrives as `body`, announced as `announced`. */
  const use = (
    cache: FetchResponseCache | null,
    body: Readable,
    announced: Buffer = BODY,
    signal?: AbortSignal,
  ): Promise<FetchUse | null> => fetchFromCache(exchangeOf(body, signal), cache, contextFor(announced));

  const settled = <T>(p: Promise<T>, what: string): Promise<T> => withDeadline(p, DEADLINE_MS, what);

  /** Runs "git" for BODY through the cache: its answer is ANSWER, kept. */
  async function keep(
    cache: FetchResponseCache,
    body: Buffer = BODY,
    answer: Buffer = ANSWER,
  ): Promise<void> {
    const first = await settled(use(cache, bodyIn([body]), body), 'the first request');
    assert.ok(first?.capture, 'the first request runs git, to be kept');
    assert.equal(first.answer, undefined);
    assert.ok(first.capture.start(), 'snapshot taken');
    first.capture.tap(answer);
    first.capture.finish(okHead(), true);
    assert.equal(cache.figures().entries, 1);
  }

  const isClientAbort = (err: unknown): boolean => {
    assert.ok(isGitFcgiError(err), `a GitFcgiError, not ${String(err)}`);
    assert.equal(err.code, 'ERR_CLIENT_ABORT');
    assert.equal(err.status, 499);
    return true;
  };

  test('no cache, or a request the cache does not apply to: null, and the body is left unread', async () => {
    const unread = new PassThrough();
    unread.write(BODY);
    assert.equal(await settled(use(null, unread), 'no cache'), null);
    const cache = new FetchResponseCache(1 << 20);
    const get = fetchFromCache(exchangeOf(unread), cache, contextFor(BODY, { REQUEST_METHOD: 'GET' }));
    assert.equal(await settled(get, 'a GET'), null);
    const traced = fetchFromCache(exchangeOf(unread), cache, contextFor(BODY, { GIT_TRACE: '1' }));
    assert.equal(await settled(traced, 'GIT_TRACE'), null);
    assert.equal(unread.readableFlowing, null, 'nobody started reading it');
    assert.equal(unread.readableLength, BODY.length);
    assert.equal(
      cache.inFlight(fetchKey(BACKEND, fixture.repository, contextFor(BODY).env, BODY)),
      undefined,
    );
  });

  test('a first request sets up its run: announced in flight, its body replayed whole', async () => {
    const cache = new FetchResponseCache(1 << 20);
    const first = await settled(use(cache, bodyIn([BODY])), 'first');
    assert.ok(first?.capture);
    assert.equal(first.answer, undefined);
    const key = fetchKey(BACKEND, fixture.repository, contextFor(BODY).env, BODY);
    assert.ok(cache.inFlight(key) !== undefined, 'announced under the key of its body and environment');
    assert.deepEqual(await readAll(first.exchange.body), BODY);
    first.capture.finish(null, false);
    assert.equal(cache.inFlight(key), undefined);
  });

  test('the body split at every byte: the same key, a hit, and the replay is exactly the body', async () => {
    const cache = new FetchResponseCache(1 << 20);
    await keep(cache);
    const splits: Array<[string, Buffer[]]> = [['in one chunk', [BODY]]];
    for (let at = 1; at < BODY.length; at++) {
      splits.push([`split at ${at}`, [BODY.subarray(0, at), BODY.subarray(at)]]);
    }
    splits.push(['a byte at a time', [...BODY].map((byte) => Buffer.from([byte]))]);
    splits.push([
      'in thirds',
      [BODY.subarray(0, 40), BODY.subarray(40, 80), BODY.subarray(80)].filter((b) => b.length > 0),
    ]);
    for (const [what, parts] of splits) {
      const got = await settled(use(cache, bodyIn(parts)), what);
      assert.ok(got !== null, what);
      assert.equal(got.answer?.how, 'hit', what);
      assert.deepEqual(got.answer.body, ANSWER, what);
      assert.equal(got.answer.head.status, 200, what);
      assert.equal(got.capture, null, what);
      assert.deepEqual(await readAll(got.exchange.body, what), BODY, `${what}: replayed`);
    }
    assert.equal(cache.figures().entries, 1);
  });

  test('a body already read to its end before the request reached the cache', async () => {
    const cache = new FetchResponseCache(1 << 20);
    const empty = Buffer.alloc(0);
    const body = new PassThrough();
    body.end();
    body.resume();
    await settled(new Promise((resolve) => body.once('end', resolve)), 'the empty body to end');
    assert.ok(body.readableEnded);
    const got = await settled(use(cache, body, empty), 'an ended body');
    assert.ok(got?.capture, 'an empty body as announced: kept');
    assert.deepEqual(await readAll(got.exchange.body), empty);
    got.capture.finish(null, false);
  });

  test('another body, or another environment, is not a hit', async () => {
    const cache = new FetchResponseCache(1 << 20);
    await keep(cache);
    const other = fetchBody(WANT, ['4'.repeat(40), '3'.repeat(40)]);
    assert.equal(other.length, BODY.length);
    const miss = await settled(use(cache, bodyIn([other]), other), 'another body');
    assert.ok(miss?.capture);
    assert.equal(miss.answer, undefined);
    miss.capture.finish(null, false);
    const v1 = fetchFromCache(
      exchangeOf(bodyIn([BODY])),
      cache,
      contextFor(BODY, { GIT_PROTOCOL: 'version=1' }),
    );
    const v1Use = await settled(v1, 'another protocol');
    assert.ok(v1Use?.capture);
    assert.equal(v1Use.answer, undefined);
    v1Use.capture.finish(null, false);
    // Per-request variables are not: another client address is a hit.
    const elsewhere = fetchFromCache(
      exchangeOf(bodyIn([BODY])),
      cache,
      contextFor(BODY, { REMOTE_ADDR: '198.51.100.9', REMOTE_PORT: '1', GIT_FCGI_REQUEST_ID: 'x' }),
    );
    assert.equal((await settled(elsewhere, 'another client'))?.answer?.how, 'hit');
  });

  test('a body longer than announced: replayed whole (the rest too), not cached, not a hit', async () => {
    const extra = Buffer.alloc(256 * 1024);
    for (let i = 0; i < extra.length; i++) extra[i] = (i * 7 + 3) & 0xff;
    const whole = Buffer.concat([BODY, extra]);
    const shapes: Array<[string, Buffer[]]> = [
      ['one chunk', [Buffer.from(whole.subarray(0, BODY.length + 10))]],
      ['the announced bytes, then more', [BODY, extra.subarray(0, 10)]],
      ['one byte more, then the rest', [whole.subarray(0, BODY.length + 1), extra.subarray(1)]],
      [
        'in 16 KiB chunks',
        Array.from({ length: Math.ceil(whole.length / 16384) }, (_, i) =>
          whole.subarray(i * 16384, (i + 1) * 16384),
        ),
      ],
    ];
    for (const [what, parts] of shapes) {
      const cache = new FetchResponseCache(1 << 20);
      await keep(cache);
      const sent = Buffer.concat(parts);
      const got = await settled(use(cache, bodyIn(parts)), what);
      assert.ok(got !== null, what);
      assert.equal(got.answer, undefined, `${what}: not the answer to the announced bytes`);
      assert.equal(got.capture, null, `${what}: not to be kept`);
      assert.deepEqual(await readAll(got.exchange.body, what), sent, `${what}: replayed whole`);
    }
  });

  test('a longer body is replayed with backpressure: the client is read only as the backend reads', async () => {
    const cache = new FetchResponseCache(1 << 20);
    const body = new PassThrough({ highWaterMark: 1024 });
    body.write(Buffer.concat([BODY, Buffer.from('x')]));
    const got = await settled(use(cache, body), 'a longer body');
    assert.ok(got !== null && got.capture === null);
    // Nobody reads the replay: the client's side soon stays full (a write is never drained).
    let written = 0;
    for (;;) {
      const more = body.write(Buffer.alloc(1024));
      written += 1024;
      if (written >= 1 << 20) break;
      if (more) continue;
      const drained = await Promise.race([
        once(body, 'drain').then(() => true),
        sleep(200).then(() => false),
      ]);
      if (!drained) break;
    }
    assert.ok(written < 1 << 20, `the body is read on without a reader (${written} bytes)`);
    body.end();
    const replayed = await readAll(got.exchange.body);
    assert.equal(replayed.length, BODY.length + 1 + written);
  });

  test('a body shorter than announced: replayed as it came, not cached, not a hit', async () => {
    const cache = new FetchResponseCache(1 << 20);
    const short = BODY.subarray(0, BODY.length - 1);
    // Even an answer kept under the key of these very bytes (as announced) is not given.
    const env = contextFor(BODY).env;
    cache.store(
      fetchKey(BACKEND, fixture.repository, env, short),
      { paths: [], lstat: [], stats: new Float64Array(0) },
      {
        head: okHead(),
        body: ANSWER,
      },
    );
    const got = await settled(use(cache, bodyIn([short])), 'a short body');
    assert.ok(got !== null);
    assert.equal(got.answer, undefined);
    assert.equal(got.capture, null);
    assert.deepEqual(await readAll(got.exchange.body), short);
  });

  test('the client leaving while the body is read: ERR_CLIENT_ABORT, and the body is let go', async () => {
    const cache = new FetchResponseCache(1 << 20);
    const body = new PassThrough();
    body.write(BODY.subarray(0, 10));
    const controller = new AbortController();
    const reading = use(cache, body, BODY, controller.signal);
    assert.ok(await isPending(reading), 'waits for the rest of the body');
    controller.abort(new Error('connection reset'));
    await assert.rejects(settled(reading, 'abort while reading'), isClientAbort);
    assert.equal(body.listenerCount('data'), 0);
    assert.equal(body.listenerCount('end'), 0);
    assert.equal(
      cache.inFlight(fetchKey(BACKEND, fixture.repository, contextFor(BODY).env, BODY)),
      undefined,
    );
  });

  test('a client gone before: ERR_CLIENT_ABORT; a GitFcgiError as the reason is passed on', async () => {
    const cache = new FetchResponseCache(1 << 20);
    await assert.rejects(
      settled(use(cache, bodyIn([BODY]), BODY, AbortSignal.abort()), 'aborted'),
      isClientAbort,
    );
    const shutdown = new GitFcgiError('ERR_SHUTDOWN', 'stopping', { status: 503 });
    const controller = new AbortController();
    const body = new PassThrough();
    const reading = use(cache, body, BODY, controller.signal);
    controller.abort(shutdown);
    await assert.rejects(settled(reading, 'shutdown'), (err) => err === shutdown);
  });

  test('an identical request while git runs waits, then gets that answer (coalesced)', async () => {
    const cache = new FetchResponseCache(1 << 20);
    const first = await settled(use(cache, bodyIn([BODY])), 'first');
    assert.ok(first?.capture);
    const waiting = [use(cache, bodyIn([BODY.subarray(0, 7), BODY.subarray(7)])), use(cache, bodyIn([BODY]))];
    for (const second of waiting) assert.ok(await isPending(second), 'waits for the run in flight');
    assert.ok(first.capture.start());
    first.capture.tap(ANSWER.subarray(0, 5));
    first.capture.tap(ANSWER.subarray(5));
    first.capture.finish(okHead(Buffer.from('rest')), true);
    for (const second of waiting) {
      const got = await settled(second, 'the waiting request');
      assert.ok(got !== null);
      assert.equal(got.answer?.how, 'coalesced');
      assert.deepEqual(got.answer.body, ANSWER);
      assert.equal(got.answer.head.rest.length, 0);
      assert.equal(got.capture, null, 'git does not run for it');
      assert.deepEqual(await readAll(got.exchange.body), BODY);
    }
    const later = await settled(use(cache, bodyIn([BODY])), 'later');
    assert.equal(later?.answer?.how, 'hit');
  });

  test('an identical request while git runs: when that answer is not kept, it runs git itself, uncached', async () => {
    const cache = new FetchResponseCache(1 << 20);
    const first = await settled(use(cache, bodyIn([BODY])), 'first');
    assert.ok(first?.capture);
    const second = use(cache, bodyIn([BODY]));
    assert.ok(await isPending(second));
    assert.ok(first.capture.start());
    first.capture.tap(ANSWER);
    first.capture.finish({ status: 500, headers: [], rest: Buffer.alloc(0) }, true);
    const got = await settled(second, 'second');
    assert.ok(got !== null);
    assert.equal(got.answer, undefined);
    assert.equal(got.capture, null);
    assert.deepEqual(await readAll(got.exchange.body), BODY);
    assert.equal(cache.figures().entries, 0);
    // Nothing is left in flight: the next one sets up a run of its own.
    const third = await settled(use(cache, bodyIn([BODY])), 'third');
    assert.ok(third?.capture);
    third.capture.finish(null, false);
  });

  test('an identical request while git runs: once that answer outgrows the cache, it runs git at once', async () => {
    const cache = new FetchResponseCache(4000);
    const first = await settled(use(cache, bodyIn([BODY])), 'first');
    assert.ok(first?.capture);
    const second = use(cache, bodyIn([BODY]));
    assert.ok(await isPending(second));
    assert.ok(first.capture.start());
    first.capture.tap(Buffer.alloc(cache.maxEntryBytes + 1));
    const got = await settled(second, 'second, while the first still runs');
    assert.ok(got !== null);
    assert.equal(got.answer, undefined);
    assert.equal(got.capture, null);
    assert.deepEqual(await readAll(got.exchange.body), BODY);
    first.capture.finish(okHead(), true);
    assert.equal(cache.figures().entries, 0);
  });

  test('the client leaving while it waits for an identical run: ERR_CLIENT_ABORT; the run goes on', async () => {
    const cache = new FetchResponseCache(1 << 20);
    const first = await settled(use(cache, bodyIn([BODY])), 'first');
    assert.ok(first?.capture);
    const controller = new AbortController();
    const second = use(cache, bodyIn([BODY]), BODY, controller.signal);
    assert.ok(await isPending(second));
    controller.abort(new Error('client closed'));
    await assert.rejects(settled(second, 'abort while waiting'), isClientAbort);
    assert.ok(first.capture.start());
    first.capture.tap(ANSWER);
    first.capture.finish(okHead(), true);
    assert.equal((await settled(use(cache, bodyIn([BODY])), 'later'))?.answer?.how, 'hit');
  });
});
