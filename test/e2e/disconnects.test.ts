import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { describeHealth, health, type Health } from '../helpers/daemon-health.js';
import { waitFor } from '../helpers/deadline.js';
import { beginRequest, gitParams, paramsRecords, stdinRecords } from '../helpers/fcgi-client.js';
import { Rng } from '../helpers/fcgi-fuzz.js';
import { makePushPack, receivePackRequest, uploadPackRequest, type PushPack } from '../helpers/git-wire.js';
import { gitLocation, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { git, randomBlobRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

const SEED = Number(process.env.FUZZ_SEED ?? 4242);
/** scripts/disconnects.mjs raises these for a long run. */
const TRIALS = Number(process.env.DISCONNECT_TRIALS ?? 300);
const NGINX_TRIALS = Number(process.env.DISCONNECT_NGINX_TRIALS ?? 60);

/**
 * Clients that go away at random points of clones and pushes: hundreds of trials on the raw
 * socket and through nginx. Afterwards no git process is left, nothing is a zombie, and the
 * daemon's fds and memory are where they were.
 */
describe('client disconnects at random points', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let repo: string;
  let head: string;
  let push: PushPack;
  let sock: string;
  let daemon: GitFcgi;
  let nginx: Nginx;

  before(async () => {
    root = await tmpDir(suite, 'disc-');
    const big = await randomBlobRepo(suite, root, 'big.git', { bytes: 8 * 1024 * 1024 });
    repo = big.path;
    head = big.head;
    // Packed, so that pack-objects streams at once instead of compressing loose objects first.
    await git(suite, ['repack', '-adq'], { cwd: repo });
    push = await makePushPack(suite, repo, head, 2 * 1024 * 1024);
    sock = join(await tmpDir(suite, 'sock-'), 'g.sock');
    daemon = await startGitFcgi(suite, ['--listen', `unix:${sock}`, '--project-root', root, '--export-all']);
    nginx = await startNginx(suite, { servers: [{ locations: gitLocation({ socket: sock }) }] });
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  function cloneStream(): Buffer {
    const body = uploadPackRequest(head);
    const params = gitParams('/big.git/git-upload-pack', {
      REQUEST_METHOD: 'POST',
      CONTENT_TYPE: 'application/x-git-upload-pack-request',
      CONTENT_LENGTH: String(body.length),
    });
    return Buffer.concat([beginRequest(), paramsRecords(params), stdinRecords(body)]);
  }

  function pushStream(ref: string, withLength: boolean): Buffer {
    const body = receivePackRequest(ref, push.commit, push.pack);
    const params = gitParams('/big.git/git-receive-pack', {
      REQUEST_METHOD: 'POST',
      CONTENT_TYPE: 'application/x-git-receive-pack-request',
      CONTENT_LENGTH: withLength ? String(body.length) : '',
      REMOTE_USER: 'alice',
    });
    return Buffer.concat([beginRequest(), paramsRecords(params), stdinRecords(body)]);
  }

  /** Sends `bytes`, then hangs up once `readBytes` came back or `afterMs` passed, whichever is first. */
  function hangUp(bytes: Buffer, readBytes: number, afterMs: number): Promise<number> {
    return new Promise((resolve) => {
      const socket = net.connect(sock);
      let received = 0;
      const done = (): void => {
        clearTimeout(timer);
        socket.destroy();
        resolve(received);
      };
      const timer = setTimeout(done, afterMs);
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received >= readBytes) done();
      });
      socket.on('error', done);
      socket.on('close', done);
      socket.write(bytes);
    });
  }

  async function settled(before: Health): Promise<Health> {
    await assertNoGitProcesses(root, { withinMs: 2000 });
    let now = await health(daemon.pid);
    await waitFor(async () => (now = await health(daemon.pid)).fds <= before.fds && now.zombies === 0, {
      timeoutMs: 2000,
      what: 'fds back and no zombies',
    }).catch(() => assert.fail(`after the trials: ${describeHealth(before, now)}`));
    return now;
  }

  test(`${TRIALS} clones and pushes cut off on the raw socket`, async (t) => {
    const rng = new Rng(SEED);
    const trial = async (i: number): Promise<void> => {
      const kind = rng.int(10);
      if (kind < 5) {
        // A clone: hang up after some of the pack, or some milliseconds, arrived.
        await hangUp(cloneStream(), rng.int(4 * 1024 * 1024), rng.int(400));
      } else if (kind < 9) {
        // A push: the request stops anywhere, then the client is gone.
        const stream = pushStream(`refs/heads/t${i}`, rng.chance(0.5));
        await hangUp(stream.subarray(0, rng.int(stream.length)), 1, rng.int(100));
      } else {
        await hangUp(cloneStream().subarray(0, rng.int(600)), 1, rng.int(50));
      }
    };
    const run = async (from: number, to: number): Promise<void> => {
      let next = from;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let i = next++; i < to; i = next++) await trial(i);
        }),
      );
    };
    // Warm-up: the daemon's heap and fd table reach their working size. RSS then still moves
    // with the garbage collector, so it is judged by the second half against the first.
    await run(0, 20);
    const before = await settled(await health(daemon.pid));
    const total = TRIALS;
    const half = Math.round(total / 2);
    await run(20, half);
    const middle = await settled(before);
    await run(half, total);
    const end = await settled(before);
    assert.ok(
      end.rssMb <= Math.max(before.rssMb, middle.rssMb) * 1.2 + 10,
      `RSS keeps growing: ${before.rssMb} -> ${middle.rssMb} -> ${end.rssMb} MB`,
    );
    await git(suite, ['fsck', '--no-progress'], { cwd: repo });
    assert.match(daemon.logs(), /status=499/);
    assert.doesNotMatch(daemon.logs(), /internal error/);
    t.diagnostic(
      `seed ${SEED}: ${total} trials; ${describeHealth(before, end)} (${middle.rssMb} MB half-way)`,
    );
  });

  test(`${NGINX_TRIALS} clones and pushes through nginx, aborted by the HTTP client`, async (t) => {
    const rng = new Rng(SEED + 1);
    const pushBody = receivePackRequest('refs/heads/via-nginx', push.commit, push.pack);
    const before = await health(daemon.pid);
    const total = NGINX_TRIALS;
    let next = 0;
    const trial = async (): Promise<void> => {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), rng.int(300));
      const clone = rng.chance(0.5);
      try {
        const res = await fetch(
          nginx.url(0, clone ? '/big.git/git-upload-pack' : '/big.git/git-receive-pack'),
          {
            method: 'POST',
            headers: {
              'Content-Type': clone
                ? 'application/x-git-upload-pack-request'
                : 'application/x-git-receive-pack-request',
            },
            body: clone ? uploadPackRequest(head) : pushBody,
            signal: controller.signal,
          },
        );
        await res.arrayBuffer();
      } catch {
        // aborted: the point of the trial
      } finally {
        clearTimeout(timer);
      }
    };
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (next++ < total) await trial();
      }),
    );
    const end = await settled(before);
    await git(suite, ['fsck', '--no-progress'], { cwd: repo });
    t.diagnostic(`${total} trials through nginx; ${describeHealth(before, end)}`);
  });
});
