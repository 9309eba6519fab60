import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { isGitFcgiError } from '../../../src/errors.js';
import { Limiter } from '../../../src/server/limiter.js';

const settings = { maxChildren: 2, queue: 2, queueTimeoutMs: 60_000 };
// Aborted when the file's tests are done, so no waiter (and its queue timer) outlives them.
const suiteEnd = new AbortController();
const live = suiteEnd.signal;
after(() => suiteEnd.abort(new Error('tests done')));

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => assert.fail('expected a rejection'),
    (err: unknown) => err,
  );
}

describe('Limiter', () => {
  it('admits up to max_children at once, then queues first come, first served', async () => {
    const limiter = new Limiter(settings);
    const a = await limiter.acquire(live);
    await limiter.acquire(live);
    const order: string[] = [];
    const c = limiter.acquire(live).then((release) => (order.push('c'), release));
    const d = limiter.acquire(live).then((release) => (order.push('d'), release));
    assert.equal(limiter.active, 2);
    assert.equal(limiter.queued, 2);
    a();
    a(); // a second release of the same slot changes nothing
    await c;
    assert.deepEqual(order, ['c']);
    assert.equal(limiter.active, 2);
    assert.equal(limiter.queued, 1);
    (await c)();
    await d;
    assert.deepEqual(order, ['c', 'd']);
    assert.equal(limiter.maxActiveReached, 2);
  });

  it('refuses with 503 and Retry-After once the queue is full', async () => {
    const limiter = new Limiter({ ...settings, queue: 1 });
    await limiter.acquire(live);
    await limiter.acquire(live);
    limiter.acquire(live).catch(() => undefined);
    const err = await rejection(limiter.acquire(live));
    assert.ok(isGitFcgiError(err));
    assert.equal(err.code, 'ERR_OVERLOADED');
    // The log line names the settings to raise (README: Troubleshooting).
    assert.equal(err.message, 'all backends busy (max_children = 2) and the queue full (queue = 1)');
    assert.equal(err.status, 503);
    assert.deepEqual(err.headers, [['Retry-After', '5']]);
  });

  it('queue = 0 refuses as soon as every slot is busy', async () => {
    const limiter = new Limiter({ ...settings, maxChildren: 1, queue: 0 });
    await limiter.acquire(live);
    const err = await rejection(limiter.acquire(live));
    assert.ok(isGitFcgiError(err) && err.code === 'ERR_OVERLOADED');
  });

  it('a waiter whose client leaves leaves the queue, and takes no slot', async () => {
    const limiter = new Limiter(settings);
    const first = await limiter.acquire(live);
    await limiter.acquire(live);
    const leaving = new AbortController();
    const gone = limiter.acquire(leaving.signal);
    const next = limiter.acquire(live);
    leaving.abort(new Error('client went away'));
    assert.equal(((await rejection(gone)) as Error).message, 'client went away');
    assert.equal(limiter.queued, 1);
    first();
    await next;
    assert.equal(limiter.queued, 0);
    assert.equal(limiter.active, 2);
  });

  it('an already aborted request is not queued', async () => {
    const limiter = new Limiter(settings);
    const aborted = new AbortController();
    aborted.abort(new Error('gone'));
    await rejection(limiter.acquire(aborted.signal));
    assert.equal(limiter.active, 0);
  });

  it('a waiter gets ERR_QUEUE_TIMEOUT after queue_timeout', async () => {
    const limiter = new Limiter({ ...settings, maxChildren: 1, queueTimeoutMs: 20 });
    await limiter.acquire(live);
    const err = await rejection(limiter.acquire(live));
    assert.ok(isGitFcgiError(err));
    assert.equal(err.code, 'ERR_QUEUE_TIMEOUT');
    assert.equal(err.message, 'no backend free (max_children = 1) after 20ms in the queue (queue_timeout)');
    assert.equal(err.status, 503);
    assert.equal(limiter.queued, 0);
  });

  it('a larger limit on reload admits waiters at once; a smaller one applies as slots free', async () => {
    const limiter = new Limiter({ ...settings, maxChildren: 1 });
    const a = await limiter.acquire(live);
    const b = limiter.acquire(live);
    limiter.update({ ...settings, maxChildren: 2 });
    const releaseB = await b;
    assert.equal(limiter.active, 2);
    limiter.update({ ...settings, maxChildren: 1 });
    const c = limiter.acquire(live);
    a();
    assert.equal(limiter.queued, 1, 'still one over the new limit');
    releaseB();
    (await c)();
    assert.equal(limiter.active, 0);
  });
});
