import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { repoRoot, startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { kindOf, prepareGitLoad, runGitLoad, type GitLoad } from '../helpers/git-load.js';
import {
  TIMELINE_FORMAT,
  countByKind,
  failedRequest,
  readTimeline,
  timelineLog,
  type LoggedRequest,
} from '../helpers/nginx-timeline.js';
import { htpasswd, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, freePort } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

/** Two "hosts" on their own loopback addresses; nginx connects from a third one, which allowed_clients names. */
const HOST_A = '127.0.0.2';
const HOST_B = '127.0.0.3';
const NGINX_ADDR = '127.0.0.9';
/**
 * Repositories to choose from: the tests use three that nginx's consistent hash sends to each
 * host. Six fixed names could all land on one host (the hosts' ports change every run, and with
 * them the hash), and then the host that is killed served nothing: seen once in CI.
 */
const CANDIDATES = Array.from({ length: 24 }, (_, i) => `r${i}.git`);
const PER_HOST = 3;
const OPS = 200;
const ROLLING_OPS = 60;
/** The shipped 10 s, shortened so that the restarted host gets requests again within the test. */
const FAIL_TIMEOUT_MS = 2000;
const FAIL_TIMEOUT = `${FAIL_TIMEOUT_MS / 1000}s`;

interface Host {
  readonly addr: string;
  readonly port: number;
  readonly args: readonly string[];
  daemon: GitFcgi;
}

/**
 * etc/nginx/git-fcgi-upstream.conf as shipped, changed only where it says CHANGE (addresses,
 * paths), and fail_timeout. Returns the http-level part (map, upstream) and the server body,
 * and the body again with fastcgi_pass pinned to each host, to reach one host on purpose.
 */
async function shippedUpstreamConf(
  root: string,
  users: string,
  hosts: readonly Host[],
): Promise<{ http: string; server: string; pinned: string[] }> {
  const text = await readFile(join(repoRoot, 'etc', 'nginx', 'git-fcgi-upstream.conf'), 'utf8');
  const start = text.indexOf('\nserver {\n');
  assert.ok(
    start > 0 && text.trimEnd().endsWith('}'),
    'the example is http-level directives and one server block',
  );
  const [a, b] = hosts;
  assert.ok(a !== undefined && b !== undefined);
  const http = text
    .slice(0, start)
    .replace(/^(\s*server) 10\.0\.0\.11:9000 /m, `$1 ${a.addr}:${a.port} `)
    .replace(/^(\s*server) 10\.0\.0\.12:9000 /m, `$1 ${b.addr}:${b.port} `)
    .replaceAll('fail_timeout=10s', `fail_timeout=${FAIL_TIMEOUT}`);
  const server = text
    .slice(start + '\nserver {\n'.length, text.trimEnd().length - 1)
    .replace(/^\s*listen 80;$/m, '')
    .replaceAll('/srv/git;', `${root};`)
    .replaceAll('/etc/nginx/git.htpasswd', users)
    .replace('# fastcgi_bind 10.0.0.5;', `fastcgi_bind ${NGINX_ADDR};`)
    .replace(/include\s+fastcgi_params;/g, 'include /etc/nginx/fastcgi_params;');
  for (const original of [
    /^\s*server 10\./m,
    /\/srv\/git;/,
    /\/etc\/nginx\/git\.htpasswd/,
    /fail_timeout=10s/,
  ]) {
    assert.doesNotMatch(http + server, original, 'substituted');
  }
  assert.match(server, /^\s*fastcgi_bind 127\.0\.0\.9;/m);
  const pinned = hosts.map((h) =>
    server.replaceAll('fastcgi_pass git_fcgi;', `fastcgi_pass ${h.addr}:${h.port};`),
  );
  return { http, server, pinned };
}

async function startHost(t: Cleanup, host: Host): Promise<GitFcgi> {
  const daemon = await startGitFcgi(t, host.args);
  await waitFor(() => / listening on /.test(daemon.logs()), { timeoutMs: 10_000, what: 'git-fcgi to start' });
  return daemon;
}

async function refCacheHits(nginx: Nginx, server: number): Promise<number> {
  const status = (await (await fetch(nginx.url(server, '/git-fcgi-status?json'))).json()) as Record<
    string,
    unknown
  >;
  return Number(status.ref_cache_hits);
}

/** The v0 ref advertisement (what the ref cache keeps) of `repo` through nginx server `server`. */
async function advertisement(nginx: Nginx, server: number, repo: string): Promise<string> {
  const response = await fetch(nginx.url(server, `/${repo}/info/refs?service=git-upload-pack`));
  assert.equal(response.status, 200);
  return response.text();
}

const isHost = (addr: string, host: Host): boolean => addr === `${host.addr}:${host.port}`;

describe('several git-fcgi hosts behind one nginx upstream, on shared storage', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let users: string;
  let hosts: Host[];
  let nginx: Nginx;
  let accessLog: string;
  let load: GitLoad;
  /** PER_HOST repositories on host A, then PER_HOST on host B. */
  let repos: string[];

  before(async () => {
    root = await tmpDir(suite, 'hosts-');
    for (const repo of [...CANDIDATES, 'seen.git']) await createBareRepo(suite, root, repo, { commits: 3 });
    const dir = await tmpDir(suite, 'conf-');
    users = await htpasswd(suite, dir, { alice: 'secret' });
    const ini = join(dir, 'git-fcgi.ini');
    await writeFile(
      ini,
      `[server]\nallowed_clients = ${NGINX_ADDR}\nstatus_path = /git-fcgi-status\n[git]\nexport_all = true\n`,
    );
    hosts = [];
    for (const addr of [HOST_A, HOST_B]) {
      const port = await freePort();
      const args = ['-c', ini, '--listen', `${addr}:${port}`, '--project-root', root];
      const host: Host = { addr, port, args, daemon: await startGitFcgi(suite, args) };
      await waitFor(() => / listening on /.test(host.daemon.logs()), { timeoutMs: 10_000, what: 'git-fcgi' });
      hosts.push(host);
    }
    const conf = await shippedUpstreamConf(root, users, hosts);
    accessLog = join(dir, 'access.log');
    nginx = await startNginx(suite, {
      httpExtra: `${conf.http}\n${TIMELINE_FORMAT}`,
      servers: [
        { locations: conf.server, extra: timelineLog(accessLog) },
        ...conf.pinned.map((locations) => ({ locations })),
      ],
    });
    for (const repo of CANDIDATES) {
      const response = await fetch(nginx.url(0, `/${repo}/info/refs?service=git-upload-pack`));
      assert.equal(response.status, 200, repo);
      await response.arrayBuffer();
    }
    await waitFor(async () => (await readTimeline(accessLog)).length >= CANDIDATES.length, {
      timeoutMs: 5000,
      what: 'the probes in the access log',
    });
    const probes = await readTimeline(accessLog);
    const on = (host: Host): string[] =>
      CANDIDATES.filter((repo) =>
        probes.some((r) => r.uri.startsWith(`/${repo}/`) && isHost(r.upstreamAddr.at(-1) ?? '', host)),
      ).slice(0, PER_HOST);
    const [hostA, hostB] = hosts;
    assert.ok(hostA !== undefined && hostB !== undefined);
    repos = [...on(hostA), ...on(hostB)];
    assert.equal(repos.length, 2 * PER_HOST, `repositories per host: ${JSON.stringify(repos)}`);
    const base = (await git(suite, ['rev-parse', 'main'], { cwd: join(root, 'r0.git') })).stdout
      .toString()
      .trim();
    load = await prepareGitLoad(
      suite,
      await tmpDir(suite, 'load-'),
      join(root, 'r0.git'),
      base,
      OPS / 5 + 4 + ROLLING_OPS / 5,
    );
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 3000 });
  });

  test('a push through one host is in the very next ref advertisement of the other (its cache stats the shared files)', async (t) => {
    const url = (server: number): string =>
      nginx.url(server, '/seen.git').replace('http://', 'http://alice:secret@');
    // Past the ref cache's 100 ms rule for fresh changes: the advertisements below may be kept.
    await sleep(150);
    for (let round = 0; round < 4; round++) {
      const [from, to] = round % 2 === 0 ? [1, 2] : [2, 1];
      // The other host has the advertisement in its cache: the second request is a hit.
      const hits = await refCacheHits(nginx, to);
      const cached = await advertisement(nginx, to, 'seen.git');
      await waitFor(
        async () =>
          (await advertisement(nginx, to, 'seen.git')) === cached && (await refCacheHits(nginx, to)) > hits,
        {
          timeoutMs: 5000,
          what: `host ${to} to answer seen.git from its ref cache`,
        },
      );
      const commit = load.commits[OPS / 5 + round];
      assert.ok(commit !== undefined);
      await git(t, ['push', '-q', url(from), `${commit}:refs/heads/seen-${round}`], { cwd: load.objects });
      // At once, no pause: the other host must not answer from its cache.
      const fresh = await advertisement(nginx, to, 'seen.git');
      assert.match(
        fresh,
        new RegExp(`${commit} refs/heads/seen-${round}\\n`),
        `round ${round}: host ${to} sees the push through host ${from}`,
      );
      const listed = (await git(t, ['ls-remote', url(to)])).stdout.toString();
      assert.match(listed, new RegExp(`^${commit}\\trefs/heads/seen-${round}$`, 'm'));
    }
    // A made-up login on a read is not passed on as REMOTE_USER; on a push nginx checks it.
    const forged = { authorization: `Basic ${Buffer.from('mallory:guess').toString('base64')}` };
    const read = await fetch(nginx.url(0, '/seen.git/info/refs?service=git-upload-pack'), {
      headers: forged,
    });
    assert.equal(read.status, 200);
    await read.text();
    const push = await fetch(nginx.url(0, '/seen.git/info/refs?service=git-receive-pack'), {
      headers: forged,
    });
    assert.equal(push.status, 401);
    await push.text();
    for (const host of hosts) assert.doesNotMatch(host.daemon.logs(), /user=mallory/);
    t.diagnostic(
      "4 pushes, alternating hosts: each in the other host's next advertisement; that host's cache was warm each time",
    );
  });

  test(`${OPS} clones, fetches and pushes while one host is killed (SIGKILL) and started again`, async (t) => {
    const [a, b] = hosts;
    assert.ok(a !== undefined && b !== undefined);
    const url = (repo: string): string => nginx.url(0, `/${repo}`).replace('http://', 'http://alice:secret@');
    const marks: { kill?: number; dead?: number; restart?: number; up?: number } = {};
    const errorLogBefore = (await nginx.errorLog()).length;
    const started = Date.now();
    let lifecycle = Promise.resolve();
    const ops = await runGitLoad(t, load, {
      url,
      repos,
      ops: OPS,
      concurrency: 6,
      after: (done) => {
        if (done.length >= OPS * 0.3 && marks.kill === undefined) {
          marks.kill = Date.now();
          lifecycle = a.daemon.stop('SIGKILL').then(() => {
            marks.dead = Date.now();
          });
        }
        if (done.length >= OPS * 0.6 && marks.restart === undefined && marks.dead !== undefined) {
          marks.restart = Date.now();
          lifecycle = lifecycle.then(async () => {
            a.daemon = await startHost(suite, a);
            marks.up = Date.now();
          });
        }
      },
    });
    await lifecycle;
    const { kill, dead, restart, up } = marks;
    assert.ok(
      kill !== undefined && dead !== undefined && restart !== undefined && up !== undefined,
      JSON.stringify(marks),
    );
    const requests = await readTimeline(accessLog);
    const viaA = (r: LoggedRequest): boolean => r.upstreamAddr.some((addr) => isHost(addr, a));
    const failedAtA = (r: LoggedRequest): boolean =>
      r.upstreamAddr.some((addr, i) => isHost(addr, a) && !/^[1-4]\d\d$/.test(r.upstreamStatus[i] ?? ''));
    const failed = failedRequest;
    const noticed = Math.min(...requests.filter((r) => r.end >= kill && failedAtA(r)).map((r) => r.end));
    const windows = {
      'started before the kill': requests.filter((r) => r.start < kill),
      'from the kill until nginx noticed': requests.filter((r) => r.start >= kill && r.start < noticed),
      'after nginx noticed': requests.filter((r) => r.start >= noticed),
    };
    const afterDeath = requests.filter((r) => r.start >= dead);
    const backOnA = requests.filter(
      (r) => r.start >= up && isHost(r.upstreamAddr.at(-1) ?? '', a) && r.status < 500 && r.complete,
    );
    const firstBack = Math.min(...backOnA.map((r) => r.start));
    // nginx logs in whole seconds, local time.
    const disabled = [
      ...(await nginx.errorLog())
        .slice(errorLogBefore)
        .matchAll(/^(\d+)\/(\d+)\/(\d+) (\d+):(\d+):(\d+) \[\w+\] .*upstream server temporarily disabled/gm),
    ].map(
      (m) => new Date(+(m[1] ?? 0), +(m[2] ?? 1) - 1, +(m[3] ?? 0), +(m[4] ?? 0), +(m[5] ?? 0), +(m[6] ?? 0)),
    );
    // A host killed mid-response closes its connection without END_REQUEST: nginx ends the
    // response as if complete (logged 200, nothing in its error log); only the client's git,
    // which frames its data, sees it cut short. The failed git operations count those.
    const failedOps = ops.filter((op) => !op.ok);
    const opsAfterDeath = ops.filter((op) => op.start >= dead);
    const byKind = (list: readonly { kind: string }[]): string =>
      JSON.stringify(
        list.reduce<Record<string, number>>((acc, x) => ({ ...acc, [x.kind]: (acc[x.kind] ?? 0) + 1 }), {}),
      );
    const seconds = (ms: number): string => (ms / 1000).toFixed(3);
    t.diagnostic(
      `${ops.length} git operations ${byKind(ops)}, ${requests.length} requests ` +
        `${JSON.stringify(countByKind(requests))} in ${Date.now() - started} ms; through A: ${requests.filter(viaA).length}`,
    );
    t.diagnostic(
      `timeline, s after SIGKILL to A: A gone ${seconds(dead - kill)}; nginx's first failed attempt at A ` +
        `${seconds(noticed - kill)}; "temporarily disabled" logged ${disabled.length} times, first in the second ` +
        `${disabled[0] === undefined ? '-' : `${seconds(disabled[0].getTime() - kill)}..${seconds(disabled[0].getTime() + 1000 - kill)}`}; A started again ` +
        `${seconds(restart - kill)}, listening ${seconds(up - kill)}; first request A served again ` +
        `${Number.isFinite(firstBack) ? seconds(firstBack - kill) : 'never'}`,
    );
    for (const [name, list] of Object.entries(windows)) {
      const bad = list.filter(failed);
      t.diagnostic(
        `requests ${name}: ${list.length}, failed ${bad.length} ${JSON.stringify(countByKind(bad))}, ` +
          `sent on to B by nginx ${list.filter((r) => r.upstreamAddr.length > 1).length}`,
      );
    }
    t.diagnostic(
      `git operations failed: ${failedOps.length} ${byKind(failedOps)}, ` +
        `all started before the kill: ${failedOps.every((op) => op.start < kill)}; ` +
        `started after A was gone: ${opsAfterDeath.length}, failed ${opsAfterDeath.filter((op) => !op.ok).length}`,
    );
    for (const op of failedOps) {
      const why = op.output.split('\n').find((line) => /error|fatal/i.test(line)) ?? op.output.slice(0, 120);
      t.diagnostic(`  ${op.kind} ${op.repo}, started ${seconds(op.start - kill)} s: ${why.trim()}`);
    }
    for (const r of requests.filter(failed)) {
      t.diagnostic(
        `  ${r.method} ${r.uri} started ${seconds(r.start - kill)} s: ${r.status} ` +
          `${r.complete ? '' : '(broken off) '}upstream ${r.upstreamAddr.join(', ')} ${r.upstreamStatus.join(', ')}`,
      );
    }
    assert.deepEqual(
      afterDeath
        .filter(failed)
        .map((r) => `${r.status} ${r.method} ${r.uri} via ${r.upstreamAddr.join(', ')}`),
      [],
      'every request that started after the kill succeeded',
    );
    assert.deepEqual(
      opsAfterDeath.filter((op) => !op.ok).map((op) => `${op.kind} ${op.repo}: ${op.output}`),
      [],
      'every git operation that started after the kill succeeded',
    );
    assert.ok(backOnA.length > 0, 'the restarted host serves again');
    assert.ok(ops.length >= OPS && ops.filter((op) => op.kind === 'push').length >= OPS / 5 - 1);

    // Every push git reported accepted is there; the others are absent or whole; every repository is sound.
    let accepted = 0;
    for (const op of ops) {
      if (op.push === undefined) continue;
      const ref = (
        await git(t, ['for-each-ref', '--format=%(objectname)', op.push.ref], { cwd: join(root, op.repo) })
      ).stdout
        .toString()
        .trim();
      if (op.push.accepted) {
        assert.equal(ref, op.push.commit, `accepted push ${op.push.ref} to ${op.repo}`);
        accepted++;
      } else assert.ok(ref === '' || ref === op.push.commit, `failed push ${op.push.ref}: absent or whole`);
    }
    for (const repo of repos) {
      const fsck = await git(t, ['fsck', '--full', '--no-progress', '--no-dangling'], {
        cwd: join(root, repo),
      });
      assert.equal(fsck.stdout.toString() + fsck.stderr.toString(), '', `fsck ${repo}`);
    }
    const pushes = ops.filter((op) => kindOf(op.index) === 'push').length;
    t.diagnostic(
      `pushes: ${pushes}, accepted ${accepted}, every accepted one present; git fsck clean in all ${repos.length} repositories`,
    );
  });

  test('rolling restart without socket activation: each host in turn gets SIGTERM and starts again', async (t) => {
    const url = (repo: string): string => nginx.url(0, `/${repo}`).replace('http://', 'http://alice:secret@');
    const restarts: Array<{ host: string; term: number; exited: number; up: number }> = [];
    let lifecycle = Promise.resolve();
    const logBefore = (await readTimeline(accessLog)).length;
    const errorLogBefore = (await nginx.errorLog()).length;
    const at = [ROLLING_OPS * 0.25, ROLLING_OPS * 0.6];
    const ops = await runGitLoad(
      t,
      { ...load, commits: load.commits.slice(OPS / 5 + 4) },
      {
        url,
        repos,
        ops: ROLLING_OPS,
        concurrency: 6,
        refPrefix: 'rolling',
        after: (done) => {
          const host = hosts[restarts.length];
          const threshold = at[restarts.length];
          if (host === undefined || threshold === undefined || done.length < threshold) return;
          const entry = { host: host.addr, term: Date.now(), exited: 0, up: 0 };
          restarts.push(entry);
          lifecycle = lifecycle.then(async () => {
            // What `systemctl restart` does to a git-fcgi that binds its own socket (listen = HOST:PORT).
            assert.deepEqual(await host.daemon.stop('SIGTERM'), { code: 0, signal: null });
            entry.exited = Date.now();
            host.daemon = await startHost(suite, host);
            entry.up = Date.now();
            // As the README says to: nginx takes a host it marked down back only after
            // fail_timeout, counted in whole seconds from its last failed attempt
            // (`now - checked <= fail_timeout`, both ngx_time()), so up to a second later. The
            // next host may stop only then, or both are down to nginx ("no live upstreams": 502;
            // seen in CI when this waited fail_timeout + 0.5 s).
            await sleep(FAIL_TIMEOUT_MS + 1000 + 500);
          });
        },
      },
    );
    await lifecycle;
    const requests = (await readTimeline(accessLog)).slice(logBefore);
    const failedOps = ops.filter((op) => !op.ok);
    const retried = requests.filter((r) => r.upstreamAddr.length > 1);
    for (const r of restarts) {
      t.diagnostic(
        `${r.host}: SIGTERM to exit ${r.exited - r.term} ms, exit to listening ${r.up - r.exited} ms`,
      );
    }
    t.diagnostic(
      `${ops.length} git operations, ${requests.length} requests; failed: ${failedOps.length} operations, ` +
        `${requests.filter(failedRequest).length} requests; ` +
        `sent on to the other host by nginx: ${retried.length} ${JSON.stringify(countByKind(retried))}`,
    );
    if (requests.some(failedRequest)) {
      // Why nginx answered what it did ("no live upstreams", a reset, ...), for the report.
      for (const line of (await nginx.errorLog()).slice(errorLogBefore).split('\n')) {
        if (/\[(error|warn|crit)\]/.test(line)) t.diagnostic(`nginx: ${line.slice(0, 300)}`);
      }
    }
    assert.equal(restarts.length, 2);
    assert.deepEqual(
      failedOps.map((op) => `${op.kind} ${op.repo}: ${op.output}`),
      [],
    );
    assert.deepEqual(
      requests.filter(failedRequest).map((r) => `${r.status} ${r.method} ${r.uri}`),
      [],
    );
    for (const op of ops) {
      if (op.push === undefined) continue;
      const ref = await git(t, ['for-each-ref', '--format=%(objectname)', op.push.ref], {
        cwd: join(root, op.repo),
      });
      assert.equal(ref.stdout.toString().trim(), op.push.commit, `push ${op.push.ref} to ${op.repo}`);
    }
  });
});
