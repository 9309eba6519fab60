import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Exchange } from '../../../src/exchange.js';
import { RecordType } from '../../../src/fastcgi/constants.js';
import type { FastCgiConnectionHandle } from '../../../src/fastcgi/connection.js';
import {
  FcgiClient,
  beginRequest,
  deadline,
  echoHandler,
  paramsRecords,
  startServer,
  stdinRecords,
  type TestServer,
} from './fcgi-harness.js';

const OPTIONS = { timeout: 30_000 };

const request = (id: number, keepConn: boolean): Buffer[] => [
  beginRequest(id, { keepConn }),
  paramsRecords(id, [['REQUEST_METHOD', 'GET']]),
  stdinRecords(id, Buffer.alloc(0)),
];

/** The server side of the first connection, once accepted. */
async function accepted(server: TestServer): Promise<FastCgiConnectionHandle> {
  await deadline(
    (async () => {
      while (server.connections.length === 0) await sleep(5);
    })(),
    'the server to accept',
  );
  const [connection] = server.connections;
  assert.ok(connection !== undefined);
  return connection;
}

describe('FastCGI connection: drain (the daemon stops)', OPTIONS, () => {
  test('idle between kept-alive requests: closed at once', async (t) => {
    const server = await startServer(t, echoHandler);
    const client = await FcgiClient.connect(t, server.path);
    client.send(...request(1, true));
    await client.waitForEnd(1);
    (await accepted(server)).drain(10_000);
    await client.waitClosed();
  });

  test('in a kept-alive request: that response is completed, then the connection closed', async (t) => {
    let held: Exchange | undefined;
    const server = await startServer(t, (exchange) => (held = exchange));
    const client = await FcgiClient.connect(t, server.path);
    client.send(...request(1, true));
    const connection = await accepted(server);
    await deadline(
      (async () => {
        while (held === undefined) await sleep(5);
      })(),
      'the handler',
    );
    connection.drain(10_000);
    await sleep(50);
    assert.equal(client.socket.destroyed, false, 'still open while the request runs');
    held?.response.writeHead(200, [['Content-Type', 'text/plain']]);
    held?.response.write(Buffer.from('done'));
    held?.response.end();
    await client.waitForEnd(1);
    assert.equal(client.stdout(1).toString('latin1').endsWith('done'), true);
    await client.waitClosed();
  });

  test('accepted, nothing sent yet: a request that comes within the grace is served', async (t) => {
    const server = await startServer(t, echoHandler);
    const client = await FcgiClient.connect(t, server.path);
    (await accepted(server)).drain(10_000);
    await sleep(100);
    client.send(...request(1, false));
    const end = await client.waitForEnd(1);
    assert.equal(end.type, RecordType.END_REQUEST);
    assert.match(client.stdout(1).toString('latin1'), /^Status: 200/m);
  });

  test('accepted, nothing sent within the grace: closed', async (t) => {
    const server = await startServer(t, echoHandler);
    const client = await FcgiClient.connect(t, server.path);
    const started = Date.now();
    (await accepted(server)).drain(200);
    await client.waitClosed();
    assert.ok(Date.now() - started >= 150, `closed after ${Date.now() - started} ms`);
  });
});
