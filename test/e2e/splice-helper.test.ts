import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import type { GitFcgiError } from '../../src/errors.js';
import type { LeaseReturn, ResponseLease } from '../../src/exchange.js';
import { SpliceHelper, type Splice } from '../../src/request/splice-helper.js';
import { defer, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { tmpDir } from '../helpers/tmp.js';
import { fakeLog } from '../unit/request/relay-fakes.js';

const SPLICE_HELPER = join(repoRoot, 'dist', 'git-fcgi-splice');

/**
 * git-fcgi-splice (src/native/splice.c) as the daemon drives it, on real sockets: a stand-in
 * for the backend's stdout and one for the FastCGI connection, each a connected pair.
 */
interface Rig {
  readonly helper: SpliceHelper;
  /** Written by the test as git would write its stdout. */
  readonly git: net.Socket;
  /** Our end of stdout, handed to the helper (paused, as the daemon leaves it). */
  readonly stdout: net.Socket;
  /** Our end of the connection, lent to the helper. */
  readonly connection: net.Socket;
  /** nginx's end: what the front end reads. */
  readonly nginx: net.Socket;
  lease(requestId: number): ResponseLease & { readonly returned: Promise<LeaseReturn> };
}

async function pair(
  t: Cleanup,
  server: net.Server,
  where: string | net.TcpNetConnectOpts,
): Promise<[net.Socket, net.Socket]> {
  const client = typeof where === 'string' ? net.connect(where) : net.connect(where);
  const [accepted] = (await once(server, 'connection')) as [net.Socket];
  await once(client, 'connect').catch(() => {});
  defer(t, () => {
    client.destroy();
    accepted.destroy();
  });
  return [client, accepted];
}

async function tcpPair(t: Cleanup): Promise<[net.Socket, net.Socket]> {
  const tcp = net.createServer({ pauseOnConnect: true });
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');
  defer(t, () => tcp.close());
  const { port } = tcp.address() as net.AddressInfo;
  return pair(t, tcp, { host: '127.0.0.1', port });
}

/** The connection over a UNIX socket (nginx's usual `fastcgi_pass unix:`), or over TCP. */
async function rig(t: Cleanup, transport: 'unix' | 'tcp' = 'unix'): Promise<Rig> {
  const helper = await SpliceHelper.start(SPLICE_HELPER, fakeLog());
  defer(t, () => helper.close());
  const path = join(await tmpDir(t, 'splice-rig-'), 's.sock');
  const server = net.createServer({ pauseOnConnect: true });
  server.listen(path);
  await once(server, 'listening');
  defer(t, () => server.close());
  const [git, stdout] = await pair(t, server, path);
  const [nginx, connection] = transport === 'unix' ? await pair(t, server, path) : await tcpPair(t);
  nginx.resume();
  return {
    helper,
    git,
    stdout,
    connection,
    nginx,
    lease(requestId) {
      let give: (where: LeaseReturn) => void = () => {};
      const returned = new Promise<LeaseReturn>((resolve) => (give = resolve));
      const handle = (connection as unknown as { _handle: object })._handle;
      return { handle, requestId, giveBack: (where) => give(where), returned };
    },
  };
}

interface Ended {
  readonly bytes: number;
  readonly error?: GitFcgiError;
}

function start(
  r: Rig,
  requestId: number,
): { splice: Splice; ended: Promise<Ended>; progress: number[]; lease: ReturnType<Rig['lease']> } {
  const progress: number[] = [];
  let end: (e: Ended) => void = () => {};
  const ended = new Promise<Ended>((resolve) => (end = resolve));
  const lease = r.lease(requestId);
  const splice = r.helper.splice(r.stdout, lease, {
    progress: (bytes) => progress.push(bytes),
    ended: (bytes, error) => end(error === undefined ? { bytes } : { bytes, error }),
  });
  assert.ok(splice !== null);
  return { splice, ended, progress, lease };
}

/** STDOUT records off `stream`: their contents, and what a record cut short still lacks. */
function parseRecords(
  stream: Buffer,
  requestId: number,
): { content: Buffer; headerAt: number; owed: number } {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < stream.length) {
    if (stream.length - at < 8)
      return { content: Buffer.concat(parts), headerAt: stream.length - at, owed: -1 };
    assert.equal(stream[at], 1, `version at ${at}`);
    assert.equal(stream[at + 1], 6, `STDOUT at ${at}`);
    assert.equal(stream.readUInt16BE(at + 2), requestId);
    const length = stream.readUInt16BE(at + 4);
    assert.ok(length > 0, 'no empty record: that would end the stream');
    assert.equal(stream[at + 6], 0, 'no padding');
    const body = stream.subarray(at + 8, at + 8 + length);
    parts.push(body);
    at += 8 + length;
    if (body.length < length)
      return { content: Buffer.concat(parts), headerAt: 8, owed: length - body.length };
  }
  return { content: Buffer.concat(parts), headerAt: 8, owed: 0 };
}

function collect(socket: net.Socket): () => Buffer {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  return () => Buffer.concat(chunks);
}

test('git-fcgi-splice: what git writes, in writes of every size, arrives as STDOUT records, byte for byte', async (t) => {
  const r = await rig(t);
  const received = collect(r.nginx);
  const { ended, lease } = start(r, 0x1234);
  const data = randomBytes(3 * 1024 * 1024 + 77);
  // Writes of 1 byte to 200 KB, some apart in time, so that reads end anywhere.
  let at = 0;
  for (let size = 1; at < data.length; size = (size * 7 + 13) % 200_000 || 1) {
    const chunk = data.subarray(at, at + size);
    at += chunk.length;
    if (!r.git.write(chunk)) await once(r.git, 'drain');
    if (size % 5 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  r.git.end();
  const end = await withDeadline(ended, 10_000, 'the splice to end');
  assert.deepEqual(end, { bytes: data.length });
  assert.deepEqual(await lease.returned, { headerAt: 8, owed: 0 });
  await waitFor(() => received().length >= data.length, { timeoutMs: 5000, what: 'nginx to read it all' });
  const { content, owed } = parseRecords(received(), 0x1234);
  assert.equal(owed, 0);
  assert.ok(content.equals(data), 'the same bytes');
  // The connection is ours again: the daemon writes END_REQUEST after the records.
  r.connection.write('after');
  await waitFor(() => received().subarray(-5).toString() === 'after', {
    timeoutMs: 2000,
    what: 'our own write',
  });
});

test('git-fcgi-splice: a short write is not held back waiting for more (coalescing waits at most a millisecond)', async (t) => {
  const r = await rig(t);
  const received = collect(r.nginx);
  const { ended } = start(r, 3);
  // Each write alone, then nothing until it has arrived: every wait for more runs out. A wait
  // that were counted in the wrong unit, or that waited for a whole record, would show here.
  const latencies: number[] = [];
  let expected = 0;
  for (let i = 0; i < 25; i++) {
    const chunk = randomBytes(1 + ((i * 997) % 9000));
    const started = process.hrtime.bigint();
    r.git.write(chunk);
    expected += chunk.length + 8;
    await waitFor(() => received().length >= expected, {
      timeoutMs: 2000,
      intervalMs: 1,
      what: `write ${i} at nginx`,
    });
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  r.git.end();
  await withDeadline(ended, 5000, 'the splice to end');
  const { content } = parseRecords(received(), 3);
  assert.equal(content.length, expected - 25 * 8, 'one record per write');
  latencies.sort((a, b) => a - b);
  const median = latencies[Math.floor(latencies.length / 2)] ?? Infinity;
  const max = latencies.at(-1) ?? Infinity;
  t.diagnostic(`write to nginx: median ${median.toFixed(2)} ms, max ${max.toFixed(2)} ms`);
  assert.ok(median < 50, `median ${median} ms`);
});

test('git-fcgi-splice: cancelled while the front end reads slowly, it says where the record stands (14 cuts, most inside a record)', async (t) => {
  const inside = { header: 0, body: 0, between: 0 };
  // Over TCP a full socket takes part of a write: the cut falls inside a record most times.
  for (let round = 0; round < 14; round++) {
    const r = await rig(t, round % 7 === 6 ? 'unix' : 'tcp');
    // A front end that reads a little now and then: each read frees a little room, so the
    // helper's writes go in parts and it waits inside records.
    const received = collect(r.nginx);
    let trickle = true;
    r.nginx.on('data', () => {
      if (!trickle) return;
      r.nginx.pause();
      setTimeout(() => trickle && r.nginx.resume(), 3);
    });
    const { splice, ended, lease } = start(r, 7);
    // More than the socket buffers hold: the helper blocks again and again.
    const data = randomBytes(16 * 1024 * 1024);
    r.git.write(data);
    await new Promise((resolve) => setTimeout(resolve, 100 + round * 37));
    trickle = false;
    r.nginx.pause();
    splice.cancel();
    const end = await withDeadline(ended, 5000, 'the cancelled splice to report');
    assert.equal(end.error?.code, 'ERR_SPLICE');
    const where = await lease.returned;
    assert.notEqual(where, 'broken');
    if (where === 'broken') return;
    // Everything the helper wrote, then what it says is owed, makes whole records.
    r.nginx.resume();
    r.connection.write(Buffer.alloc(0));
    await waitFor(
      () => {
        const parsed = parseRecords(received(), 7);
        return parsed.content.length === end.bytes && (parsed.owed === where.owed || parsed.owed === -1);
      },
      { timeoutMs: 5000, what: `nginx to read the ${end.bytes} bytes written` },
    );
    const parsed = parseRecords(received(), 7);
    if (parsed.owed === -1) {
      assert.equal(parsed.headerAt, where.headerAt, 'inside a header');
      inside.header++;
    } else {
      assert.equal(where.headerAt, 8);
      assert.equal(parsed.owed, where.owed, 'inside a record: the bytes it lacks');
      if (parsed.owed > 0) inside.body++;
      else inside.between++;
    }
    assert.ok(parsed.content.equals(data.subarray(0, parsed.content.length)), 'a prefix of what git wrote');
  }
  t.diagnostic(
    `cut inside a header ${inside.header}, inside a body ${inside.body}, between records ${inside.between}`,
  );
  assert.ok(inside.body + inside.header > 0, 'at least one cut inside a record');
});

test('git-fcgi-splice: a front end that closed is a client gone (EPIPE), and the connection is not to be written', async (t) => {
  const r = await rig(t);
  const { ended, lease } = start(r, 1);
  r.git.write(randomBytes(100_000));
  await waitFor(() => r.nginx.bytesRead > 0, { timeoutMs: 5000, what: 'bytes to arrive' });
  r.nginx.destroy();
  r.git.write(randomBytes(1024 * 1024));
  const end = await withDeadline(ended, 5000, 'the splice to end');
  assert.equal(end.error?.code, 'ERR_CLIENT_ABORT');
  assert.equal(end.error?.status, 499);
  assert.equal(await lease.returned, 'broken');
});

test('git-fcgi-splice: the helper gone ends every splice it had; the next request relays through Node', async (t) => {
  const r = await rig(t);
  const { ended, lease } = start(r, 1);
  r.git.write(randomBytes(10_000));
  await waitFor(() => r.nginx.bytesRead > 0, { timeoutMs: 5000, what: 'bytes to arrive' });
  r.helper.close();
  const end = await withDeadline(ended, 5000, 'the splice to end');
  assert.match(end.error?.message ?? '', /gone/);
  assert.equal(await lease.returned, 'broken');
  assert.equal(r.helper.available, false);
  assert.equal(r.helper.splice(r.stdout, r.lease(2), { progress() {}, ended() {} }), null);
});
