import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isGitFcgiError } from '../../../src/errors.js';
import type { Exchange } from '../../../src/exchange.js';
import { RecordType } from '../../../src/fastcgi/constants.js';
import { encodeRecord } from '../../../src/fastcgi/record-writer.js';
import {
  FcgiClient,
  beginRequest,
  deadline,
  deferred,
  echoHandler,
  echoReply,
  paramsRecords,
  recordTypes,
  startServer,
  stdinRecords,
} from './fcgi-harness.js';

const OPTIONS = { timeout: 30_000 };

/** A handler that hands each exchange to the test and does nothing by itself. */
function captureHandler(): { handler: (e: Exchange) => void; next: () => Promise<Exchange> } {
  const queue: Exchange[] = [];
  let waiting: ((e: Exchange) => void) | null = null;
  return {
    handler: (exchange) => {
      if (waiting) waiting(exchange);
      else queue.push(exchange);
      waiting = null;
    },
    next: () => {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      return deadline(new Promise<Exchange>((resolve) => (waiting = resolve)), 'handler call');
    },
  };
}

function abortReason(exchange: Exchange): { code: string; message: string } {
  const reason: unknown = exchange.signal.reason;
  assert.ok(isGitFcgiError(reason), `reason is ${String(reason)}`);
  return { code: reason.code, message: reason.message };
}

describe('FastCGI connection: lifecycle', OPTIONS, () => {
  test('ABORT_REQUEST aborts the signal; the handler then ends the response', async (t) => {
    const { handler, next } = captureHandler();
    const { path } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.from('some'), false));
    const exchange = await next();
    const aborted = deadline(once(exchange.signal, 'abort'), 'abort');
    exchange.signal.addEventListener('abort', () => exchange.response.end());
    client.send(encodeRecord(RecordType.ABORT_REQUEST, 1, Buffer.alloc(0)));
    await aborted;
    assert.deepEqual(abortReason(exchange), { code: 'ERR_CLIENT_ABORT', message: 'FCGI_ABORT_REQUEST' });
    assert.equal(exchange.body.destroyed, true);
    await client.waitForEnd(1);
    await client.waitClosed();
    assert.deepEqual(recordTypes(client, 1), [RecordType.STDOUT, RecordType.END_REQUEST]);
  });

  test('ABORT_REQUEST before the end of PARAMS is answered without calling the handler', async (t) => {
    let calls = 0;
    const { path } = await startServer(t, () => calls++);
    const client = await FcgiClient.connect(t, path);
    client.send(
      beginRequest(1, { keepConn: true }),
      encodeRecord(RecordType.ABORT_REQUEST, 1, Buffer.alloc(0)),
    );
    await client.waitForEnd(1);
    client.send(beginRequest(2), paramsRecords(2, []), stdinRecords(2, Buffer.alloc(0)));
    await deadline(
      (async () => {
        while (calls === 0) await sleep(5);
      })(),
      'second request',
    );
    assert.equal(calls, 1);
  });

  test('the peer closing the connection aborts the signal and destroys the body', async (t) => {
    const { handler, next } = captureHandler();
    const { path } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.from('partial'), false));
    const exchange = await next();
    const closed = deadline(once(exchange.body, 'close'), 'body close');
    exchange.body.resume();
    client.socket.destroy();
    await deadline(once(exchange.signal, 'abort'), 'abort');
    assert.deepEqual(abortReason(exchange), {
      code: 'ERR_CLIENT_ABORT',
      message:
        'the front end closed the connection: the client left, or the front end gave up (its log says why)',
    });
    await closed;
    // Ending or aborting afterwards is harmless.
    exchange.response.writeHead(200, []);
    assert.equal(exchange.response.write(Buffer.from('x')), true);
    await deadline(new Promise<void>((resolve) => exchange.response.onceDrain(resolve)), 'onceDrain');
    exchange.response.end();
    exchange.response.abort(new Error('late'));
  });

  test('a half-close after the whole request does not abort it; the response still arrives', async (t) => {
    const { handler, next } = captureHandler();
    const { path } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.from('all of it')));
    client.socket.end();
    const exchange = await next();
    await sleep(1500); // long enough for the server to probe the peer (every second)
    assert.equal(exchange.signal.aborted, false);
    exchange.response.writeHead(200, []);
    exchange.response.write(Buffer.from('late answer'));
    exchange.response.end();
    await client.waitForEnd(1);
    await client.waitClosed();
    assert.match(client.stdout(1).toString(), /late answer$/);
  });

  test('a response paused on a full socket still learns that the peer left', async (t) => {
    const { handler, next } = captureHandler();
    const { path } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.socket.pause(); // a front end that stopped reading
    client.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.alloc(0)));
    const exchange = await next();
    exchange.response.writeHead(200, []);
    const chunk = Buffer.alloc(64 * 1024);
    let writes = 0;
    while (exchange.response.write(chunk) && writes < 10_000) writes++;
    assert.ok(writes < 10_000, 'the socket filled up');
    client.socket.destroy();
    await deadline(once(exchange.signal, 'abort'), 'abort');
    assert.equal(abortReason(exchange).code, 'ERR_CLIENT_ABORT');
  });

  test('a close after the whole request aborts it even while the handler writes nothing', async (t) => {
    // What nginx does when its client goes away while git is still counting objects: the
    // request is complete and the backend silent, so no failing write would ever tell.
    const { handler, next } = captureHandler();
    const { path } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.from('all of it')));
    const exchange = await next();
    client.socket.destroy();
    await deadline(once(exchange.signal, 'abort'), 'abort', 2000);
    assert.equal(abortReason(exchange).code, 'ERR_CLIENT_ABORT');
    exchange.response.end();
  });

  test('a half-close before the end of STDIN aborts the request', async (t) => {
    const { handler, next } = captureHandler();
    const { path } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.from('truncated'), false));
    const exchange = await next();
    exchange.body.resume();
    client.socket.end();
    await deadline(once(exchange.signal, 'abort'), 'abort');
    assert.equal(abortReason(exchange).code, 'ERR_CLIENT_ABORT');
    exchange.response.end();
    await client.waitClosed();
  });

  test('ending the response early discards the rest of STDIN; KEEP_CONN goes on to the next request', async (t) => {
    let first = true;
    const { path } = await startServer(t, (exchange) => {
      if (first) {
        first = false;
        exchange.response.writeHead(413, []);
        return exchange.response.end(); // Never reads the body.
      }
      echoHandler(exchange);
    });
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1, { keepConn: true }), paramsRecords(1, []));
    client.send(stdinRecords(1, Buffer.alloc(5 * 1024 * 1024, 1)));
    await client.waitForEnd(1);
    client.send(beginRequest(2), paramsRecords(2, [['N', '2']]), stdinRecords(2, Buffer.from('next')));
    await client.waitForEnd(2);
    assert.equal(echoReply(client, 2).reply.bodyLength, 4);
    await client.waitClosed();
  });

  test('a handler that never reads the body only pauses the socket', async (t) => {
    const { handler, next } = captureHandler();
    const { path, sockets } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), paramsRecords(1, []));
    const chunk = stdinRecords(1, Buffer.alloc(1024 * 1024, 2), false);
    for (let i = 0; i < 20; i++) client.send(chunk);
    const exchange = await next();
    await sleep(200);
    const server = sockets[0];
    assert.ok(server);
    assert.ok(server.bytesRead < 512 * 1024, `server read ${server.bytesRead} bytes`);
    assert.ok(exchange.body.readableLength <= 192 * 1024, `body buffers ${exchange.body.readableLength}`);
    exchange.response.writeHead(200, []);
    exchange.response.end();
    await client.waitForEnd(1);
    client.socket.destroy();
    await deadline(once(server, 'close'), 'server socket close');
  });

  test('backpressure: a slow reader keeps the server from buffering a 50 MB body', async (t) => {
    const total = 50 * 1024 * 1024;
    let maxAhead = 0;
    let consumed = 0;
    const done = deferred<number>();
    const { path, sockets } = await startServer(t, (exchange) => {
      void (async () => {
        const server = sockets[0];
        assert.ok(server);
        let n = 0;
        for await (const chunk of exchange.body as AsyncIterable<Buffer>) {
          consumed += chunk.length;
          maxAhead = Math.max(maxAhead, server.bytesRead - consumed);
          if (++n % 8 === 0) await sleep(1);
        }
        exchange.response.writeHead(200, []);
        exchange.response.end();
        done.resolve(consumed);
      })();
    });
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), paramsRecords(1, []));
    const record = encodeRecord(RecordType.STDIN, 1, Buffer.alloc(65528, 3));
    let sent = 0;
    while (sent + 65528 <= total) {
      if (!client.socket.write(record)) await deadline(once(client.socket, 'drain'), 'client drain');
      sent += 65528;
    }
    client.send(
      encodeRecord(RecordType.STDIN, 1, Buffer.alloc(total - sent, 3)),
      stdinRecords(1, Buffer.alloc(0)),
    );
    assert.equal(await deadline(done.promise, 'body consumed', 25_000), total);
    await client.waitForEnd(1);
    assert.ok(maxAhead < 512 * 1024, `server read up to ${maxAhead} bytes ahead of the handler`);
    t.diagnostic(`server read at most ${maxAhead} bytes ahead of the handler`);
  });

  test('response backpressure: write() returns false and onceDrain fires when the peer reads again', async (t) => {
    const { handler, next } = captureHandler();
    const { path } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.alloc(0)));
    const exchange = await next();
    client.socket.pause();
    exchange.response.writeHead(200, []);
    let written = 0;
    const chunk = Buffer.alloc(256 * 1024, 4);
    while (exchange.response.write(chunk)) {
      written += chunk.length;
      assert.ok(written < 64 * 1024 * 1024, 'write() never returned false');
    }
    const drained = deadline(new Promise<void>((resolve) => exchange.response.onceDrain(resolve)), 'drain');
    client.socket.resume();
    await drained;
    exchange.response.end();
    await client.waitForEnd(1);
  });

  test('response.abort() cuts the connection off with an invalid record, no END_REQUEST; end() afterwards is a no-op', async (t) => {
    const { handler, next } = captureHandler();
    const { path } = await startServer(t, handler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1, { keepConn: true }), paramsRecords(1, []), stdinRecords(1, Buffer.alloc(0)));
    const exchange = await next();
    exchange.response.writeHead(200, []);
    exchange.response.write(Buffer.from('half a response'));
    const reason = new Error('backend died');
    exchange.response.abort(reason);
    exchange.response.abort(new Error('again'));
    exchange.response.end();
    await client.waitClosed();
    assert.equal(exchange.signal.reason, reason);
    assert.deepEqual(recordTypes(client, 1), [RecordType.STDOUT, RecordType.STDOUT]);
    // nginx would take a plain close as the end of the response; an invalid record makes it fail it.
    assert.equal((client.protocolError as { code?: string } | null)?.code, 'ERR_FCGI_VERSION');
  });

  test('a handler that throws gets its connection cut off, and the server goes on', async (t) => {
    let calls = 0;
    const { path, logs } = await startServer(t, (exchange) => {
      if (calls++ === 0) throw new Error('handler bug');
      echoHandler(exchange);
    });
    const first = await FcgiClient.connect(t, path);
    first.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.alloc(0)));
    await first.waitClosed();
    assert.deepEqual(recordTypes(first, 1), []);
    assert.ok(logs.some((l) => l.level === 'error' && String(l.meta?.['error']).includes('handler bug')));
    const second = await FcgiClient.connect(t, path);
    second.send(beginRequest(1), paramsRecords(1, []), stdinRecords(1, Buffer.alloc(0)));
    await second.waitForEnd(1);
  });
});
