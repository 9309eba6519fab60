#!/usr/bin/env node
// What one ref advertisement costs git-fcgi's main thread: FastCGI requests straight to the
// daemon (no nginx), its main thread's CPU time from /proc before and after, and its memory.
// Usage: npm run build && npm run build:test && node scripts/bench-main-thread.mjs
//        [--git-fcgi dist/cli.js] [--repo DIR.git] [--requests 2000] [--concurrency 16]
//        [--ini 'access_log = false' ...] (lines for [log]) [--node-args '--cpu-prof ...']
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  beginRequest,
  fcgiExchange,
  gitParams,
  paramsRecords,
  stdinRecords,
} from '../dist-test/test/helpers/fcgi-client.js';

const { values: opt } = parseArgs({
  options: {
    'git-fcgi': { type: 'string', default: 'dist/cli.js' },
    repo: { type: 'string' },
    requests: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '16' },
    service: { type: 'string', default: 'git-upload-pack' },
    /** More ini lines, e.g. --ini 'access_log = false' (added to [log]) to see what a setting costs. */
    ini: { type: 'string', multiple: true, default: [] },
    'node-args': { type: 'string', default: '' },
  },
});
const work = mkdtempSync(join(tmpdir(), 'bench-main-'));
let repo = opt.repo;
if (repo === undefined) {
  repo = join(work, 'repos', 'r.git');
  execFileSync('git', ['init', '-q', '--bare', repo]);
  const seed = join(work, 'seed');
  execFileSync('git', ['init', '-q', seed]);
  execFileSync(
    'git',
    ['-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-q', '--allow-empty', '-m', 'x'],
    {
      cwd: seed,
    },
  );
  execFileSync('git', ['push', '-q', repo, 'HEAD:refs/heads/main'], { cwd: seed });
}
const sock = join(work, 'g.sock');
const conf = join(work, 'g.ini');
writeFileSync(
  conf,
  `[server]\nlisten = unix:${sock}\nallow_root = true\n[git]\nproject_root = ${dirname(resolve(repo))}\nexport_all = true\n` +
    `[log]\nlevel = info\nfile = ${join(work, 'g.log')}\n${opt.ini.join('\n')}\n`,
);
const nodeArgs = opt['node-args'].split(' ').filter(Boolean);
const daemon = spawn(process.execPath, [...nodeArgs, resolve(opt['git-fcgi']), '-c', conf], {
  stdio: 'ignore',
});
const cleanup = () => {
  daemon.kill();
  rmSync(work, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (let i = 0; !existsSync(sock); i++) {
  if (i > 100) throw new Error('git-fcgi did not start');
  await new Promise((r) => setTimeout(r, 100));
}
const request = Buffer.concat([
  beginRequest(1),
  paramsRecords(gitParams(`/${basename(repo)}/info/refs?service=${opt.service}`)),
  stdinRecords(Buffer.alloc(0)),
]);

async function load(n, concurrency) {
  let next = 0;
  let failures = 0;
  const worker = async () => {
    while (next++ < n) {
      const reply = await fcgiExchange(sock, request);
      if (!reply.stdout.subarray(0, 200).toString('latin1').includes('advertisement')) failures++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return failures;
}

const ticks = (file) => {
  const fields = readFileSync(file, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in 1/100 s
};
const status = (field) =>
  Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'))?.[1]);

const n = Number(opt.requests);
const c = Number(opt.concurrency);
await load(200, c); // warm-up
const main0 = ticks(`/proc/${daemon.pid}/task/${daemon.pid}/stat`);
const all0 = ticks(`/proc/${daemon.pid}/stat`);
const t0 = process.hrtime.bigint();
const failures = await load(n, c);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const mainMs = ((ticks(`/proc/${daemon.pid}/task/${daemon.pid}/stat`) - main0) * 10) / n;
const allMs = ((ticks(`/proc/${daemon.pid}/stat`) - all0) * 10) / n;
console.log(
  JSON.stringify({
    requests: n,
    concurrency: c,
    failures,
    rps: Math.round(n / seconds),
    mainThreadMsPerRequest: Number(mainMs.toFixed(3)),
    processMsPerRequest: Number(allMs.toFixed(3)),
    vmRssMB: Math.round(status('VmRSS') / 1024),
    vmHwmMB: Math.round(status('VmHWM') / 1024),
  }),
);
process.exit(0);
