/**
 * Interop with libfcgi's own client: Debian's `cgi-fcgi -bind -connect SOCK` turns its
 * environment into PARAMS (split at 8 KiB) and its stdin into STDIN, and prints STDOUT.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Exchange } from '../../src/exchange.js';
import { serveFastCgiConnection } from '../../src/fastcgi/connection.js';
import { skipWithout } from '../helpers/tools.js';

const CGI_FCGI = '/usr/bin/cgi-fcgi';
const DEADLINE_MS = 20_000;
const skip = skipWithout('cgi-fcgi');

/** Echoes selected params as headers, then the body as it came, after a JSON summary line. */
function echoHandler(exchange: Exchange): void {
  const chunks: Buffer[] = [];
  exchange.body.on('data', (chunk: Buffer) => chunks.push(chunk));
  exchange.body.on('end', () => {
    const body = Buffer.concat(chunks);
    const summary = {
      method: exchange.params.get('REQUEST_METHOD'),
      contentLength: exchange.params.get('CONTENT_LENGTH'),
      bigLength: exchange.params.get('HTTP_X_BIG')?.length,
      bigSha256: createHash('sha256')
        .update(exchange.params.get('HTTP_X_BIG') ?? '')
        .digest('hex'),
      unicode: exchange.params.get('HTTP_X_UNICODE'),
      bodyLength: body.length,
    };
    exchange.response.writeHead(201, [
      ['Content-Type', 'application/octet-stream'],
      ['X-Echo-Method', summary.method ?? ''],
    ]);
    exchange.response.write(Buffer.from(`${JSON.stringify(summary)}\n`));
    let at = 0;
    const pump = (): void => {
      while (at < body.length) {
        const piece = body.subarray(at, at + 100_000);
        at += piece.length;
        if (!exchange.response.write(piece)) return exchange.response.onceDrain(pump);
      }
      exchange.response.end();
    };
    pump();
  });
}

async function startServer(t: TestContext): Promise<{ path: string; warnings: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'git-fcgi-cgi-fcgi-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const warnings: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    serveFastCgiConnection(socket, echoHandler, {
      maxParamsBytes: 1024 * 1024,
      log: (level, message, meta) => {
        if (level === 'warn' || level === 'error') warnings.push(`${message} ${JSON.stringify(meta)}`);
      },
    });
  });
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const path = join(dir, 'fcgi.sock');
  server.listen(path);
  await once(server, 'listening', { signal: AbortSignal.timeout(DEADLINE_MS) });
  return { path, warnings };
}

interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

async function runCgiFcgi(
  t: TestContext,
  path: string,
  env: Record<string, string>,
  input: Buffer,
): Promise<RunResult> {
  const child = spawn(CGI_FCGI, ['-bind', '-connect', path], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  child.stdin.on('error', () => undefined); // EPIPE if it stops reading early; the output says why.
  child.stdin.end(input);
  const [code] = (await once(child, 'close', { signal: AbortSignal.timeout(DEADLINE_MS) })) as [
    number | null,
  ];
  return { code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString() };
}

test(
  'cgi-fcgi -bind: split PARAMS, a 1 MiB body and the response survive the round trip',
  { skip, timeout: 60_000 },
  async (t) => {
    const { path, warnings } = await startServer(t);
    const body = randomBytes(1024 * 1024);
    const big = 'x'.repeat(20 * 1024);
    const env = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      REQUEST_METHOD: 'POST',
      CONTENT_LENGTH: String(body.length),
      HTTP_X_BIG: big,
      HTTP_X_UNICODE: 'h\u00e9llo \u4e16\u754c',
    };
    const { code, stdout, stderr } = await runCgiFcgi(t, path, env, body);
    assert.equal(code, 0, `cgi-fcgi exited ${code}: ${stderr}`);
    const headEnd = stdout.indexOf('\r\n\r\n');
    assert.ok(
      headEnd > 0,
      `no header block in ${JSON.stringify(stdout.subarray(0, 200).toString('latin1'))}`,
    );
    assert.equal(
      stdout.toString('latin1', 0, headEnd),
      'Status: 201 Created\r\nContent-Type: application/octet-stream\r\nX-Echo-Method: POST',
    );
    const rest = stdout.subarray(headEnd + 4);
    const lineEnd = rest.indexOf('\n');
    assert.deepEqual(JSON.parse(rest.toString('utf8', 0, lineEnd)), {
      method: 'POST',
      contentLength: String(body.length),
      bigLength: big.length,
      bigSha256: createHash('sha256').update(big).digest('hex'),
      unicode: 'h\u00e9llo \u4e16\u754c',
      bodyLength: body.length,
    });
    assert.ok(rest.subarray(lineEnd + 1).equals(body), 'echoed body differs');
    assert.deepEqual(warnings, []);
  },
);

test('cgi-fcgi -bind: a GET without a body', { skip, timeout: 60_000 }, async (t) => {
  const { path, warnings } = await startServer(t);
  const env = { REQUEST_METHOD: 'GET', QUERY_STRING: 'service=git-upload-pack' };
  const { code, stdout, stderr } = await runCgiFcgi(t, path, env, Buffer.alloc(0));
  assert.equal(code, 0, `cgi-fcgi exited ${code}: ${stderr}`);
  assert.match(
    stdout.toString('latin1'),
    /^Status: 201 Created\r\n[^]*\r\n\r\n\{"method":"GET",[^]*"bodyLength":0\}\n$/,
  );
  assert.deepEqual(warnings, []);
});
