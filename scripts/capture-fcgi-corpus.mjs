#!/usr/bin/env node
// Records the FastCGI byte streams real nginx sends for typical git requests, as the seed corpus
// of the fuzzers (test/fixtures/fcgi-corpus/*.bin). nginx is pointed at a small UNIX server that
// stores every connection's bytes and answers each request with a tiny CGI response.
//
//   npm run build:test && node scripts/capture-fcgi-corpus.mjs [OUT_DIR]
/* global Blob, fetch, AbortSignal */
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { RecordParser } from '../dist-test/src/fastcgi/record-parser.js';
import { encodeRecord } from '../dist-test/src/fastcgi/record-writer.js';
import { gitLocation, startNginx } from '../dist-test/test/helpers/nginx.js';
import { tmpDir } from '../dist-test/test/helpers/tmp.js';

const STDIN = 5;
const STDOUT = 6;
const outDir = process.argv[2] ?? new URL('../test/fixtures/fcgi-corpus/', import.meta.url).pathname;

const steps = [];
const cleanup = { after: (fn) => steps.push(fn) };
const captured = [];

try {
  const dir = await tmpDir(cleanup, 'capture-');
  const sock = join(dir, 'rec.sock');
  const server = net.createServer((socket) => {
    const chunks = [];
    captured.push(chunks);
    const parser = new RecordParser((type, id, content) => {
      if (type !== STDIN || content.length > 0) return;
      const end = Buffer.alloc(8);
      socket.end(
        Buffer.concat([
          encodeRecord(STDOUT, id, Buffer.from('Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n')),
          encodeRecord(STDOUT, id, Buffer.alloc(0)),
          encodeRecord(3, id, end),
        ]),
      );
    });
    socket.on('data', (chunk) => {
      chunks.push(Buffer.from(chunk));
      parser.push(chunk);
    });
    socket.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(sock, resolve));
  steps.push(() => server.close());
  // No GIT_PROJECT_ROOT: the daemon's --project-root applies, so the e2e fuzzer's streams reach git.
  const location = gitLocation({ socket: sock });
  const nginx = await startNginx(cleanup, {
    servers: [{ locations: location }],
    httpExtra: 'large_client_header_buffers 4 128k;',
  });
  const url = (path) => nginx.url(0, path);
  const pkt = (s) => (s.length + 4).toString(16).padStart(4, '0') + s;
  const want = `${pkt(`want ${'a'.repeat(40)} side-band-64k ofs-delta\n`)}0000${pkt('done\n')}`;
  const requests = [
    [
      'get-info-refs',
      url('/demo.git/info/refs?service=git-upload-pack'),
      { headers: { 'Git-Protocol': 'version=2' } },
    ],
    ['get-dumb-head', url('/demo.git/HEAD'), {}],
    ['head-request', url('/demo.git/info/refs'), { method: 'HEAD' }],
    [
      'post-upload-pack',
      url('/demo.git/git-upload-pack'),
      { method: 'POST', headers: { 'Content-Type': 'application/x-git-upload-pack-request' }, body: want },
    ],
    [
      'post-upload-pack-gzip',
      url('/demo.git/git-upload-pack'),
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-git-upload-pack-request', 'Content-Encoding': 'gzip' },
        body: gzipSync(want),
      },
    ],
    [
      // A body without a length: nginx streams it (fastcgi_request_buffering off), no CONTENT_LENGTH.
      'post-receive-pack-chunked',
      url('/team/app.git/git-receive-pack'),
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-git-receive-pack-request' },
        body: new Blob([Buffer.alloc(70_000, 1)]).stream(),
        duplex: 'half',
      },
    ],
    [
      'post-receive-pack-large',
      url('/team/app.git/git-receive-pack'),
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-git-receive-pack-request' },
        body: Buffer.alloc(140_000, 7),
      },
    ],
    // nginx sends all params in one record and refuses (500) more than 64 KiB: this is near the top.
    [
      'big-params',
      url('/demo.git/info/refs?service=git-upload-pack'),
      { headers: { 'X-Big': 'b'.repeat(60_000) } },
    ],
  ];
  const names = [];
  for (const [name, target, init] of requests) {
    const before = captured.length;
    const res = await fetch(target, { ...init, signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    if (captured.length !== before + 1)
      throw new Error(`${name}: expected one FastCGI connection (got HTTP ${res.status})`);
    names.push(name);
  }
  await mkdir(outDir, { recursive: true });
  for (const [i, name] of names.entries()) {
    const bytes = Buffer.concat(captured[i]);
    await writeFile(join(outDir, `${name}.bin`), bytes);
    console.log(`${name}.bin: ${bytes.length} bytes`);
  }
} finally {
  for (let step = steps.pop(); step !== undefined; step = steps.pop()) await step();
}
