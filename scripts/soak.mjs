#!/usr/bin/env node
// Soak: mixed git requests through real nginx to git-fcgi (real git http-backend), N requests at
// C concurrent connections. Reports failures and the daemon's RSS and fd count after warm-up and
// at the end; exits 1 on any failure or when either grew by more than 10 %.
//
//   npm run build && npm run build:test && node scripts/soak.mjs [--requests 20000] [--concurrency 32]
/* global fetch */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startGitFcgi } from '../dist-test/test/helpers/daemon.js';
import { health } from '../dist-test/test/helpers/daemon-health.js';
import { uploadPackRequest } from '../dist-test/test/helpers/git-wire.js';
import { gitLocation, startNginx } from '../dist-test/test/helpers/nginx.js';
import { assertNoGitProcesses } from '../dist-test/test/helpers/proc.js';
import { createBareRepo } from '../dist-test/test/helpers/repos.js';
import { tmpDir } from '../dist-test/test/helpers/tmp.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '32' },
    warmup: { type: 'string', default: '1000' },
  },
});
const total = Number(values.requests);
const concurrency = Number(values.concurrency);
const warmup = Number(values.warmup);

const steps = [];
const cleanup = { after: (fn) => steps.push(fn) };
let exitCode = 0;
try {
  const root = await tmpDir(cleanup, 'soak-');
  const repo = await createBareRepo(cleanup, root, 'demo.git', { commits: 20, files: { 'a.txt': 'soak\n' } });
  const sock = join(await tmpDir(cleanup, 'sock-'), 'g.sock');
  const daemon = await startGitFcgi(cleanup, [
    '--listen',
    `unix:${sock}`,
    '--project-root',
    root,
    '--export-all',
  ]);
  const nginx = await startNginx(cleanup, {
    servers: [{ locations: gitLocation({ socket: sock }) }],
    workerProcesses: 2,
    httpExtra: 'keepalive_requests 100000;',
  });
  const url = (path) => nginx.url(0, path);
  const fetchBody = uploadPackRequest(repo.head);
  // [name, weight, request, expected status, check of the body]
  const kinds = [
    [
      'refs v0',
      30,
      () => fetch(url('/demo.git/info/refs?service=git-upload-pack')),
      200,
      (b) => b.includes('# service=git-upload-pack'),
    ],
    [
      'refs v2',
      20,
      () =>
        fetch(url('/demo.git/info/refs?service=git-upload-pack'), {
          headers: { 'Git-Protocol': 'version=2' },
        }),
      200,
      (b) => b.includes('version 2'),
    ],
    [
      'fetch',
      25,
      () =>
        fetch(url('/demo.git/git-upload-pack'), {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-git-upload-pack-request' },
          body: fetchBody,
        }),
      200,
      (b) => b.includes('PACK'),
    ],
    ['dumb HEAD', 10, () => fetch(url('/demo.git/HEAD')), 200, (b) => b === 'ref: refs/heads/main\n'],
    ['missing repo', 5, () => fetch(url('/nope.git/info/refs')), 404, () => true],
    ['anonymous push', 5, () => fetch(url('/demo.git/info/refs?service=git-receive-pack')), 403, () => true],
    ['bad path', 5, () => fetch(url('/demo.git/%252e%252e/HEAD')), 400, () => true],
  ];
  const weights = kinds.flatMap((k, i) => Array(k[1]).fill(i));
  const counts = new Map(kinds.map((k) => [k[0], 0]));
  const failures = [];
  let done = 0;
  let next = 0;
  let warm;
  const started = Date.now();
  const worker = async () => {
    for (let i = next++; i < total; i = next++) {
      const [name, , request, status, check] = kinds[weights[i % weights.length]];
      try {
        const res = await request();
        const body = Buffer.from(await res.arrayBuffer()).toString('latin1');
        if (res.status !== status || !check(body)) failures.push(`${i} ${name}: HTTP ${res.status}`);
      } catch (err) {
        failures.push(`${i} ${name}: ${err.message}`);
      }
      counts.set(name, counts.get(name) + 1);
      done++;
      if (done === warmup) warm = await health(daemon.pid);
      if (done % 2000 === 0) process.stderr.write(`${done}/${total} (${failures.length} failures)\n`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (Date.now() - started) / 1000;
  await assertNoGitProcesses(root, { withinMs: 2000 });
  const end = await health(daemon.pid);
  warm ??= end;
  console.log(
    `requests: ${done} at ${concurrency} concurrent in ${seconds.toFixed(1)} s (${Math.round(done / seconds)}/s)`,
  );
  console.log(`mix: ${JSON.stringify(Object.fromEntries(counts))}`);
  console.log(
    `failures: ${failures.length}${failures.length ? ` e.g. ${failures.slice(0, 5).join('; ')}` : ''}`,
  );
  console.log(`after warm-up (${warmup}): RSS ${warm.rssMb} MB, fds ${warm.fds}`);
  console.log(`at the end: RSS ${end.rssMb} MB, fds ${end.fds}, zombies ${end.zombies}`);
  const within = (a, b) => b <= a * 1.1 + 1;
  if (
    failures.length > 0 ||
    !within(warm.rssMb, end.rssMb) ||
    !within(warm.fds, end.fds) ||
    end.zombies > 0
  ) {
    exitCode = 1;
    console.log('FAIL');
  } else console.log('OK');
} finally {
  for (let step = steps.pop(); step !== undefined; step = steps.pop()) await step();
}
process.exit(exitCode);
