#!/usr/bin/env node
// Long run of the FastCGI fuzzer (the suite's test/unit/fastcgi/fuzz.test.ts runs a few seconds of it):
// mutated nginx request streams through RecordParser, and over real UNIX sockets into
// serveFastCgiConnection with a trivial handler, with a good request every 50 inputs.
//
//   npm run build:test && node scripts/fuzz.mjs [--seconds 60] [--seed N]
// Prints the inputs tried; exits 1 on the first failure, naming seed, index and recipe.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { serveFastCgiConnection } from '../dist-test/src/fastcgi/connection.js';
import { Rng, loadCorpus, nextInput, parseAll, splitRandomly } from '../dist-test/test/helpers/fcgi-fuzz.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    seed: { type: 'string', default: String(Date.now() % 1e9) },
  },
});
const seconds = Number(values.seconds);
const seed = Number(values.seed);
const corpus = loadCorpus();
const good = corpus.find((s) => s.name === 'get-info-refs.bin').bytes;
const rng = new Rng(seed);
const stopAt = Date.now() + seconds * 1000;

let active = 0;
const errors = [];
const dir = mkdtempSync(join(tmpdir(), 'git-fcgi-fuzz-'));
const path = join(dir, 'f.sock');
const server = net.createServer((socket) =>
  serveFastCgiConnection(
    socket,
    (exchange) => {
      active++;
      let done = false;
      const finish = (answer) => {
        if (done) return;
        done = true;
        active--;
        if (answer) {
          exchange.response.writeHead(200, [['Content-Type', 'text/plain']]);
          exchange.response.write(Buffer.from('ok\n'));
        }
        exchange.response.end();
      };
      exchange.body.on('data', () => undefined);
      exchange.body.once('end', () => finish(true));
      exchange.signal.addEventListener('abort', () => finish(false), { once: true });
    },
    {
      maxParamsBytes: 256 * 1024,
      log: (level, message, meta) => {
        if (level === 'error') errors.push(`${message} ${JSON.stringify(meta)}`);
      },
    },
  ),
);
await new Promise((resolve) => server.listen(path, resolve));

function fail(message) {
  console.error(`FAIL (seed ${seed}): ${message}`);
  process.exit(1);
}

function feed(i, how, bytes, pieces) {
  const broken = parseAll([bytes]).error !== null;
  return new Promise((resolve) => {
    const socket = net.connect(path);
    const received = [];
    socket.on('data', (chunk) => received.push(chunk));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => fail(`input ${i} (${how}): connection not closed within 5 s`), 5000);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const reply = Buffer.concat(received);
      if (parseAll([reply]).error !== null) fail(`input ${i} (${how}): malformed records from the server`);
      resolve(reply);
    };
    socket.once('end', done);
    socket.once('close', done);
    for (const piece of pieces) socket.write(piece);
    if (!broken) socket.end();
  });
}

let parsed = 0;
let overSockets = 0;
let goodServed = 0;
let i = 0;
const worker = async () => {
  while (Date.now() < stopAt) {
    const n = i++;
    const input = nextInput(rng, corpus);
    const pieces = splitRandomly(rng, input.bytes);
    const whole = parseAll([input.bytes]);
    if (JSON.stringify(parseAll(pieces)) !== JSON.stringify(whole))
      fail(`input ${n} (${input.how}) frames differently split`);
    parsed++;
    await feed(n, input.how, input.bytes, pieces);
    overSockets++;
    if (n % 50 === 0) {
      const reply = await feed(n, 'good request', good, [good]);
      if (!reply.toString('latin1').includes('Status: 200 OK'))
        fail(`good request after input ${n} not served`);
      goodServed++;
    }
  }
};
await Promise.all(Array.from({ length: 32 }, worker));
const idleBy = Date.now() + 5000;
while (active > 0 && Date.now() < idleBy) await new Promise((r) => setTimeout(r, 10));
if (active > 0) fail(`${active} request(s) never ended`);
if (errors.length > 0) fail(`internal errors: ${errors.slice(0, 5).join('; ')}`);
server.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  `seed ${seed}: ${parsed} inputs parsed whole and split, ${overSockets} over sockets, ${goodServed} good requests served, 0 failures`,
);
