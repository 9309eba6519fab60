import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BodyToStdin } from '../../../src/request/body-to-stdin.js';
import { FakeBackend, fakeExchange, listenedEvents, settle } from './relay-fakes.js';

function wire(contentLength: number | null = null, stdinHighWaterMark?: number) {
  const backend = new FakeBackend(stdinHighWaterMark === undefined ? {} : { stdinHighWaterMark });
  const { body } = fakeExchange();
  const seen: string[] = [];
  const input = new BodyToStdin(body, backend.stdin, contentLength, {
    activity: () => seen.push('activity'),
    truncated: (received, expected) => seen.push(`truncated ${received}/${expected}`),
    broken: () => seen.push('broken'),
  });
  input.start();
  return { backend, body, input, seen };
}

describe('BodyToStdin', () => {
  test('the body goes to stdin, and its end ends stdin', async () => {
    const { backend, body, input, seen } = wire();
    body.write('01');
    body.end('23');
    await settle();
    assert.equal(backend.stdinBytes, '0123');
    assert.ok(backend.stdinEnded);
    assert.equal(input.bytesIn, 4);
    assert.ok(seen.includes('activity'));
  });

  test('stdin full pauses the body until it drains', async () => {
    const { backend, body } = wire(null, 4);
    backend.holdStdin();
    body.write('0123456789');
    await settle();
    assert.ok(body.isPaused());
    backend.releaseStdin();
    await settle();
    assert.ok(!body.isPaused());
  });

  test('cut at CONTENT_LENGTH; short of it is reported, and stdin is not ended', async () => {
    const long = wire(3);
    long.body.end('0123');
    await settle();
    assert.equal(long.backend.stdinBytes, '012');
    assert.ok(long.backend.stdinEnded);
    const short = wire(8);
    short.body.end('0123');
    await settle();
    assert.deepEqual(
      short.seen.filter((s) => s !== 'activity'),
      ['truncated 4/8'],
    );
    assert.equal(short.backend.stdinEnded, false);
  });

  test('once the backend closed its stdin the rest is read and dropped, and a short body is fine', async () => {
    const { backend, body, input, seen } = wire(100);
    body.write('01');
    await settle();
    backend.closeStdin();
    await settle();
    body.end('23');
    await settle();
    assert.equal(input.bytesIn, 2);
    assert.deepEqual(
      seen.filter((s) => s !== 'activity'),
      [],
    );
    assert.ok(body.readableEnded);
  });

  test('a failing body is reported as broken; after stop, nothing is', async () => {
    const first = wire();
    first.body.destroy(new Error('ECONNRESET'));
    await settle();
    assert.deepEqual(first.seen, ['broken']);
    const second = wire();
    second.input.stop('discard');
    second.body.destroy(new Error('ECONNRESET'));
    await settle();
    assert.deepEqual(second.seen, []);
  });

  test('stop keeps the rest of the body paused for the next backend, or drops it; destroy closes stdin', async () => {
    const kept = wire();
    kept.input.stop('keep');
    kept.body.write('later');
    await settle();
    assert.ok(kept.body.isPaused());
    assert.deepEqual(listenedEvents(kept.body), []);
    assert.deepEqual(listenedEvents(kept.backend.stdin), []);
    assert.equal(kept.backend.stdinBytes, '');
    const dropped = wire();
    dropped.input.destroy();
    dropped.body.end('later');
    await settle();
    assert.ok(dropped.body.readableEnded, 'read to its end');
    assert.ok(dropped.backend.stdin.destroyed);
    assert.equal(dropped.backend.stdinBytes, '');
  });
});
