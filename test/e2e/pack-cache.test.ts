import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { defer, suiteCleanup } from '../helpers/cleanup.js';
import { cliPath, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { withDeadline } from '../helpers/deadline.js';
import { pktLine } from '../helpers/git-wire.js';
import { gitLocation, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { git, randomBlobRepo } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

/** Longer than the pack cache's racy window (100 ms) after a change to the repository. */
const SETTLE_MS = 250;

/** A v0 fetch of `want` with side-band-64k (what `git clone` POSTs once it negotiated). */
const fetchBody = (want: string): Buffer =>
  Buffer.from(`${pktLine(`want ${want} side-band-64k ofs-delta\n`)}0000${pktLine('done\n')}`);

/** The pack in an upload-pack response: band 1 of the side-band, after NAK; band 3 fails. */
function demux(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at + 4 <= body.length;) {
    const length = parseInt(body.subarray(at, at + 4).toString('latin1'), 16);
    if (Number.isNaN(length)) throw new Error(`not a pkt-line at ${at}`);
    if (length === 0) {
      at += 4;
      continue;
    }
    const line = body.subarray(at + 4, at + length);
    if (line[0] === 1) parts.push(line.subarray(1));
    else if (line[0] === 3) throw new Error(`error band: ${line.subarray(1).toString()}`);
    at += length;
  }
  return Buffer.concat(parts);
}

describe('pack cache', () => {
  const suite = suiteCleanup(after);
  let dir: string;
  let root: string;
  let repo: string;
  let head: string;
  let cached: GitFcgi;
  let off: GitFcgi;
  let small: GitFcgi;
  let nginx: Nginx;
  const servers = ['cached', 'off', 'small'] as const;
  const url = (which: (typeof servers)[number], path: string): string =>
    nginx.url(servers.indexOf(which), path);

  before(async () => {
    dir = await tmpDir(suite, 'pack-cache-');
    root = join(dir, 'repos');
    // Incompressible, so that pack-objects takes a while and the pack is several 64 KiB frames.
    const made = await randomBlobRepo(suite, root, 'r.git', { bytes: 6 << 20, commits: 3 });
    repo = made.path;
    head = made.head;
    const common = ['--allow-root', '--project-root', root, '--export-all', '--log-level', 'debug'];
    const start = async (name: string, git: string): Promise<GitFcgi> => {
      const ini = join(dir, `${name}.ini`);
      await writeFile(ini, `[server]\nstatus_path = /st\n[git]\n${git}\n`);
      return startGitFcgi(suite, ['-c', ini, '--listen', `unix:${join(dir, `${name}.sock`)}`, ...common]);
    };
    cached = await start('cached', '');
    off = await start('off', 'pack_cache = 0');
    // Smaller than the pack: it is streamed, never kept.
    small = await start('small', 'pack_cache = 64k');
    assert.ok(small.pid > 0);
    nginx = await startNginx(suite, {
      servers: servers.map((which) => ({ locations: gitLocation({ socket: join(dir, `${which}.sock`) }) })),
    });
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 5000 });
  });

  const figures = async (which: (typeof servers)[number]): Promise<Record<string, number> | undefined> => {
    const res = await fetch(url(which, '/st?json'));
    return ((await res.json()) as { pack_cache?: Record<string, number> }).pack_cache;
  };

  const post = async (
    which: (typeof servers)[number],
    want: string,
    signal?: AbortSignal,
  ): Promise<Response> =>
    fetch(url(which, '/r.git/git-upload-pack'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-git-upload-pack-request' },
      body: fetchBody(want),
      ...(signal === undefined ? {} : { signal }),
    });

  /** One upload-pack POST; its pack must pass `git index-pack --strict` in an empty repository. */
  const validPack = async (which: (typeof servers)[number], want = head): Promise<void> => {
    const body = await withDeadline(
      (async () => {
        const res = await post(which, want);
        assert.equal(res.status, 200);
        return Buffer.from(await res.arrayBuffer());
      })(),
      60_000,
      `upload-pack POST to ${which}`,
    );
    const pack = demux(body);
    const check = await tmpDir(suite, 'index-');
    await git(suite, ['init', '-q', '--bare', check]);
    await git(suite, ['index-pack', '--strict', '--stdin'], { cwd: check, input: pack });
  };

  const cloneAndFsck = async (which: (typeof servers)[number], extra: string[] = []): Promise<void> => {
    const target = join(await tmpDir(suite, 'clone-'), 'c');
    await git(suite, ['clone', '-q', ...extra, url(which, '/r.git'), target], { timeoutMs: 60_000 });
    await git(suite, ['fsck', '--strict'], { cwd: target, timeoutMs: 60_000 });
  };

  const packLines = (daemon: GitFcgi): string[] =>
    daemon
      .logs()
      .split('\n')
      .filter((line) => / pack=\w+/.test(line));

  test('a repeated pack is a hit; identical concurrent fetches coalesce or hit; every pack is valid', async () => {
    await validPack('cached');
    const first = await figures('cached');
    assert.equal(first?.misses, 1);
    await validPack('cached');
    assert.equal((await figures('cached'))?.hits, 1);
    await Promise.all([0, 1, 2, 3].map(() => validPack('cached')));
    const after4 = await figures('cached');
    assert.equal(after4?.misses, 1, 'no new pack-objects for identical requests');
    assert.ok((after4?.bytes_served ?? 0) > 5 * (6 << 20), 'the repeats came from the cache');
    await Promise.all([0, 1, 2, 3].map(() => cloneAndFsck('cached', ['--depth', '1'])));
    await cloneAndFsck('cached');
    const outcomes = packLines(cached).map((line) => / pack=(\w+)/.exec(line)?.[1]);
    assert.ok(outcomes.includes('hit'));
    assert.ok(
      outcomes.every((o) => o === 'hit' || o === 'miss' || o === 'coalesced'),
      outcomes.join(' '),
    );
  });

  test('a force-push that removes objects, a repack, a gc --prune=now: each a miss, each pack valid', async () => {
    const inRepo = (args: string[]): Promise<unknown> => git(suite, args, { cwd: repo, timeoutMs: 60_000 });
    const parent = (await git(suite, ['rev-parse', `${head}^`], { cwd: repo })).stdout.toString().trim();
    const steps: Array<[string, () => Promise<unknown>, string]> = [
      ['repack', () => inRepo(['repack', '-adf', '-q']), head],
      ['force-push', () => inRepo(['update-ref', 'refs/heads/main', parent]), parent],
      ['gc --prune=now', () => inRepo(['gc', '-q', '--prune=now']), parent],
    ];
    for (const [what, change, want] of steps) {
      await validPack('cached', want);
      const before = await figures('cached');
      await change();
      await sleep(SETTLE_MS);
      await validPack('cached', want);
      const now = await figures('cached');
      assert.equal(now?.misses, (before?.misses ?? 0) + 1, `${what}: a new pack`);
      await cloneAndFsck('cached');
    }
    // The removed commit is gone for good after gc: asking for it fails as with git alone (git
    // upload-pack refuses it before any hook runs), whether as an error line or a cut response:
    // cut mid-body ('terminated') or before nginx passed the head on ('fetch failed'), as in
    // fetch-cache.test.ts (timing between git's ERR line, its exit and the cutting record).
    const removed = head;
    head = parent;
    const refused = await post('cached', removed)
      .then(async (res) => Buffer.from(await res.arrayBuffer()).toString('latin1'))
      .catch((err: unknown) => String(err));
    assert.match(refused, /not our ref|ERR|terminated|fetch failed/);
  });

  test('a leader that leaves mid-stream does not fail a follower', async () => {
    // A new key: another want list order is another stdin.
    const env = {
      GIT_AUTHOR_NAME: 'p',
      GIT_AUTHOR_EMAIL: 'p@p',
      GIT_COMMITTER_NAME: 'p',
      GIT_COMMITTER_EMAIL: 'p@p',
    };
    await git(suite, ['commit-tree', '-m', 'x', '-p', head, `${head}^{tree}`], { cwd: repo, env }).then(
      async (r) => {
        await git(suite, ['update-ref', 'refs/heads/main', r.stdout.toString().trim()], { cwd: repo });
        head = r.stdout.toString().trim();
      },
    );
    await sleep(SETTLE_MS);
    const before = await figures('cached');
    const leaving = new AbortController();
    const leader = await post('cached', head, leaving.signal);
    const reader = leader.body?.getReader();
    assert.ok(reader);
    // Until the pack has begun: the leader's hook has asked and pack-objects runs for it. (The
    // first chunk alone can come before: a leader gone that early never asked, and the follower
    // would be the only request.)
    let seen = Buffer.alloc(0);
    await withDeadline(
      (async () => {
        while (!seen.includes('PACK')) {
          const { value, done } = await reader.read();
          assert.ok(!done, 'the leader got a whole response before its pack began');
          seen = Buffer.concat([seen.subarray(-3), Buffer.from(value)]);
        }
      })(),
      30_000,
      "the leader's pack",
    );
    const follower = validPack('cached');
    leaving.abort();
    await reader.cancel().catch(() => {});
    await follower;
    const now = await figures('cached');
    assert.equal(now?.misses, (before?.misses ?? 0) + 1);
    assert.ok((now?.coalesced ?? 0) + (now?.hits ?? 0) > (before?.coalesced ?? 0) + (before?.hits ?? 0));
    await validPack('cached');
  });

  test('a pack larger than the budget is streamed, not kept', async () => {
    await validPack('small');
    await validPack('small');
    const f = await figures('small');
    assert.equal(f?.hits, 0);
    assert.equal(f?.misses, 2);
    assert.equal(f?.disk_bytes, 0);
    await cloneAndFsck('small');
  });

  test('pack_cache = 0 sets no hook', async () => {
    await validPack('off');
    await cloneAndFsck('off');
    assert.equal(await figures('off'), undefined);
    assert.deepEqual(packLines(off), []);
    assert.doesNotMatch(off.logs(), /pack cache/);
  });

  test(
    'a disk that fills mid-stream fails no fetch',
    { skip: process.getuid?.() !== 0 && 'needs root (tmpfs)' },
    async (t) => {
      const mount = join(dir, 'tiny');
      await mkdir(mount, { mode: 0o700 });
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=80m,mode=0700', 'tmpfs', mount]);
      } catch (err) {
        t.skip(`cannot mount a tmpfs: ${String(err)}`);
        return;
      }
      defer(suite, () => run('umount', ['-l', mount], { timeoutMs: 10_000 }));
      const ini = join(dir, 'full.ini');
      await writeFile(ini, `[server]\nstatus_path = /st\n[git]\npack_cache_dir = ${mount}\n`);
      const full = await startGitFcgi(suite, [
        '-c',
        ini,
        '--allow-root',
        '--project-root',
        root,
        '--export-all',
        '--http',
        '127.0.0.1:0',
      ]);
      // Leaves 1 MiB: the 6 MiB pack fills it part way.
      execFileSync('fallocate', ['-l', `${79 << 20}`, join(mount, 'filler')]);
      const base = `http://127.0.0.1:${full.httpPort ?? 0}`;
      const target = join(await tmpDir(suite, 'full-'), 'c');
      await git(suite, ['clone', '-q', `${base}/r.git`, target], { timeoutMs: 60_000 });
      await git(suite, ['fsck', '--strict'], { cwd: target, timeoutMs: 60_000 });
      const status = (await (await fetch(`${base}/st?json`)).json()) as {
        pack_cache: Record<string, number>;
      };
      assert.equal(status.pack_cache.misses, 1);
      assert.equal(status.pack_cache.disk_bytes, 0);
      assert.match(full.logs(), /not cached/);
      await rm(join(mount, 'filler'));
      await full.stop();
    },
  );

  test('a pack_cache_dir others can read is refused at start and by --check-config', async () => {
    const open = join(dir, 'open-cache');
    await mkdir(open, { mode: 0o755 });
    const ini = join(dir, 'open.ini');
    await writeFile(ini, `[git]\nproject_root = ${root}\npack_cache_dir = ${open}\n`);
    const checked = await run(process.execPath, [cliPath, '-c', ini, '--allow-root', '--check-config'], {
      timeoutMs: 20_000,
    });
    assert.notEqual(checked.code, 0);
    assert.match(checked.stderr.toString(), /pack_cache_dir .* mode 755/);
    const started = await run(
      process.execPath,
      [cliPath, '-c', ini, '--allow-root', '--http', '127.0.0.1:0'],
      {
        timeoutMs: 20_000,
      },
    );
    assert.notEqual(started.code, 0);
    assert.match(started.stderr.toString(), /pack_cache_dir .* mode 755/);
  });
});
