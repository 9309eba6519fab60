import assert from 'node:assert/strict';
import { utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import {
  isLocalFilesystem,
  type Dependencies,
  type Snapshot,
} from '../../../src/advertisement/depends-on.js';
import { FetchResponseCache, type FetchAnswer } from '../../../src/fetch-cache/fetch-cache.js';
import type { CgiHead } from '../../../src/request/cgi-headers.js';
import type { Cleanup } from '../../helpers/cleanup.js';
import { withDeadline } from '../../helpers/deadline.js';
import { tmpDir } from '../../helpers/tmp.js';
import { DEADLINE_MS, SETTLE_MS, isPending, okHead } from './fixtures.js';

/** A snapshot of nothing: always unchanged, and its stats cost nothing. */
const NOTHING: Snapshot = { paths: [], lstat: [], stats: new Float64Array(0) };

const bare = (status = 200): CgiHead => ({ status, headers: [], rest: Buffer.alloc(0) });

/** What an entry with a one-letter key, no headers and NOTHING costs (fetch-cache.ts costOf). */
const cost = (bodyBytes: number): number => bodyBytes + 2 + 512;

const answerOf = (bytes: number | string): FetchAnswer => ({
  head: bare(),
  body: typeof bytes === 'number' ? Buffer.alloc(bytes, 0x61) : Buffer.from(bytes),
});

/** A directory with one file in it, older than the racy window: what a capture can depend on. */
async function watched(t: Cleanup): Promise<{ dir: string; file: string; dependsOn: Dependencies }> {
  const dir = await tmpDir(t, 'fetch-cache-deps-');
  const file = join(dir, 'packed-refs');
  await writeFile(file, 'one\n');
  await sleep(SETTLE_MS);
  return { dir, file, dependsOn: { links: [], files: [dir, file, join(dir, 'missing')], trees: [] } };
}

const settled = (p: Promise<boolean> | undefined, what: string): Promise<boolean> => {
  assert.ok(p !== undefined, `${what}: a run in flight`);
  return withDeadline(p, DEADLINE_MS, what);
};

describe('fetch cache: entries within the byte budget', () => {
  test('what is stored is found, under its own key only', () => {
    const cache = new FetchResponseCache(1 << 20);
    const answer = answerOf('pack bytes');
    assert.equal(cache.store('a', NOTHING, answer), true);
    const found = cache.lookup('a');
    assert.ok(found !== null);
    assert.deepEqual(found.body, answer.body);
    assert.deepEqual(found.head, answer.head);
    assert.equal(cache.lookup('b'), null);
    assert.deepEqual(cache.figures(), { entries: 1, bytes: cost(answer.body.length) });
  });

  test('headers, the key and the snapshot paths count towards an entry', () => {
    const cache = new FetchResponseCache(1 << 20);
    const head: CgiHead = { status: 200, headers: [['Content-Type', 'x']], rest: Buffer.alloc(0) };
    const snapshot: Snapshot = { paths: ['/abc'], lstat: [false], stats: new Float64Array(4) };
    assert.ok(cache.store('key', snapshot, { head, body: Buffer.alloc(10) }));
    const strings = 'key'.length + '/abc'.length + 'Content-Type'.length + 'x'.length;
    assert.equal(cache.figures().bytes, 10 + 4 * 8 + 2 * strings + 512);
  });

  test('least recently used entries leave first; a lookup counts as a use', () => {
    const cache = new FetchResponseCache(4 * cost(250));
    for (const key of ['a', 'b', 'c', 'd']) assert.ok(cache.store(key, NOTHING, answerOf(250)));
    assert.deepEqual(cache.figures(), { entries: 4, bytes: 4 * cost(250) });
    assert.ok(cache.lookup('a') !== null);
    assert.ok(cache.store('e', NOTHING, answerOf(250)));
    assert.equal(cache.lookup('b'), null, 'b was the least recently used');
    for (const key of ['a', 'c', 'd', 'e']) assert.ok(cache.lookup(key) !== null, key);
    assert.deepEqual(cache.figures(), { entries: 4, bytes: 4 * cost(250) });
  });

  test('a larger entry makes room for itself with as many of the oldest as it takes', () => {
    const cache = new FetchResponseCache(4000);
    const small = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    for (const key of small) assert.ok(cache.store(key, NOTHING, answerOf(0)));
    assert.equal(cache.figures().bytes, 7 * cost(0));
    assert.ok(cache.store('h', NOTHING, answerOf(1000 - 514)));
    assert.equal(cache.lookup('a'), null);
    assert.equal(cache.lookup('b'), null);
    for (const key of [...small.slice(2), 'h']) assert.ok(cache.lookup(key) !== null, key);
    assert.deepEqual(cache.figures(), { entries: 6, bytes: 5 * cost(0) + 1000 });
  });

  test('an entry may take a quarter of the budget: one byte more is not kept, and evicts nothing', () => {
    const cache = new FetchResponseCache(4000);
    assert.equal(cache.maxEntryBytes, 1000);
    assert.ok(cache.store('a', NOTHING, answerOf(100)));
    const before = cache.figures();
    assert.equal(cache.store('b', NOTHING, answerOf(1000 - 514 + 1)), false);
    assert.equal(cache.lookup('b'), null);
    assert.deepEqual(cache.figures(), before);
    assert.ok(cache.lookup('a') !== null);
    assert.equal(cache.store('c', NOTHING, answerOf(1000 - 514)), true, 'exactly a quarter is kept');
  });

  test('storing a key again replaces its entry and its bytes', () => {
    const cache = new FetchResponseCache(1 << 20);
    cache.store('a', NOTHING, answerOf(100));
    cache.store('a', NOTHING, answerOf('second'));
    assert.deepEqual(cache.figures(), { entries: 1, bytes: cost(6) });
    assert.equal(cache.lookup('a')?.body.toString(), 'second');
  });

  test('clear() empties the cache', () => {
    const cache = new FetchResponseCache(1 << 20);
    cache.store('a', NOTHING, answerOf(10));
    cache.clear();
    assert.deepEqual(cache.figures(), { entries: 0, bytes: 0 });
    assert.equal(cache.lookup('a'), null);
  });
});

describe('fetch cache: snapshots', { skip: !isLocalFilesystem(tmpdir()) }, () => {
  test('a lookup drops the entry once a file it depends on was touched, rewritten or created', async (t) => {
    const { dir, file, dependsOn } = await watched(t);
    const changes: Array<[string, () => Promise<unknown>]> = [
      ['touched', () => utimes(file, new Date(), new Date())],
      ['rewritten, same size', () => writeFile(file, 'two\n')],
      ['a missing one created', () => writeFile(join(dir, 'missing'), '')],
    ];
    for (const [what, change] of changes) {
      await sleep(SETTLE_MS);
      const cache = new FetchResponseCache(1 << 20);
      const capture = cache.capture('k', dir, dependsOn);
      assert.ok(capture.start(), `${what}: snapshot taken`);
      capture.tap(Buffer.from('answer'));
      capture.finish(okHead(), true);
      assert.equal(cache.lookup('k')?.body.toString(), 'answer', `${what}: a hit while nothing changed`);
      assert.equal(cache.lookup('k')?.body.toString(), 'answer', `${what}: and again`);
      await change();
      assert.equal(cache.lookup('k'), null, `${what}: a miss`);
      assert.deepEqual(cache.figures(), { entries: 0, bytes: 0 }, `${what}: dropped, its bytes with it`);
    }
  });

  test('the snapshot is taken at start(): a change while git runs makes the answer stale', async (t) => {
    const { dir, file, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(1 << 20);
    const capture = cache.capture('k', dir, dependsOn);
    assert.ok(capture.start());
    await writeFile(file, 'a push landed meanwhile\n');
    capture.tap(Buffer.from('answer'));
    capture.finish(okHead(), true);
    assert.equal(cache.lookup('k'), null);
  });

  test('start() refuses a snapshot within the racy window; such a run is not kept', async (t) => {
    const { dir, file, dependsOn } = await watched(t);
    await writeFile(file, 'just now\n');
    const cache = new FetchResponseCache(1 << 20);
    const capture = cache.capture('k', dir, dependsOn);
    const stored = cache.inFlight('k');
    assert.equal(capture.start(), false);
    capture.tap(Buffer.from('answer'));
    capture.finish(okHead(), true);
    assert.equal(await settled(stored, 'racy run'), false);
    assert.equal(cache.lookup('k'), null);
  });
});

describe('fetch cache: runs in flight', { skip: !isLocalFilesystem(tmpdir()) }, () => {
  test('a capture is announced until it finishes, and tells whether its answer was kept', async (t) => {
    const { dir, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(1 << 20);
    assert.equal(cache.inFlight('k'), undefined);
    const capture = cache.capture('k', dir, dependsOn);
    const running = cache.inFlight('k');
    assert.ok(running !== undefined);
    assert.equal(cache.inFlight('k'), running, 'every waiter gets the same promise');
    assert.equal(cache.inFlight('other'), undefined);
    assert.ok(capture.start());
    capture.tap(Buffer.from('pack '));
    capture.tap(Buffer.from('bytes'));
    assert.equal(cache.lookup('k'), null, 'nothing kept before finish()');
    capture.finish(okHead(), true);
    assert.equal(await settled(running, 'run'), true);
    assert.equal(cache.inFlight('k'), undefined);
    const kept = cache.lookup('k');
    assert.equal(kept?.body.toString(), 'pack bytes');
    assert.equal(kept?.head.status, 200);
    assert.deepEqual(kept?.head.headers, okHead().headers);
  });

  const notKept: Array<[string, (capture: ReturnType<FetchResponseCache['capture']>) => void]> = [
    ['a status other than 200', (c) => c.finish(bare(500), true)],
    ['a 200 that was not complete', (c) => c.finish(okHead(), false)],
    ['no head at all', (c) => c.finish(null, true)],
    [
      'more bytes than an entry may take',
      (c) => {
        c.tap(Buffer.alloc(600));
        c.tap(Buffer.alloc(600));
        c.finish(okHead(), true);
      },
    ],
    [
      'few enough bytes, but with the overhead over a quarter',
      (c) => {
        c.tap(Buffer.alloc(900));
        c.finish(okHead(), true);
      },
    ],
  ];
  for (const [what, end] of notKept) {
    test(`not kept: ${what}; the waiters learn it`, async (t) => {
      const { dir, dependsOn } = await watched(t);
      const cache = new FetchResponseCache(4000);
      const capture = cache.capture('k', dir, dependsOn);
      const running = cache.inFlight('k');
      assert.ok(capture.start());
      end(capture);
      assert.equal(await settled(running, what), false);
      assert.equal(cache.inFlight('k'), undefined);
      assert.equal(cache.lookup('k'), null);
      assert.deepEqual(cache.figures(), { entries: 0, bytes: 0 });
    });
  }

  test('too large through the tap: later small chunks do not make it keepable again', async (t) => {
    const { dir, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(4000);
    const capture = cache.capture('k', dir, dependsOn);
    const running = cache.inFlight('k');
    assert.ok(capture.start());
    capture.tap(Buffer.alloc(1001));
    capture.tap(Buffer.alloc(1));
    capture.finish(okHead(), true);
    assert.equal(await settled(running, 'too large'), false);
    assert.equal(cache.lookup('k'), null);
  });

  test('too large through the tap: the waiters learn it at once, while git still runs', async (t) => {
    const { dir, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(4000);
    const capture = cache.capture('k', dir, dependsOn);
    const running = cache.inFlight('k');
    assert.ok(running !== undefined);
    assert.ok(capture.start());
    capture.tap(Buffer.alloc(1000));
    assert.ok(await isPending(running), 'still keepable: the waiters wait');
    capture.tap(Buffer.alloc(1));
    assert.equal(await settled(running, 'outgrown'), false, 'settled before finish()');
    assert.equal(cache.inFlight('k'), undefined, 'no longer announced');
    // A request arriving now runs git itself, announced in its turn; the first run's end leaves it so.
    const next = cache.capture('k', dir, dependsOn);
    const nextRun = cache.inFlight('k');
    capture.finish(okHead(), true);
    assert.equal(cache.lookup('k'), null);
    assert.equal(cache.inFlight('k'), nextRun);
    next.finish(null, false);
    assert.equal(await settled(nextRun, 'next run'), false);
  });

  test('without start() nothing is kept', async (t) => {
    const { dir, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(1 << 20);
    const capture = cache.capture('k', dir, dependsOn);
    const running = cache.inFlight('k');
    capture.tap(Buffer.from('answer'));
    capture.finish(okHead(), true);
    assert.equal(await settled(running, 'never started'), false);
    assert.equal(cache.lookup('k'), null);
  });

  test('finish() is idempotent: the first call decides', async (t) => {
    const { dir, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(1 << 20);

    const failed = cache.capture('a', dir, dependsOn);
    const failedRun = cache.inFlight('a');
    assert.ok(failed.start());
    failed.tap(Buffer.from('answer'));
    failed.finish(null, false);
    failed.finish(okHead(), true);
    assert.equal(await settled(failedRun, 'failed run'), false);
    assert.equal(cache.lookup('a'), null, 'a later finish() does not store after all');

    const kept = cache.capture('b', dir, dependsOn);
    const keptRun = cache.inFlight('b');
    assert.ok(kept.start());
    kept.tap(Buffer.from('answer'));
    kept.finish(okHead(), true);
    kept.finish(null, false);
    assert.equal(await settled(keptRun, 'kept run'), true);
    assert.equal(cache.lookup('b')?.body.toString(), 'answer', 'a later finish() does not undo it');
    assert.equal(cache.figures().entries, 1);
  });

  test('a run that finishes after a newer one for the same key started leaves that one announced', async (t) => {
    const { dir, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(1 << 20);
    const first = cache.capture('k', dir, dependsOn);
    const firstRun = cache.inFlight('k');
    const second = cache.capture('k', dir, dependsOn);
    const secondRun = cache.inFlight('k');
    assert.notEqual(secondRun, firstRun);
    first.finish(null, false);
    assert.equal(await settled(firstRun, 'first run'), false);
    assert.equal(cache.inFlight('k'), secondRun);
    assert.ok(second.start());
    second.tap(Buffer.from('answer'));
    second.finish(okHead(), true);
    assert.equal(await settled(secondRun, 'second run'), true);
    assert.equal(cache.inFlight('k'), undefined);
  });

  test("the kept head has no `rest`: the relay's is a view into a buffer it reuses", async (t) => {
    const { dir, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(1 << 20);
    const capture = cache.capture('k', dir, dependsOn);
    assert.ok(capture.start());
    const readBuffer = Buffer.from('HTTP-ish headers...first body bytes');
    const head = okHead(readBuffer.subarray(19));
    capture.tap(Buffer.from('first body bytes'));
    capture.finish(head, true);
    const kept = cache.lookup('k');
    assert.ok(kept !== null);
    assert.equal(kept.head.rest.length, 0);
    assert.equal(kept.head.status, 200);
    assert.deepEqual(kept.head.headers, okHead().headers);
    assert.equal(kept.body.toString(), 'first body bytes');
    readBuffer.fill(0);
    assert.equal(kept.head.rest.length, 0);
  });

  test('the tap copies: the relay reusing its buffer after the call does not change the answer', async (t) => {
    const { dir, dependsOn } = await watched(t);
    const cache = new FetchResponseCache(1 << 20);
    const capture = cache.capture('k', dir, dependsOn);
    assert.ok(capture.start());
    const buffer = Buffer.alloc(8);
    for (const text of ['0008NAK\n', '0009pack', 'PACK-end']) {
      buffer.write(text);
      capture.tap(buffer);
    }
    buffer.fill(0x7a);
    capture.finish(okHead(), true);
    buffer.fill(0x79);
    assert.equal(cache.lookup('k')?.body.toString(), '0008NAK\n0009packPACK-end');
  });
});
