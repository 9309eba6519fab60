import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { isGitFcgiError } from '../../../src/errors.js';
import type { Exchange } from '../../../src/exchange.js';
import { ProtocolStatus, RecordType } from '../../../src/fastcgi/constants.js';
import { encodeParams } from '../../../src/fastcgi/name-value.js';
import { encodeRecord } from '../../../src/fastcgi/record-writer.js';
import {
  FcgiClient,
  beginRequest,
  deadline,
  echoHandler,
  echoReply,
  endRequestFields,
  paramsRecords,
  recordTypes,
  sha256,
  startServer,
  stdinRecords,
  type EchoReply,
  type TestServer,
} from './fcgi-harness.js';

const OPTIONS = { timeout: 60_000 };

/**
 * Several requests at once on one connection, as HAProxy sends them with `option mpxs-conns`:
 * records of different requests interleaved in any order.
 */

const record = (type: number, id: number, content: string | Buffer): Buffer =>
  encodeRecord(type, id, typeof content === 'string' ? Buffer.from(content) : content);

/** Three requests whose records are interleaved, and what the echo handler must answer each. */
function interleavedRequests(): { bytes: Buffer; want: Map<number, EchoReply> } {
  const params: Record<number, Array<[string, string]>> = {
    1: [
      ['WHO', 'one'],
      ['HTTP_X', 'x'.repeat(150)],
    ],
    2: [['WHO', 'two']],
    7: [
      ['WHO', 'seven'],
      ['QUERY_STRING', 'service=git-upload-pack'],
    ],
  };
  const bodies: Record<number, Buffer> = {
    1: Buffer.from('first body, '.repeat(6)),
    2: Buffer.alloc(0),
    7: randomBytes(120),
  };
  const p1 = encodeParams(params[1] ?? []);
  const p7 = encodeParams(params[7] ?? []);
  const b1 = bodies[1] ?? Buffer.alloc(0);
  const b7 = bodies[7] ?? Buffer.alloc(0);
  const bytes = Buffer.concat([
    beginRequest(1, { keepConn: true }),
    beginRequest(7, { keepConn: true }),
    record(RecordType.PARAMS, 7, p7.subarray(0, 10)),
    record(RecordType.PARAMS, 1, p1.subarray(0, 100)),
    beginRequest(2, { keepConn: true }),
    record(RecordType.PARAMS, 1, p1.subarray(100)),
    record(RecordType.STDIN, 1, b1.subarray(0, 30)), // before request 1's PARAMS end
    record(RecordType.PARAMS, 7, p7.subarray(10)),
    record(RecordType.PARAMS, 1, ''),
    paramsRecords(2, params[2] ?? []),
    record(RecordType.PARAMS, 7, ''),
    record(RecordType.STDIN, 7, b7.subarray(0, 50)),
    record(RecordType.STDIN, 1, b1.subarray(30)),
    record(RecordType.STDIN, 2, ''),
    record(RecordType.STDIN, 7, b7.subarray(50)),
    record(RecordType.STDIN, 7, ''),
    record(RecordType.STDIN, 1, ''),
  ]);
  const want = new Map<number, EchoReply>();
  for (const id of [1, 2, 7]) {
    const body = bodies[id] ?? Buffer.alloc(0);
    want.set(id, {
      params: Object.fromEntries(params[id] ?? []),
      bodyLength: body.length,
      bodySha256: sha256(body),
    });
  }
  return { bytes, want };
}

async function assertAnswered(client: FcgiClient, want: Map<number, EchoReply>, what: string): Promise<void> {
  for (const [id, reply] of want) {
    await client.waitForEnd(id);
    assert.deepEqual(echoReply(client, id).reply, reply, `${what}: request ${id}`);
    assertEndedOnce(client, id, what);
  }
}

/** An empty STDOUT then one END_REQUEST (REQUEST_COMPLETE), and nothing after it. */
function assertEndedOnce(client: FcgiClient, id: number, what = ''): void {
  const records = client.records.filter((r) => r.requestId === id);
  const types = records.map((r) => r.type);
  assert.deepEqual(types.slice(-2), [RecordType.STDOUT, RecordType.END_REQUEST], `${what} records of ${id}`);
  assert.equal(records.at(-2)?.content.length, 0, `${what} ${id}: empty STDOUT before END_REQUEST`);
  assert.equal(types.filter((t) => t === RecordType.END_REQUEST).length, 1, `${what} ${id}: one END_REQUEST`);
  const end = records.at(-1);
  assert.ok(end);
  assert.equal(endRequestFields(end).protocolStatus, ProtocolStatus.REQUEST_COMPLETE);
}

/** The server's side of the newest connection, once it has been accepted. */
async function acceptedSocket(server: TestServer, count: number): Promise<Socket> {
  while (server.sockets.length < count) await tick();
  const socket = server.sockets[count - 1];
  assert.ok(socket);
  return socket;
}

/** Sends `bytes` in two writes, the second only once the server has read exactly the first. */
async function sendSplit(
  server: TestServer,
  client: FcgiClient,
  count: number,
  bytes: Buffer,
  at: number,
): Promise<void> {
  const socket = await acceptedSocket(server, count);
  client.send(bytes.subarray(0, at));
  await deadline(
    (async () => {
      while (socket.bytesRead < at) await tick();
    })(),
    `server to read ${at} bytes`,
  );
  client.send(bytes.subarray(at));
}

/** A handler that hands every exchange whose WHO param is in `held` to the test, and echoes the rest. */
function holdSome(held: readonly string[]): {
  handler: (e: Exchange) => void;
  exchange: (who: string) => Promise<Exchange>;
} {
  const waiting = new Map<string, (e: Exchange) => void>();
  const arrived = new Map<string, Exchange>();
  return {
    handler: (exchange) => {
      const who = exchange.params.get('WHO') ?? '';
      if (!held.includes(who)) return echoHandler(exchange);
      const wake = waiting.get(who);
      if (wake) wake(exchange);
      else arrived.set(who, exchange);
    },
    exchange: (who) => {
      const found = arrived.get(who);
      if (found) return Promise.resolve(found);
      return deadline(new Promise<Exchange>((resolve) => waiting.set(who, resolve)), `request ${who}`);
    },
  };
}

const hasEnd = (client: FcgiClient, id: number): boolean =>
  client.records.some((r) => r.type === RecordType.END_REQUEST && r.requestId === id);

function connect(t: TestContext, server: TestServer): Promise<FcgiClient> {
  return FcgiClient.connect(t, server.path);
}

describe('FastCGI connection: multiplexed requests', OPTIONS, () => {
  test('three interleaved requests are each answered with their own params and body', async (t) => {
    const server = await startServer(t, echoHandler);
    const { bytes, want } = interleavedRequests();
    const client = await connect(t, server);
    client.send(bytes);
    await assertAnswered(client, want, 'whole');
    // KEEP_CONN on all of them: the connection stays, and an id may be used again.
    client.send(beginRequest(1), paramsRecords(1, [['WHO', 'again']]), stdinRecords(1, Buffer.from('x')));
    const ends = (): number =>
      client.records.filter((r) => r.type === RecordType.END_REQUEST && r.requestId === 1).length;
    await client.waitFor('a second END_REQUEST 1', () => ends() === 2);
    // That one came without KEEP_CONN: the connection closes after it.
    await client.waitClosed();
  });

  test('the same, split at every byte offset: the same answers', async (t) => {
    const server = await startServer(t, echoHandler);
    const { bytes, want } = interleavedRequests();
    for (let at = 1; at < bytes.length; at++) {
      const client = await connect(t, server);
      await sendSplit(server, client, at, bytes, at);
      await assertAnswered(client, want, `split at ${at}`);
      client.socket.destroy();
    }
    t.diagnostic(`${bytes.length - 1} splits of a ${bytes.length}-byte stream`);
  });

  test('the same, one byte per write', async (t) => {
    const server = await startServer(t, echoHandler);
    const { bytes, want } = interleavedRequests();
    const client = await connect(t, server);
    const socket = await acceptedSocket(server, 1);
    for (let at = 0; at < bytes.length; at++) {
      client.send(bytes.subarray(at, at + 1));
      while (socket.bytesRead <= at) await tick();
    }
    await assertAnswered(client, want, 'byte by byte');
  });

  test('a body nobody reads holds at most its high-water mark; others go on until it is full, then wait for it', async (t) => {
    const { handler, exchange } = holdSome(['slow']);
    const server = await startServer(t, handler);
    const client = await connect(t, server);
    client.send(beginRequest(1, { keepConn: true }), paramsRecords(1, [['WHO', 'slow']]));
    client.send(stdinRecords(1, Buffer.alloc(32 * 1024, 1), false));
    const slow = await exchange('slow');
    // Under its mark: request 2 is served at once.
    client.send(beginRequest(2, { keepConn: true }), paramsRecords(2, [['WHO', 'two']]));
    client.send(stdinRecords(2, Buffer.from('quick')));
    await client.waitForEnd(2);
    assert.equal(echoReply(client, 2).reply.bodyLength, 5);
    // Over it: the socket pauses, and request 3, behind it on the same connection, waits.
    for (let i = 0; i < 8; i++) client.send(stdinRecords(1, Buffer.alloc(256 * 1024, 1), false));
    client.send(beginRequest(3, { keepConn: true }), paramsRecords(3, [['WHO', 'three']]));
    client.send(stdinRecords(3, Buffer.from('waits')));
    await sleep(300);
    const socket = await acceptedSocket(server, 1);
    assert.equal(hasEnd(client, 3), false, 'request 3 waits for the unread body ahead of it');
    assert.ok(socket.bytesRead < 512 * 1024, `server read ${socket.bytesRead} bytes`);
    assert.ok(slow.body.readableLength <= 192 * 1024, `body buffers ${slow.body.readableLength}`);
    // Once the slow request reads, everything behind it moves.
    let read = 0;
    slow.body.on('data', (chunk: Buffer) => (read += chunk.length));
    await client.waitForEnd(3);
    assert.equal(echoReply(client, 3).reply.bodyLength, 5);
    client.send(stdinRecords(1, Buffer.alloc(0)));
    await deadline(once(slow.body, 'end'), 'slow body end');
    assert.equal(read, 32 * 1024 + 8 * 256 * 1024);
    slow.response.writeHead(200, []);
    slow.response.end();
    await client.waitForEnd(1);
    for (const id of [1, 2, 3]) assertEndedOnce(client, id);
  });

  test('two slow readers of 16 MB bodies sent interleaved: the server reads little ahead of them', async (t) => {
    const total = 16 * 1024 * 1024;
    let consumed = 0;
    let maxAhead = 0;
    const server = await startServer(t, (exchange) => {
      void (async () => {
        const socket = server.sockets[0];
        assert.ok(socket);
        let n = 0;
        for await (const chunk of exchange.body as AsyncIterable<Buffer>) {
          consumed += chunk.length;
          maxAhead = Math.max(maxAhead, socket.bytesRead - consumed);
          if (++n % 8 === 0) await sleep(1);
        }
        exchange.response.writeHead(200, []);
        exchange.response.end();
      })();
    });
    const client = await connect(t, server);
    for (const id of [1, 2]) client.send(beginRequest(id, { keepConn: true }), paramsRecords(id, []));
    const chunk = Buffer.alloc(65528, 5);
    for (let sent = 0; sent < total; sent += chunk.length) {
      for (const id of [1, 2]) {
        if (!client.socket.write(record(RecordType.STDIN, id, chunk)))
          await deadline(once(client.socket, 'drain'), 'client drain');
      }
    }
    client.send(stdinRecords(1, Buffer.alloc(0)), stdinRecords(2, Buffer.alloc(0)));
    await deadline(client.waitForEnd(1), 'END 1', 40_000);
    await client.waitForEnd(2);
    assert.ok(maxAhead < 1024 * 1024, `server read up to ${maxAhead} bytes ahead of the handlers`);
    t.diagnostic(`server read at most ${maxAhead} bytes ahead of two slow handlers`);
  });

  test('responses share the socket: both writers wait for the peer, then both finish, each in order', async (t) => {
    const { handler, exchange } = holdSome(['a', 'b']);
    const server = await startServer(t, handler);
    const client = await connect(t, server);
    for (const [id, who] of [
      [1, 'a'],
      [2, 'b'],
    ] as const) {
      client.send(beginRequest(id, { keepConn: true }), paramsRecords(id, [['WHO', who]]));
      client.send(stdinRecords(id, Buffer.alloc(0)));
    }
    const writers = [await exchange('a'), await exchange('b')];
    client.socket.pause();
    const written = [0, 0];
    const expected: Buffer[][] = [[], []];
    for (const ex of writers) ex.response.writeHead(200, []);
    // Alternate writes until both are told to wait.
    const full = [false, false];
    for (let round = 0; !(full[0] && full[1]); round++) {
      assert.ok(round < 2000, 'write() never returned false');
      for (const [i, ex] of writers.entries()) {
        if (full[i]) continue;
        const chunk = Buffer.alloc(64 * 1024, i === 0 ? 0x61 + (round % 26) : 0x41 + (round % 26));
        expected[i]?.push(chunk);
        written[i] = (written[i] ?? 0) + chunk.length;
        if (!ex.response.write(chunk)) full[i] = true;
      }
    }
    const socket = await acceptedSocket(server, 1);
    assert.ok(socket.writableLength < 8 * 1024 * 1024, `queued ${socket.writableLength} bytes`);
    const drained = writers.map((ex) =>
      deadline(new Promise<void>((resolve) => ex.response.onceDrain(resolve)), 'drain'),
    );
    client.socket.resume();
    await Promise.all(drained);
    for (const ex of writers) ex.response.end();
    for (const [i, id] of [1, 2].entries()) {
      await client.waitForEnd(id);
      const body = client.stdout(id).subarray(client.stdout(id).indexOf('\r\n\r\n') + 4);
      assert.ok(body.equals(Buffer.concat(expected[i] ?? [])), `body of ${id} intact and in order`);
      assertEndedOnce(client, id);
    }
  });

  test('ABORT_REQUEST ends only its own request', async (t) => {
    const { handler, exchange } = holdSome(['held']);
    const server = await startServer(t, handler);
    const client = await connect(t, server);
    client.send(beginRequest(1, { keepConn: true }), paramsRecords(1, [['WHO', 'held']]));
    client.send(beginRequest(2, { keepConn: true }), paramsRecords(2, [['WHO', 'two']]));
    const held = await exchange('held');
    held.signal.addEventListener('abort', () => held.response.end());
    client.send(record(RecordType.ABORT_REQUEST, 1, ''));
    await client.waitForEnd(1);
    const reason: unknown = held.signal.reason;
    assert.ok(isGitFcgiError(reason) && reason.code === 'ERR_CLIENT_ABORT');
    client.send(stdinRecords(2, Buffer.from('still here')));
    await client.waitForEnd(2);
    assert.equal(echoReply(client, 2).reply.bodyLength, 10);
    assertEndedOnce(client, 1);
    assertEndedOnce(client, 2);
  });

  test('a response that fails after its headers cuts the connection off: the other request gets no END_REQUEST either', async (t) => {
    const { handler, exchange } = holdSome(['fails', 'other']);
    const server = await startServer(t, handler);
    const client = await connect(t, server);
    for (const [id, who] of [
      [1, 'fails'],
      [2, 'other'],
    ] as const) {
      client.send(beginRequest(id, { keepConn: true }), paramsRecords(id, [['WHO', who]]));
      client.send(stdinRecords(id, Buffer.alloc(0)));
    }
    const fails = await exchange('fails');
    const other = await exchange('other');
    other.response.writeHead(200, []);
    other.response.write(Buffer.from('half of the other response'));
    // What the relay does when its client leaves: end the response (here, on a dead connection).
    other.signal.addEventListener('abort', () => other.response.end());
    fails.response.writeHead(200, []);
    fails.response.write(Buffer.from('half a response'));
    fails.response.abort(new Error('backend died'));
    await client.waitClosed();
    assert.equal((client.protocolError as { code?: string } | null)?.code, 'ERR_FCGI_VERSION');
    for (const id of [1, 2])
      assert.deepEqual(recordTypes(client, id), [RecordType.STDOUT, RecordType.STDOUT]);
    const reason: unknown = other.signal.reason;
    assert.ok(isGitFcgiError(reason), String(reason));
    assert.match(reason.message, /connection cut off: request 1 on it failed/);
    assert.ok(server.logs.some((l) => l.message === 'FastCGI connection cut off with other requests on it'));
  });

  test('more requests at once than maxReqs: the extra one gets OVERLOADED, the others are served', async (t) => {
    const { handler, exchange } = holdSome(['a', 'b']);
    const server = await startServer(t, handler, { maxReqs: 2 });
    const client = await connect(t, server);
    client.send(beginRequest(1, { keepConn: true }), paramsRecords(1, [['WHO', 'a']]));
    client.send(beginRequest(2, { keepConn: true }), paramsRecords(2, [['WHO', 'b']]));
    client.send(beginRequest(3, { keepConn: true }), paramsRecords(3, [['WHO', 'c']]));
    const refused = await client.waitForEnd(3);
    assert.equal(endRequestFields(refused).protocolStatus, ProtocolStatus.OVERLOADED);
    for (const who of ['a', 'b']) {
      const ex = await exchange(who);
      ex.response.writeHead(200, []);
      ex.response.end();
    }
    await client.waitForEnd(1);
    await client.waitForEnd(2);
    // Room again: the same id is a new request.
    client.send(
      beginRequest(3, { keepConn: true }),
      paramsRecords(3, [['WHO', 'c']]),
      stdinRecords(3, Buffer.from('ok')),
    );
    await client.waitFor(
      'END_REQUEST 3 again',
      (r) => r.type === RecordType.END_REQUEST && r !== refused && r.requestId === 3,
    );
    assert.equal(echoReply(client, 3).reply.bodyLength, 2);
  });

  test('the peer closing aborts every request on the connection', async (t) => {
    const { handler, exchange } = holdSome(['a', 'b']);
    const server = await startServer(t, handler);
    const client = await connect(t, server);
    for (const [id, who] of [
      [1, 'a'],
      [2, 'b'],
    ] as const) {
      client.send(beginRequest(id, { keepConn: true }), paramsRecords(id, [['WHO', who]]));
    }
    const both = [await exchange('a'), await exchange('b')];
    const aborted = both.map((ex) => once(ex.signal, 'abort'));
    client.socket.destroy();
    await deadline(Promise.all(aborted), 'both aborted');
    for (const ex of both) assert.equal(ex.body.destroyed, true);
  });

  test('a half-close: requests sent whole are still answered, the unfinished one is aborted', async (t) => {
    const { handler, exchange } = holdSome(['whole', 'unfinished']);
    const server = await startServer(t, handler);
    const client = await connect(t, server);
    client.send(beginRequest(1), paramsRecords(1, [['WHO', 'whole']]), stdinRecords(1, Buffer.alloc(0)));
    client.send(
      beginRequest(2),
      paramsRecords(2, [['WHO', 'unfinished']]),
      stdinRecords(2, Buffer.from('x'), false),
    );
    const whole = await exchange('whole');
    const unfinished = await exchange('unfinished');
    unfinished.signal.addEventListener('abort', () => unfinished.response.end());
    client.socket.end();
    await deadline(once(unfinished.signal, 'abort'), 'abort of the unfinished one');
    await client.waitForEnd(2);
    assert.equal(whole.signal.aborted, false);
    whole.response.writeHead(200, []);
    whole.response.write(Buffer.from('answer'));
    whole.response.end();
    await client.waitForEnd(1);
    assert.match(client.stdout(1).toString(), /answer$/);
    await client.waitClosed();
    assertEndedOnce(client, 1);
    assertEndedOnce(client, 2);
  });

  test('STDIN before the end of PARAMS is capped across the requests of a connection', async (t) => {
    let calls = 0;
    const server = await startServer(t, () => calls++, { maxEarlyStdinBytes: 100_000 });
    const client = await connect(t, server);
    client.send(beginRequest(1, { keepConn: true }), beginRequest(2, { keepConn: true }));
    client.send(stdinRecords(1, Buffer.alloc(60_000), false), stdinRecords(2, Buffer.alloc(60_000), false));
    await client.waitClosed();
    assert.equal(calls, 0);
    assert.ok(server.logs.some((l) => l.level === 'warn' && l.meta?.['code'] === 'ERR_FCGI_RECORD'));
  });
});
