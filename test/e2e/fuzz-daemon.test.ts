import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { startGitFcgi } from '../helpers/daemon.js';
import { describeHealth, health, isAlive } from '../helpers/daemon-health.js';
import { waitFor } from '../helpers/deadline.js';
import { feedFastCgi } from '../helpers/fcgi-feed.js';
import { Rng, loadCorpus, nextInput, parseAll, splitRandomly } from '../helpers/fcgi-fuzz.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240607);

test('the daemon survives 400 mutated nginx streams on its socket and keeps serving good requests', async (t) => {
  const root = await tmpDir(t, 'fuzzd-');
  await createBareRepo(t, root, 'demo.git', { commits: 3 });
  await createBareRepo(t, root, 'team/app.git');
  const sock = join(await tmpDir(t, 'sock-'), 'g.sock');
  const daemon = await startGitFcgi(t, ['--listen', `unix:${sock}`, '--project-root', root, '--export-all']);
  const corpus = loadCorpus();
  const good = corpus.find((s) => s.name === 'get-info-refs.bin');
  assert.ok(good);
  const serveGood = async (after: number): Promise<void> => {
    const reply = await feedFastCgi(sock, [good.bytes], { end: true, timeoutMs: 10_000 });
    assert.match(reply.toString('latin1'), /Status: 200 OK/, `a good request after input ${after}`);
  };
  await serveGood(-1);
  const before = await health(daemon.pid);
  const rng = new Rng(SEED);
  const total = 400;
  let next = 0;
  let goodServed = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < total; i = next++) {
      const input = nextInput(rng, corpus);
      const pieces = splitRandomly(rng, input.bytes);
      // A stream the record layer cannot frame must be closed by the daemon itself.
      const broken = parseAll([input.bytes]).error !== null;
      const reply = await feedFastCgi(sock, pieces, { end: !broken, timeoutMs: 10_000 }).catch(
        (err: unknown) => {
          throw new Error(`input ${i} (${input.how}), seed ${SEED}: ${String(err)}`, { cause: err });
        },
      );
      // What the daemon sends is well-framed, up to the version-0 record that cuts a response off.
      const cut = reply.indexOf(Buffer.alloc(8));
      assert.equal(parseAll([cut === -1 ? reply : reply.subarray(0, cut)]).error, null, `input ${i}`);
      if (i % 20 === 0) {
        await serveGood(i);
        goodServed++;
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  assert.ok(isAlive(daemon.pid), 'the daemon is still running');
  await serveGood(total);
  await assertNoGitProcesses(root, { withinMs: 2000 });
  let after = await health(daemon.pid);
  await waitFor(async () => (after = await health(daemon.pid)).fds <= before.fds, {
    timeoutMs: 2000,
    what: `the daemon's fds to return to ${before.fds}`,
  }).catch(() => assert.fail(`fd leak: ${describeHealth(before, after)}`));
  assert.equal(after.zombies, 0);
  assert.doesNotMatch(daemon.logs(), /internal error|request handler threw/);
  t.diagnostic(
    `seed ${SEED}: ${total} inputs, ${goodServed + 2} good requests served; ${describeHealth(before, after)}`,
  );
});
