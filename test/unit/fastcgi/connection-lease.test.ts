import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Exchange } from '../../../src/exchange.js';
import { RecordType } from '../../../src/fastcgi/constants.js';
import { encodeParams } from '../../../src/fastcgi/name-value.js';
import { encodeRecord, recordHeader } from '../../../src/fastcgi/record-writer.js';
import {
  FcgiClient,
  beginRequest,
  deadline,
  paramsRecords,
  startServer,
  stdinRecords,
} from './fcgi-harness.js';

/**
 * A response lends its connection to git-fcgi-splice (ResponseSink.lend): the splice's records
 * are written by another process, so while the lease is out the connection writes nothing of its
 * own, end() and abort() wait for the lease to come back, and a splice that stopped inside a
 * record has that record completed before the connection is cut off. The "splice" here is the
 * test writing to the server's socket, as the helper does through its copy of the descriptor.
 */
/** Every record's type, in order, whatever its request. */
const types = (client: FcgiClient): number[] => client.records.map((r) => r.type);

describe('FastCGI connection: lending it to a splice', () => {
  const setup = async (t: Parameters<typeof startServer>[0], keepConn = false) => {
    const exchanges: Exchange[] = [];
    const server = await startServer(t, (e) => exchanges.push(e));
    const client = await FcgiClient.connect(t, server.path);
    client.send(beginRequest(1, { keepConn }), paramsRecords(1, []), stdinRecords(1, Buffer.alloc(0), true));
    await deadline(
      (async () => {
        while (exchanges.length === 0) await sleep(5);
      })(),
      'the handler',
    );
    const exchange = exchanges[0];
    assert.ok(exchange !== undefined);
    const socket = server.sockets[0];
    assert.ok(socket !== undefined);
    return { exchange, client, socket, exchanges };
  };

  test('only once the head is out; the lease carries the handle and the request id', async (t) => {
    const { exchange } = await setup(t);
    const { response } = exchange;
    assert.equal(response.lend?.(), null, 'not before the head');
    response.writeHead(200, [['Content-Type', 'x/y']]);
    const lease = response.lend?.();
    assert.ok(lease !== null && lease !== undefined);
    assert.equal(lease.requestId, 1);
    assert.ok(typeof lease.handle === 'object');
    assert.equal(response.lend?.(), null, 'not twice');
    assert.throws(() => response.write(Buffer.from('x')), /lent/);
  });

  test('end() waits for the lease; records of the connection itself are held meanwhile', async (t) => {
    const { exchange, client, socket } = await setup(t, true);
    const { response } = exchange;
    response.writeHead(200, []);
    const lease = response.lend?.();
    assert.ok(lease);
    // The splice's record, then the connection's own answer to a management record.
    socket.write(Buffer.concat([recordHeader(RecordType.STDOUT, 1, 5), Buffer.from('hello')]));
    client.send(encodeRecord(RecordType.GET_VALUES, 0, encodeParams([['FCGI_MPXS_CONNS', '']])));
    response.end();
    await sleep(50);
    assert.deepEqual(types(client), [RecordType.STDOUT, RecordType.STDOUT], 'nothing else yet');
    lease.giveBack({ headerAt: 8, owed: 0 });
    await client.waitForEnd(1);
    assert.deepEqual(types(client), [
      RecordType.STDOUT,
      RecordType.STDOUT,
      RecordType.GET_VALUES_RESULT,
      RecordType.STDOUT,
      RecordType.END_REQUEST,
    ]);
    assert.match(client.stdout(1).toString(), /hello$/);
    assert.equal(client.protocolError, null);
  });

  test('a splice cut inside a record: the record is completed, then the connection is cut off', async (t) => {
    for (const headerAt of [8, 3]) {
      const { exchange, client, socket } = await setup(t);
      const { response } = exchange;
      response.writeHead(200, []);
      const lease = response.lend?.();
      assert.ok(lease);
      const header = recordHeader(RecordType.STDOUT, 1, 100);
      if (headerAt === 8) socket.write(Buffer.concat([header, Buffer.alloc(40, 'a')]));
      else socket.write(header.subarray(0, headerAt));
      const owed = headerAt === 8 ? 60 : 100;
      response.abort(new Error('idle'));
      await sleep(20);
      lease.giveBack({ headerAt, owed });
      await client.waitClosed();
      const records = client.records.filter((r) => r.type === RecordType.STDOUT);
      const last = records.at(-1);
      assert.equal(last?.content.length, 100, `headerAt ${headerAt}: the record whole`);
      assert.ok(client.protocolError !== null, 'then a record no front end accepts');
      assert.ok(!types(client).includes(RecordType.END_REQUEST));
    }
  });

  test('end() after a cut is an abort: never END_REQUEST after a short record', async (t) => {
    const { exchange, client, socket } = await setup(t);
    const { response } = exchange;
    response.writeHead(200, []);
    const lease = response.lend?.();
    assert.ok(lease);
    socket.write(Buffer.concat([recordHeader(RecordType.STDOUT, 1, 10), Buffer.from('abc')]));
    lease.giveBack({ headerAt: 8, owed: 7 });
    response.end();
    await client.waitClosed();
    assert.ok(!types(client).includes(RecordType.END_REQUEST));
    assert.ok(client.protocolError !== null);
  });

  test("'broken': the connection is destroyed without another byte", async (t) => {
    const { exchange, client, socket } = await setup(t);
    const { response } = exchange;
    response.writeHead(200, []);
    const lease = response.lend?.();
    assert.ok(lease);
    socket.write(recordHeader(RecordType.STDOUT, 1, 10));
    lease.giveBack('broken');
    response.end();
    await client.waitClosed();
    assert.equal(client.protocolError, null, 'no invalid record: nothing was written');
    assert.ok(!types(client).includes(RecordType.END_REQUEST));
  });

  test('not lent while another request shares the connection (multiplexing)', async (t) => {
    const exchanges: Exchange[] = [];
    const server = await startServer(t, (e) => exchanges.push(e));
    const client = await FcgiClient.connect(t, server.path);
    for (const id of [1, 2]) {
      client.send(
        beginRequest(id, { keepConn: true }),
        paramsRecords(id, []),
        stdinRecords(id, Buffer.alloc(0), true),
      );
    }
    await deadline(
      (async () => {
        while (exchanges.length < 2) await sleep(5);
      })(),
      'both handlers',
    );
    const [first] = exchanges;
    assert.ok(first);
    first.response.writeHead(200, []);
    assert.equal(first.response.lend?.(), null);
  });
});
