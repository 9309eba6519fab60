import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { repoRoot, startGitFcgi } from '../helpers/daemon.js';
import { waitFor, withDeadline } from '../helpers/deadline.js';
import { beginRequest, fcgiExchange, gitParams, paramsRecords } from '../helpers/fcgi-client.js';
import { gitLocation, startNginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, freePort, run } from '../helpers/proc.js';
import { createBareRepo, git } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

const backend = (name: string): string => join(repoRoot, 'test', 'fixtures', 'backends', name);

/** The ping and status locations of etc/nginx/git-fcgi.conf, pointed at a test socket. */
function builtinLocations(sock: string): string {
  return ['ping', 'status']
    .map(
      (name) => `    location = /git-fcgi-${name} {
      allow 127.0.0.1;
      deny all;
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:${sock};
    }`,
    )
    .join('\n');
}

async function iniFile(dir: string, text: string): Promise<string> {
  const file = join(dir, 'git-fcgi.ini');
  await writeFile(file, text);
  return file;
}

const stalls = async (): Promise<number> => {
  const result = await run('pgrep', ['-f', '^sleep 297$'], { timeoutMs: 5000 });
  return result.stdout.toString().trim().split('\n').filter(Boolean).length;
};

describe('limits', () => {
  test('max_children 1, queue 1: the third request gets 503 + Retry-After; leaving or timing out frees the queue', async (t) => {
    const dir = await tmpDir(t, 'limits-');
    const root = join(dir, 'repos');
    await createBareRepo(t, root, 'r.git');
    const sock = join(dir, 'g.sock');
    const ini = await iniFile(
      dir,
      `[server]\nmax_children = 1\nqueue = 1\nqueue_timeout = 1500ms\nstatus_path = /git-fcgi-status\n`,
    );
    const daemon = await startGitFcgi(t, [
      '-c',
      ini,
      '--allow-root',
      '--listen',
      `unix:${sock}`,
      '--project-root',
      root,
      '--export-all',
      '--backend',
      backend('stall.sh'),
    ]);
    const nginx = await startNginx(t, {
      servers: [{ locations: `${builtinLocations(sock)}\n${gitLocation({ socket: sock })}` }],
    });
    const url = nginx.url(0, '/r.git/info/refs');
    const status = async (): Promise<Record<string, unknown>> =>
      (await (await fetch(nginx.url(0, '/git-fcgi-status?json'))).json()) as Record<string, unknown>;
    const pending = (controller: AbortController): Promise<unknown> =>
      fetch(url, { signal: controller.signal }).catch((err: unknown) => err);

    const running = new AbortController();
    const first = pending(running);
    await waitFor(async () => (await status()).active === 1, {
      timeoutMs: 5000,
      what: 'one running backend',
    });
    const leaving = new AbortController();
    const second = pending(leaving);
    await waitFor(async () => (await status()).queued === 1, { timeoutMs: 5000, what: 'one queued request' });

    const refusedAt = Date.now();
    const third = await fetch(url);
    const refusedMs = Date.now() - refusedAt;
    assert.equal(third.status, 503);
    assert.equal(third.headers.get('retry-after'), '5');
    assert.ok(refusedMs < 1000, `refused at once (${refusedMs} ms)`);
    await waitFor(() => /ERR_OVERLOADED/.test(daemon.logs()), { timeoutMs: 2000, what: 'the 503 logged' });

    leaving.abort();
    await second;
    await waitFor(async () => (await status()).queued === 0, { timeoutMs: 5000, what: 'the queue to empty' });
    assert.equal(await stalls(), 1, 'the request that left never started a backend');

    const waitedAt = Date.now();
    const timedOut = await withDeadline(fetch(url), 5000, 'the queue timeout');
    const waitedMs = Date.now() - waitedAt;
    assert.equal(timedOut.status, 503);
    assert.ok(waitedMs >= 1400 && waitedMs < 4000, `503 after queue_timeout (${waitedMs} ms)`);
    assert.match(daemon.logs(), /ERR_QUEUE_TIMEOUT/);

    running.abort();
    await first;
    await waitFor(async () => (await stalls()) === 0, {
      timeoutMs: 5000,
      what: 'the stalled backend to be killed',
    });
    const figures = await status();
    assert.equal(figures.active, 0);
    assert.equal(figures.spawned, 1);
    assert.equal(figures.max_active_reached, 1);
    assert.deepEqual(figures.responses, { '499': 2, '503': 2 });
    t.diagnostic(`503 when full after ${refusedMs} ms; 503 on queue timeout (1.5 s) after ${waitedMs} ms`);
  });
});

describe('ping and status', () => {
  test('answered by git-fcgi itself over FastCGI and HTTP: pong, text, json, openmetrics', async (t) => {
    const dir = await tmpDir(t, 'status-');
    const root = join(dir, 'repos');
    const { head } = await createBareRepo(t, root, 'r.git', { commits: 2 });
    const sock = join(dir, 'g.sock');
    const ini = await iniFile(
      dir,
      `[server]\nping_path = /git-fcgi-ping\nstatus_path = /git-fcgi-status\nmax_children = 5\n`,
    );
    const daemon = await startGitFcgi(t, [
      '-c',
      ini,
      '--allow-root',
      '--listen',
      `unix:${sock}`,
      '--http',
      '127.0.0.1:0',
      '--project-root',
      root,
      '--export-all',
    ]);
    const nginx = await startNginx(t, {
      servers: [{ locations: `${builtinLocations(sock)}\n${gitLocation({ socket: sock })}` }],
    });
    const dest = join(dir, 'clone');
    await git(t, ['clone', '-q', nginx.url(0, '/r.git'), dest]);
    assert.equal((await git(t, ['rev-parse', 'HEAD'], { cwd: dest })).stdout.toString().trim(), head);
    assert.equal((await fetch(nginx.url(0, '/missing.git/info/refs'))).status, 404);

    const http = `http://127.0.0.1:${daemon.httpPort ?? 0}`;
    for (const base of [nginx.url(0, ''), http]) {
      const ping = await fetch(`${base}/git-fcgi-ping`);
      assert.equal(ping.status, 200);
      assert.equal(await ping.text(), 'pong\n');
      const text = await fetch(`${base}/git-fcgi-status`);
      assert.match(text.headers.get('content-type') ?? '', /^text\/plain/);
      const body = await text.text();
      assert.match(body, /^accepted requests: +[3-9]$/m);
      assert.match(body, /^max children: +5$/m);
      assert.match(body, /^responses 200: +\d+$/m);
      assert.match(body, /^responses 404: +1$/m);
      assert.match(body, /^service git-upload-pack: +\d+$/m);
      if (base === http) t.diagnostic(`status page:\n${body}`);
    }
    const json = (await (await fetch(`${http}/git-fcgi-status?json`)).json()) as Record<string, unknown>;
    assert.equal(json.active, 0);
    assert.equal(json.queued, 0);
    assert.ok(typeof json.bytes_out === 'number' && json.bytes_out > 0);
    assert.deepEqual(Object.keys(json.services as object).sort(), ['dumb', 'git-upload-pack']);
    const metrics = await fetch(nginx.url(0, '/git-fcgi-status?openmetrics'));
    assert.match(
      metrics.headers.get('content-type') ?? '',
      /^application\/openmetrics-text; version=1\.0\.0/,
    );
    const om = await metrics.text();
    assert.match(om, /^# TYPE git_fcgi_accepted_requests counter$/m);
    assert.match(om, /^git_fcgi_responses_total\{code="200"\} \d+$/m);
    assert.match(om, /^git_fcgi_service_requests_total\{service="git-upload-pack"\} \d+$/m);
    assert.ok(om.endsWith('# EOF\n'));
    assert.equal((await fetch(`${http}/git-fcgi-status`, { method: 'POST', body: 'x' })).status, 405);
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('off by default: the paths are just paths (404), nothing answers them', async (t) => {
    const dir = await tmpDir(t, 'nostatus-');
    const daemon = await startGitFcgi(t, ['--http', '127.0.0.1:0', '--project-root', dir]);
    const http = `http://127.0.0.1:${daemon.httpPort ?? 0}`;
    assert.equal((await fetch(`${http}/git-fcgi-status`)).status, 404);
    assert.equal((await fetch(`${http}/git-fcgi-ping`)).status, 404);
  });
});

describe('allowed_clients', () => {
  test('a TCP listener drops clients not in allowed_clients and serves those in it', async (t) => {
    const dir = await tmpDir(t, 'tcp-');
    const port = await freePort();
    const ini = await iniFile(dir, `[server]\nallowed_clients = 127.0.0.2\nping_path = /ping\n`);
    const daemon = await startGitFcgi(t, ['-c', ini, '--allow-root', '--listen', `127.0.0.1:${port}`]);
    const ping = Buffer.concat([beginRequest(), paramsRecords(gitParams('/ping'))]);

    const allowed = await fcgiExchange({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }, ping);
    assert.equal(allowed.status, 200);
    assert.equal(allowed.body.toString(), 'pong\n');

    const refused = await fcgiExchange({ host: '127.0.0.1', port }, ping);
    assert.equal(refused.end, null, 'closed without an answer');
    assert.equal(refused.stdout.length, 0);
    await waitFor(() => /client not in allowed_clients addr=127\.0\.0\.1/.test(daemon.logs()), {
      timeoutMs: 2000,
      what: 'the refusal logged',
    });

    const nginx = await startNginx(t, {
      servers: [
        { locations: `location / { include /etc/nginx/fastcgi_params; fastcgi_pass 127.0.0.1:${port}; }` },
      ],
    });
    assert.equal((await fetch(nginx.url(0, '/ping'))).status, 502, 'nginx on 127.0.0.1 is refused too');
  });
});
