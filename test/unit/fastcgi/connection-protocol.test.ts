import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import type { Exchange } from '../../../src/exchange.js';
import { ProtocolStatus, RecordType, Role } from '../../../src/fastcgi/constants.js';
import { decodeParams, encodeParams } from '../../../src/fastcgi/name-value.js';
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
  splitCgiResponse,
  startServer,
  stdinRecords,
} from './fcgi-harness.js';

const OPTIONS = { timeout: 20_000 };

function request(id: number, params: Array<[string, string]>, body: Buffer, keepConn = false): Buffer {
  return Buffer.concat([beginRequest(id, { keepConn }), paramsRecords(id, params), stdinRecords(id, body)]);
}

/** Every request's records end with an empty STDOUT then END_REQUEST, and nothing follows for it. */
function assertCleanEnd(client: FcgiClient, id: number): void {
  const types = recordTypes(client, id);
  assert.deepEqual(
    types.slice(-2),
    [RecordType.STDOUT, RecordType.END_REQUEST],
    `records of ${id}: ${types}`,
  );
  const last = client.records.filter((r) => r.requestId === id);
  assert.equal(last.at(-2)?.content.length, 0);
  assert.equal(types.filter((t) => t === RecordType.END_REQUEST).length, 1);
}

describe('FastCGI connection: protocol', OPTIONS, () => {
  test('answers a request with STDOUT then END_REQUEST, then closes without KEEP_CONN', async (t) => {
    const { path } = await startServer(t, echoHandler);
    const client = await FcgiClient.connect(t, path);
    const body = randomBytes(200_000);
    client.send(
      request(
        1,
        [
          ['REQUEST_METHOD', 'POST'],
          ['QUERY_STRING', 'a=1'],
        ],
        body,
      ),
    );
    const end = await client.waitForEnd(1);
    assert.deepEqual(endRequestFields(end), {
      appStatus: 0,
      protocolStatus: ProtocolStatus.REQUEST_COMPLETE,
    });
    await client.waitClosed();
    assertCleanEnd(client, 1);
    const { head, reply } = echoReply(client, 1);
    assert.equal(head, 'Status: 200 OK\r\nContent-Type: application/json');
    assert.deepEqual(reply, {
      params: { REQUEST_METHOD: 'POST', QUERY_STRING: 'a=1' },
      bodyLength: body.length,
      bodySha256: sha256(body),
    });
  });

  test('KEEP_CONN: two requests on one connection, which stays open', async (t) => {
    const { path } = await startServer(t, echoHandler);
    const client = await FcgiClient.connect(t, path);
    client.send(request(1, [['N', 'first']], Buffer.from('one'), true));
    await client.waitForEnd(1);
    client.send(request(2, [['N', 'second']], Buffer.from('second body'), true));
    await client.waitForEnd(2);
    assert.equal(echoReply(client, 1).reply.params['N'], 'first');
    assert.equal(echoReply(client, 2).reply.bodyLength, 11);
    assertCleanEnd(client, 1);
    assertCleanEnd(client, 2);
    // Same id again, as nginx does (always request id 1).
    client.records.length = 0;
    client.send(request(1, [['N', 'third']], Buffer.alloc(0), true));
    await client.waitForEnd(1);
    assert.equal(echoReply(client, 1).reply.params['N'], 'third');
    assert.equal(client.socket.destroyed, false);
    assert.equal(client.socket.readableEnded, false);
  });

  test('GET_VALUES is answered with only the names asked for', async (t) => {
    const { path } = await startServer(t, echoHandler, { maxConns: 7 });
    const client = await FcgiClient.connect(t, path);
    const asked = encodeParams([
      ['FCGI_MAX_CONNS', ''],
      ['FCGI_MPXS_CONNS', ''],
      ['SOMETHING_ELSE', ''],
    ]);
    client.send(encodeRecord(RecordType.GET_VALUES, 0, asked));
    const result = await client.waitFor('GET_VALUES_RESULT', (r) => r.type === RecordType.GET_VALUES_RESULT);
    assert.equal(result.requestId, 0);
    assert.deepEqual(
      decodeParams(result.content),
      new Map([
        ['FCGI_MAX_CONNS', '7'],
        ['FCGI_MPXS_CONNS', '1'],
      ]),
    );
    client.send(encodeRecord(RecordType.GET_VALUES, 0, encodeParams([['FCGI_MAX_REQS', '']])));
    await client.waitFor('second result', (r) => r.type === RecordType.GET_VALUES_RESULT && r !== result);
    const second = client.records.filter((r) => r.type === RecordType.GET_VALUES_RESULT)[1];
    assert.deepEqual(second && decodeParams(second.content), new Map([['FCGI_MAX_REQS', '100']]));
    // The connection is still usable.
    client.send(request(1, [], Buffer.alloc(0)));
    await client.waitForEnd(1);
  });

  test('an unknown record type gets UNKNOWN_TYPE and the connection goes on', async (t) => {
    const { path } = await startServer(t, echoHandler);
    const client = await FcgiClient.connect(t, path);
    client.send(
      encodeRecord(42, 0, Buffer.from('whatever')),
      encodeRecord(RecordType.DATA, 1, Buffer.from('x')),
    );
    const unknown = await client.waitFor('UNKNOWN_TYPE', (r) => r.type === RecordType.UNKNOWN_TYPE);
    assert.equal(unknown.content.readUInt8(0), 42);
    client.send(request(1, [['A', 'b']], Buffer.from('body')));
    await client.waitForEnd(1);
    assert.equal(echoReply(client, 1).reply.params['A'], 'b');
  });

  test('an unknown role gets UNKNOWN_ROLE; with KEEP_CONN the connection stays usable', async (t) => {
    const { path } = await startServer(t, echoHandler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1, { role: Role.AUTHORIZER, keepConn: true }), paramsRecords(1, [['X', 'y']]));
    const end = await client.waitForEnd(1);
    assert.equal(endRequestFields(end).protocolStatus, ProtocolStatus.UNKNOWN_ROLE);
    client.send(request(2, [['A', 'b']], Buffer.from('body')));
    await client.waitForEnd(2);
    assert.equal(echoReply(client, 2).reply.params['A'], 'b');
    assert.deepEqual(recordTypes(client, 1), [RecordType.END_REQUEST]);
  });

  test('an unknown role without KEEP_CONN: UNKNOWN_ROLE, then the connection closes', async (t) => {
    let calls = 0;
    const { path } = await startServer(t, () => calls++);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1, { role: Role.FILTER }));
    const end = await client.waitForEnd(1);
    assert.equal(endRequestFields(end).protocolStatus, ProtocolStatus.UNKNOWN_ROLE);
    await client.waitClosed();
    assert.equal(calls, 0);
  });

  test('a 64 KiB param split across many PARAMS records (and 1-byte records) arrives whole', async (t) => {
    const { path } = await startServer(t, echoHandler);
    const big = 'v'.repeat(64 * 1024);
    const params: Array<[string, string]> = [
      ['HTTP_BIG', big],
      ['N'.repeat(300), 'é'],
    ];
    for (const recordSize of [1000, 8192, 7, 1]) {
      const client = await FcgiClient.connect(t, path);
      const paramsPart =
        recordSize === 1
          ? paramsRecords(1, [['SMALL', 'split byte by byte']], 1)
          : paramsRecords(1, params, recordSize);
      client.send(beginRequest(1), paramsPart, stdinRecords(1, Buffer.alloc(0)));
      await client.waitForEnd(1);
      const want = recordSize === 1 ? { SMALL: 'split byte by byte' } : Object.fromEntries(params);
      assert.deepEqual(echoReply(client, 1).reply.params, want, `records of ${recordSize} bytes`);
    }
  });

  test('STDIN before the end of PARAMS is kept for the body', async (t) => {
    const { path } = await startServer(t, echoHandler);
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), stdinRecords(1, Buffer.from('early '), false));
    client.send(paramsRecords(1, [['A', 'b']]), stdinRecords(1, Buffer.from('late')));
    await client.waitForEnd(1);
    assert.equal(echoReply(client, 1).reply.bodyLength, 'early late'.length);
  });

  test('STDIN before the end of PARAMS is capped (it cannot pause the socket)', async (t) => {
    let calls = 0;
    const { path, logs } = await startServer(t, () => calls++, { maxEarlyStdinBytes: 100_000 });
    const client = await FcgiClient.connect(t, path);
    client.send(beginRequest(1), stdinRecords(1, Buffer.alloc(100_001), false), paramsRecords(1, []));
    await client.waitClosed();
    assert.equal(calls, 0);
    assert.ok(logs.some((l) => l.level === 'warn' && l.meta?.['code'] === 'ERR_FCGI_RECORD'));
  });

  test('PARAMS over maxParamsBytes are answered 431 with a warning; the handler is not called', async (t) => {
    let calls = 0;
    const { path, logs } = await startServer(t, () => calls++, { maxParamsBytes: 1000 });
    const client = await FcgiClient.connect(t, path);
    // Split into 300-byte records; the body that follows is discarded.
    client.send(
      beginRequest(1, { keepConn: true }),
      paramsRecords(1, [['BIG', 'x'.repeat(1001)]], 300),
      stdinRecords(1, Buffer.alloc(5000)),
    );
    const end = await client.waitForEnd(1);
    assert.deepEqual(endRequestFields(end), { appStatus: 0, protocolStatus: 0 });
    assert.match(client.stdout(1).toString('latin1'), /^Status: 431 Request Header Fields Too Large\r\n/);
    assert.equal(calls, 0);
    assert.ok(logs.some((l) => l.level === 'warn' && l.meta?.['code'] === 'ERR_FCGI_PARAMS_TOO_LARGE'));
    // The connection is still good for the next request.
    client.send(beginRequest(2), paramsRecords(2, [['A', 'b']]), stdinRecords(2, Buffer.alloc(0)));
    await deadline(
      (async () => {
        while (calls === 0) await new Promise((r) => setTimeout(r, 5));
      })(),
      'the next request',
    );
  });

  test('malformed PARAMS close the connection with ERR_FCGI_PARAMS', async (t) => {
    let calls = 0;
    const { path, logs } = await startServer(t, () => calls++);
    const client = await FcgiClient.connect(t, path);
    const bad = encodeRecord(RecordType.PARAMS, 1, Buffer.from([5, 1, 0x41]));
    client.send(beginRequest(1), bad, encodeRecord(RecordType.PARAMS, 1, Buffer.alloc(0)));
    await client.waitClosed();
    assert.equal(calls, 0);
    assert.ok(logs.some((l) => l.level === 'warn' && l.meta?.['code'] === 'ERR_FCGI_PARAMS'));
  });

  test('garbage and an HTTP request close only their own connections; a concurrent request completes', async (t) => {
    const { path, logs } = await startServer(t, echoHandler);
    const good = await FcgiClient.connect(t, path);
    good.send(
      beginRequest(1),
      paramsRecords(1, [['GOOD', 'yes']]),
      stdinRecords(1, Buffer.from('half '), false),
    );
    const garbage = randomBytes(64 * 1024);
    garbage[0] = 0x42; // Not version 1, so the very first header is already wrong.
    const inputs = [
      garbage,
      Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'),
      Buffer.concat([beginRequest(1), Buffer.from([1, 1, 0, 0, 0, 8, 0, 0])]), // BEGIN_REQUEST with id 0
      Buffer.concat([beginRequest(1), beginRequest(1)]), // BEGIN_REQUEST for the active id
    ];
    for (const input of inputs) {
      const bad = await FcgiClient.connect(t, path);
      bad.send(input);
      await bad.waitClosed();
      assert.equal(bad.records.length, 0);
    }
    good.send(stdinRecords(1, Buffer.from('and the rest')));
    await good.waitForEnd(1);
    assert.equal(echoReply(good, 1).reply.bodyLength, 'half and the rest'.length);
    const codes = logs.filter((l) => l.level === 'warn').map((l) => l.meta?.['code']);
    assert.deepEqual(codes, ['ERR_FCGI_VERSION', 'ERR_FCGI_VERSION', 'ERR_FCGI_RECORD', 'ERR_FCGI_RECORD']);
    assert.ok(logs.every((l) => l.level !== 'warn' || l.meta?.['peer'] !== undefined));
  });

  test('writeHead emits a CGI header block; a large body goes out in records of at most 65535 bytes', async (t) => {
    const payload = randomBytes(1024 * 1024 + 3);
    const { path } = await startServer(t, (exchange: Exchange) => {
      exchange.body.resume();
      const { response } = exchange;
      response.writeHead(404, [
        ['Content-Type', 'text/plain'],
        ['X-Git', 'a: b'],
      ]);
      assert.equal(response.headersSent, true);
      let at = 0;
      const pump = (): void => {
        while (at < payload.length) {
          const size = Math.min(300_000, payload.length - at);
          const ok = response.write(payload.subarray(at, at + size));
          at += size;
          if (!ok) return response.onceDrain(pump);
        }
        response.end();
        response.end();
      };
      pump();
    });
    const client = await FcgiClient.connect(t, path);
    client.send(request(1, [], Buffer.alloc(0)));
    await client.waitForEnd(1);
    await client.waitClosed();
    assertCleanEnd(client, 1);
    const { head, body } = splitCgiResponse(client.stdout(1));
    assert.equal(head, 'Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-Git: a: b');
    assert.ok(body.equals(payload));
    assert.ok(client.records.every((r) => r.content.length <= 65535));
  });

  test('writeHead rejects header injection', async (t) => {
    const errors: unknown[] = [];
    const { path } = await startServer(t, (exchange: Exchange) => {
      for (const headers of [[['X', 'a\r\nEvil: 1']], [['Bad Name', 'v']], [['', 'v']]] as const) {
        try {
          exchange.response.writeHead(200, headers);
        } catch (err) {
          errors.push(err);
        }
      }
      exchange.response.writeHead(200, []);
      exchange.response.end();
    });
    const client = await FcgiClient.connect(t, path);
    client.send(request(1, [], Buffer.alloc(0)));
    await client.waitForEnd(1);
    assert.equal(errors.length, 3);
    assert.equal(splitCgiResponse(client.stdout(1)).head, 'Status: 200 OK');
  });
});
