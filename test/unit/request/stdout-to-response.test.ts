import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BackendOutputEvents } from '../../../src/request/backend-output.js';
import { StdoutToResponse, type StdoutOptions } from '../../../src/request/stdout-to-response.js';
import { FakeBackend, FakeResponse, listenedEvents, settle } from './relay-fakes.js';

const HEAD = 'Status: 201 Created\r\nX-A: 1\r\n\r\n';

function wire(options: StdoutOptions = {}) {
  const backend = new FakeBackend();
  const response = new FakeResponse();
  const seen: string[] = [];
  const events: BackendOutputEvents = {
    activity: () => seen.push('activity'),
    ended: () => seen.push('ended'),
    failed: (err) => seen.push(`failed ${String(err)}`),
  };
  const output = new StdoutToResponse(response, backend, options);
  output.start(events);
  return { backend, response, output, seen };
}

describe('StdoutToResponse', () => {
  test('the CGI head is taken off, at any split, and sent with the first body byte', async () => {
    const whole = `${HEAD}body`;
    for (let i = 1; i < whole.length; i++) {
      const { backend, response, output, seen } = wire();
      backend.stdout.write(whole.slice(0, i));
      await settle();
      backend.stdout.end(whole.slice(i));
      await settle();
      assert.equal(response.status, 201, `split at ${i}`);
      assert.deepEqual(response.events[0]?.kind === 'head' ? response.events[0].headers : null, [
        ['X-A', '1'],
      ]);
      assert.equal(response.body, 'body');
      assert.equal(output.bytesOut, 4);
      assert.equal(seen.at(-1), 'ended');
    }
  });

  test('a head without body is held back until finish()', async () => {
    const { backend, response, output } = wire();
    backend.stdout.end(HEAD);
    await settle();
    assert.equal(response.headersSent, false);
    output.finish();
    assert.equal(response.status, 201);
    assert.equal(response.ended, false, "ending the response is the relay's");
  });

  test('a prelude: retryable until its bytes go out in front of the first stdout byte', async () => {
    const prelude = { head: { status: 200, headers: [], rest: Buffer.alloc(0) }, body: Buffer.from('pre:') };
    const tapped: string[] = [];
    const { backend, response, output } = wire({ prelude, tap: (b) => tapped.push(b.toString()) > 0 });
    assert.equal(output.retryable, true);
    assert.equal(output.head?.status, 200);
    backend.stdout.write('refs');
    await settle();
    assert.equal(output.retryable, false);
    assert.equal(response.body, 'pre:refs');
    assert.equal(tapped.join(''), 'pre:refs');
  });

  test('a head the parser refuses is reported as failed', async () => {
    const { backend, response, seen } = wire();
    backend.stdout.write('Status: banana\r\n\r\n');
    await settle();
    assert.match(seen.at(-1) ?? '', /^failed GitFcgiError: invalid CGI response/);
    assert.equal(response.headersSent, false);
  });

  test('after stop no output reaches the response and no event the relay; destroy closes stdout', async () => {
    const { backend, response, output, seen } = wire();
    output.stop();
    backend.stdout.end(`${HEAD}late`);
    await settle();
    assert.deepEqual(response.events, []);
    assert.deepEqual(seen, []);
    assert.deepEqual(listenedEvents(backend.stdout), []);
    const other = wire();
    other.output.destroy();
    assert.ok(other.backend.stdout.destroyed);
  });
});
