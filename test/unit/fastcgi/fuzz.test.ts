import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isGitFcgiError } from '../../../src/errors.js';
import type { ExchangeHandler } from '../../../src/exchange.js';
import { decodeParams } from '../../../src/fastcgi/name-value.js';
import {
  Rng,
  loadCorpus,
  nextInput,
  parseAll,
  splitRandomly,
  type FuzzInput,
} from '../../helpers/fcgi-fuzz.js';
import { waitFor } from '../../helpers/deadline.js';
import { startServer } from './fcgi-harness.js';
import { feedFastCgi } from '../../helpers/fcgi-feed.js';

/**
 * Deterministic fuzzing of the record layer. A failure names the seed and the input's index and
 * recipe; FUZZ_SEED=<n> reruns with another seed (scripts/fuzz.mjs runs many, for longer).
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20240601);
const corpus = loadCorpus();

describe('FastCGI fuzzing (in-process)', () => {
  test('RecordParser: 20,000 mutated streams frame identically whole and split, failing only with coded errors', (t) => {
    const rng = new Rng(SEED);
    const count = 20_000;
    const outcomes = new Map<string, number>();
    for (let i = 0; i < count; i++) {
      const input = nextInput(rng, corpus);
      const whole = parseAll([input.bytes]);
      const split = parseAll(splitRandomly(rng, input.bytes));
      assert.deepEqual(split, whole, `input ${i} (${input.how}) frames differently when split`);
      const key = whole.error ?? 'framed';
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    }
    t.diagnostic(`seed ${SEED}: ${count} inputs: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    assert.ok((outcomes.get('framed') ?? 0) > count / 10, 'a good share of inputs still frames');
  });

  test('decodeParams: 20,000 random and mutated params blocks fail only with ERR_FCGI_PARAMS', (t) => {
    const rng = new Rng(SEED + 1);
    let failed = 0;
    const seeds = corpus.map((s) => s.bytes.subarray(16, 16 + s.bytes.readUInt16BE(12)));
    for (let i = 0; i < 20_000; i++) {
      const base = rng.pick(seeds);
      const block = rng.chance(0.3) ? rng.bytes(rng.int(64)) : Buffer.from(base);
      for (let n = rng.int(4); n > 0 && block.length > 0; n--) block[rng.int(block.length)] = rng.int(256);
      try {
        decodeParams(rng.chance(0.2) ? block.subarray(0, rng.int(block.length + 1)) : block);
      } catch (err) {
        assert.ok(isGitFcgiError(err) && err.code === 'ERR_FCGI_PARAMS', `input ${i}: ${String(err)}`);
        failed++;
      }
    }
    t.diagnostic(`20000 params blocks, ${failed} refused`);
  });

  test('a live connection: 4,000 mutated streams, each connection closed, good requests always served', async (t) => {
    let active = 0;
    const handler: ExchangeHandler = (exchange) => {
      active++;
      let done = false;
      const finish = (answer: boolean): void => {
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
    };
    const server = await startServer(t, handler);
    const rng = new Rng(SEED + 2);
    const good = corpus.find((s) => s.name === 'get-info-refs.bin');
    assert.ok(good, 'the corpus has get-info-refs.bin');
    const total = 4000;
    let next = 0;
    let goodServed = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < total; i = next++) {
        const input = nextInput(rng, corpus);
        const pieces = splitRandomly(rng, input.bytes);
        await feed(i, input, pieces);
        if (i % 50 === 0) {
          const reply = await feed(i, { how: 'good request', bytes: good.bytes }, [good.bytes]);
          assert.match(reply.toString('latin1'), /Status: 200 OK/, `good request after input ${i}`);
          goodServed++;
        }
      }
    };
    /** Sends the pieces; the server must close on a stream it cannot parse, or once we end ours. */
    const feed = async (i: number, input: FuzzInput, pieces: readonly Buffer[]): Promise<Buffer> => {
      const broken = parseAll([input.bytes]).error !== null;
      const reply = await feedFastCgi(server.path, pieces, { end: !broken, timeoutMs: 5000 }).catch(
        (err: unknown) => {
          throw new Error(`input ${i} (${input.how}): ${String(err)}`, { cause: err });
        },
      );
      const parsed = parseAll([reply]);
      assert.equal(parsed.error, null, `input ${i} (${input.how}): the server sent malformed records`);
      return reply;
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    await waitFor(() => active === 0, { timeoutMs: 5000, what: 'every request to end' });
    const bad = server.logs.filter((l) => l.level === 'error');
    assert.deepEqual(bad, [], 'no internal errors');
    t.diagnostic(`seed ${SEED + 2}: ${total} inputs over sockets, ${goodServed} good requests served`);
  });
});
