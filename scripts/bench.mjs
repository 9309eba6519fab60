#!/usr/bin/env node
// git-fcgi next to fcgiwrap behind one nginx, and git http-backend run directly as the limit.
// Usage: npm run bench -- [--runs N] [--cases clone,refs,clones,push,slow-clone,slow-push,
//        fleet,fleet-incremental,clone-warm,git-clones]
//        [--systems git-fcgi,fcgiwrap,fcgiwrap-c4,direct[,relay-floor][,relay-floor-socket][,relay-floor-coalesce][,git-fcgi-keepalive]] [--quick] [--out FILE] [--markdown FILE]
//        [--refs-seconds S] [--max-minutes M] [--cache DIR] [--git-fcgi dist/cli.js] [--git-fcgi-node-args=ARGS] [--keep]
//        [--baseline OTHER/dist/cli.js --baseline-label TEXT]   (another git-fcgi build, benched alongside)
//        [--baseline-server 'spawn_helper = off']   (ini lines for the baseline's [server]: the same
//        build with another setting, e.g. --baseline dist/cli.js --baseline-server 'spawn_helper = off')
//        [--baseline-git 'ref_cache = 0']   (the same for the baseline's [git] section)
//        [--git-fcgi-server LINE] [--git-fcgi-git LINE]   (the same for git-fcgi itself)
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { installCleanup, run, startServer, stopServer } from './bench/procs.mjs';
import {
  bigTreeSpec,
  cpuCgroup,
  expectedObjects,
  fetchBody,
  fetchPack,
  INCREMENTAL_COMMITS,
  prepareBigTree,
  cpuSecondsOf,
  reapedChildrenCpuSeconds,
  waitGitReaped,
} from './bench/fleet.mjs';
import { prepareRepos, repoSpecs } from './bench/repos.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// BENCH_HTTP_BACKEND: another backend for every system (a wrapper that logs its children's CPU).
const HTTP_BACKEND = process.env.BENCH_HTTP_BACKEND ?? '/usr/lib/git-core/git-http-backend';
const FCGIWRAP = '/usr/sbin/fcgiwrap';
const NGINX = '/usr/sbin/nginx';
const ALL_CASES = [
  'clone',
  'refs',
  'clones',
  'push',
  'slow-clone',
  'slow-push',
  'fleet',
  'fleet-incremental',
  'clone-warm',
  'git-clones',
];
/** Cases that need the big-tree repository. */
const BIG_TREE_CASES = ['fleet', 'fleet-incremental', 'git-clones'];
/** Concurrent clients of the fleet cases. */
const FLEET_CLIENTS = 32;
/** Clones in a row per run of clone-warm. */
const WARM_CLONES = 3;
const ALL_SYSTEMS = [
  'git-fcgi',
  'git-fcgi-keepalive',
  'fcgiwrap',
  'fcgiwrap-c4',
  'direct',
  'relay-floor',
  'relay-floor-socket',
  'relay-floor-coalesce',
];
/** The floors and the flags relay-floor.c is built with for each. */
const FLOOR_FLAGS = {
  'relay-floor': [],
  'relay-floor-socket': ['-DSTDOUT_SOCKETPAIR'],
  'relay-floor-coalesce': ['-DSTDOUT_SOCKETPAIR', '-DCOALESCE_US=150'],
};
const FLOORS = Object.keys(FLOOR_FLAGS);
/**
 * Only when asked for:
 * - relay-floor (scripts/bench/relay-floor.c): the least a FastCGI server can do, splicing git's
 *   output into nginx's connection. Clone case only: it is a reference for what any relay behind
 *   nginx can reach on this machine, not a server.
 * - relay-floor-socket: the same with the backend writing into a socketpair, relayed socket ->
 *   pipe -> connection as git-fcgi-splice does (git-fcgi-spawnd gives backends sockets).
 * - relay-floor-coalesce: relay-floor-socket letting git's output gather 150 us before a record
 *   shorter than 64 KiB is read, as git-fcgi-splice does (its wait adapts; this one's is fixed).
 * - git-fcgi-keepalive: the same build behind an nginx upstream with `keepalive 16` and
 *   `fastcgi_keep_conn on` (etc/nginx/git-fcgi.conf), where `git-fcgi` gets a new connection per
 *   request: `--cases refs --systems git-fcgi,git-fcgi-keepalive` compares the two.
 */
const DEFAULT_SYSTEMS = ALL_SYSTEMS.filter((s) => !FLOORS.includes(s) && s !== 'git-fcgi-keepalive');
const LABEL = {
  'git-fcgi': 'git-fcgi',
  fcgiwrap: 'fcgiwrap (Debian: 1 process)',
  'fcgiwrap-c4': 'fcgiwrap -c 4',
  direct: 'direct CGI',
  'relay-floor': 'C relay floor (splice)',
  'relay-floor-socket': 'C relay floor, socket stdout',
  'relay-floor-coalesce': 'C relay floor, socket stdout, coalescing',
  'git-fcgi-base': 'git-fcgi baseline',
  'git-fcgi-keepalive': 'git-fcgi, kept-alive connections',
};
const isGitFcgi = (system) =>
  system === 'git-fcgi' || system === 'git-fcgi-base' || system === 'git-fcgi-keepalive';
/** Systems nginx reaches through an upstream of kept-alive connections. */
const KEPT_ALIVE = new Set(['git-fcgi-keepalive']);
/** What the slow cases compare: git-fcgi's memory, with fcgiwrap -c 4 for the time. */
const SLOW_SYSTEMS = ['git-fcgi', 'fcgiwrap-c4'];
const SLOW_CLIENT_RATE = '40M';
const SLOW_BACKEND_BYTES_PER_S = 100 * 1024 * 1024;
const REFS_CONNECTIONS = [1, 16, 64];

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string' },
    cases: { type: 'string', default: ALL_CASES.join(',') },
    systems: { type: 'string', default: DEFAULT_SYSTEMS.join(',') },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench-results.json' },
    markdown: { type: 'string' },
    'refs-seconds': { type: 'string' },
    'max-minutes': { type: 'string', default: '60' },
    cache: { type: 'string', default: join(os.tmpdir(), 'git-fcgi-bench-cache') },
    keep: { type: 'boolean', default: false },
    'git-fcgi': { type: 'string', default: join(ROOT, 'dist/cli.js') },
    'git-fcgi-node-args': { type: 'string', default: '' },
    baseline: { type: 'string' },
    'baseline-label': { type: 'string' },
    'baseline-server': { type: 'string', multiple: true, default: [] },
    'baseline-git': { type: 'string', multiple: true, default: [] },
    'git-fcgi-server': { type: 'string', multiple: true, default: [] },
    'git-fcgi-git': { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  process.stdout.write(
    readFileSync(fileURLToPath(import.meta.url), 'utf8')
      .split('\n')
      .slice(1, 5)
      .join('\n') + '\n',
  );
  process.exit(0);
}
const RUNS = Number(opt.runs ?? (opt.quick ? 1 : 5));
const CASES = opt.cases.split(',').filter((c) => ALL_CASES.includes(c));
const SYSTEMS = opt.systems.split(',').filter((s) => ALL_SYSTEMS.includes(s));
if (opt.baseline) {
  ALL_SYSTEMS.splice(1, 0, 'git-fcgi-base');
  SYSTEMS.splice(SYSTEMS.includes('git-fcgi') ? SYSTEMS.indexOf('git-fcgi') + 1 : 0, 0, 'git-fcgi-base');
  SLOW_SYSTEMS.push('git-fcgi-base');
  if (opt['baseline-label']) LABEL['git-fcgi-base'] = opt['baseline-label'];
}
/** Systems of every case but the clone stream. */
const SERVERS = SYSTEMS.filter((s) => !FLOORS.includes(s));
const REFS_SECONDS = Number(opt['refs-seconds'] ?? (opt.quick ? 1 : 4));
const DIRECT_REFS_COUNT = opt.quick ? 200 : 500;

const log = (msg) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const work = mkdtempSync(join(os.tmpdir(), 'git-fcgi-bench-'));
/** A CPU-counting cgroup per server (see cpuCgroup), removed once everything has been killed. */
const cgroups = {};
installCleanup(() => {
  if (opt.keep) log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
});
const deadline = setTimeout(
  () => {
    log(`giving up after --max-minutes ${opt['max-minutes']}`);
    process.exit(2);
  },
  Number(opt['max-minutes']) * 60_000,
);
deadline.unref();

// ---------------------------------------------------------------- setup

async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function waitFor(what, test, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await test()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const socketUp = (path) =>
  new Promise((resolve) => {
    const s = net.connect(path, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

function readStatus(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** `pid` and those of its children whose command is `comm` (never the git processes it runs). */
function withChildren(pid, comm) {
  const children = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && name === comm) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return [pid, ...children];
}

/**
 * git-fcgi and its helpers (git-fcgi-spawnd, git-fcgi-splice: children of the daemon), when it
 * runs them: the splice helper does the daemon's relaying, so its CPU is the daemon's.
 */
const daemonPids = (pid) => [
  ...withChildren(pid, 'git-fcgi-spawnd'),
  ...withChildren(pid, 'git-fcgi-splice').slice(1),
];

/**
 * CPU seconds a server has used itself so far (utime + stime; not its children's): git-fcgi with
 * its spawn helper, fcgiwrap with its workers, nginx with its workers.
 */
function ownCpuSeconds(system, pid) {
  // A floor's connection processes print their own CPU as they finish (git's not included).
  if (FLOORS.includes(system)) {
    const log = join(work, `${system}.out`);
    if (!existsSync(log)) return 0;
    return readFileSync(log, 'latin1')
      .split('\n')
      .reduce((sum, line) => sum + (Number(/^cpu (\S+)$/.exec(line)?.[1]) || 0), 0);
  }
  const comm = { nginx: 'nginx', fcgiwrap: 'fcgiwrap', 'fcgiwrap-c4': 'fcgiwrap' }[system];
  return cpuSecondsOf(comm ? withChildren(pid, comm) : daemonPids(pid), 'self');
}

/** Peak RSS is the kernel's VmHWM, reset to the current RSS before each measured run; the helper's counts too. */
function resetPeakRss(pid) {
  for (const p of daemonPids(pid)) writeFileSync(`/proc/${p}/clear_refs`, '5');
}
const peakRssMb = (pid) => daemonPids(pid).reduce((sum, p) => sum + readStatus(p, 'VmHWM'), 0);

/** CPU time used by the whole machine so far (all processes, user + system + irq), in seconds. */
function machineCpuSeconds() {
  const [, ...fields] = readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq] = fields.map(Number);
  return (user + nice + system + irq + softirq) / 100; // USER_HZ
}

/** A backend that reads its request body at a fixed rate, then answers: "a backend that reads slowly". */
function writeSlowBackend(path) {
  writeFileSync(
    path,
    `#!${process.execPath}
const rate = ${SLOW_BACKEND_BYTES_PER_S};
const start = Date.now();
let got = 0;
process.stdin.on('data', (chunk) => {
  got += chunk.length;
  const aheadMs = (got / rate) * 1000 - (Date.now() - start);
  if (aheadMs > 1) {
    process.stdin.pause();
    setTimeout(() => process.stdin.resume(), aheadMs);
  }
});
process.stdin.on('end', () => {
  process.stdout.write('Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nread ' + got + '\\n');
});
`,
  );
  chmodSync(path, 0o755);
}

function location(path, socket, script, extra = '', upstream = null) {
  return `    location ${path} {
      client_max_body_size 0;
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME ${script};
      fastcgi_param GIT_PROJECT_ROOT ${work}/repos;
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
      fastcgi_param REQUEST_ID $request_id;
      fastcgi_request_buffering off;
      client_body_buffer_size 64k;
      fastcgi_buffering off;
      fastcgi_buffer_size 64k;
      fastcgi_buffers 4 64k;
      fastcgi_read_timeout 600s;
      fastcgi_send_timeout 600s;
${extra}${upstream ? `      fastcgi_keep_conn on;\n      fastcgi_pass ${upstream};\n` : `      fastcgi_pass unix:${socket};\n`}    }`;
}

async function setup(manifest) {
  const repos = join(work, 'repos');
  await mkdir(repos);
  // Hard links: instant, and git never rewrites a pack in place.
  for (const name of ['large.git', 'medium.git']) {
    execFileSync('cp', ['-al', join(manifest.root, name), join(repos, name)]);
  }
  if (manifest.bigTree) execFileSync('cp', ['-al', manifest.bigTree.repo, join(repos, 'bigtree.git')]);
  execFileSync('git', ['init', '-q', '--bare', join(repos, 'slowpush.git')]);
  const slowBackend = join(work, 'slow-backend.mjs');
  writeSlowBackend(slowBackend);

  const servers = {};
  const sock = (name) => join(work, `${name}.sock`);
  const wanted = new Set(SYSTEMS.filter((s) => s !== 'direct'));
  if (CASES.some((c) => c.startsWith('slow'))) for (const s of SLOW_SYSTEMS) wanted.add(s);

  const gitFcgi = (name, cli, backend, serverLines = [], gitLines = []) => {
    const conf = join(work, `${name}.ini`);
    // The benchmark runs as root; builds that know the root rule need to be told it is meant.
    const help = execFileSync(process.execPath, [resolve(cli), '--help'], { encoding: 'utf8' });
    const allowRoot = help.includes('--allow-root') ? 'allow_root = true\n' : '';
    const more = serverLines.map((line) => `${line}\n`).join('');
    const moreGit = gitLines.map((line) => `${line}\n`).join('');
    writeFileSync(
      conf,
      `[server]\nlisten = unix:${sock(name)}\nsocket_mode = 0666\n${allowRoot}${more}[git]\nproject_root = ${repos}\nexport_all = true\n${moreGit}` +
        `${backend ? `backend = ${backend}\n` : ''}[log]\nlevel = info\nfile = ${join(work, `${name}.log`)}\n`,
    );
    const nodeArgs = opt['git-fcgi-node-args'].split(' ').filter(Boolean);
    return startServer(process.execPath, [...nodeArgs, resolve(cli), '-c', conf], {
      logFile: join(work, `${name}.out`),
    });
  };
  for (const [system, cli] of [
    ['git-fcgi', opt['git-fcgi']],
    ['git-fcgi-keepalive', opt['git-fcgi']],
    ['git-fcgi-base', opt.baseline],
  ]) {
    if (!wanted.has(system)) continue;
    const base = system === 'git-fcgi-base';
    const lines = base ? opt['baseline-server'] : opt['git-fcgi-server'];
    const gitLines = base ? opt['baseline-git'] : opt['git-fcgi-git'];
    servers[system] = gitFcgi(system, cli, undefined, lines, gitLines);
    servers[`${system}-slow`] = gitFcgi(`${system}-slow`, cli, slowBackend, lines, gitLines);
  }
  const env = { PATH: '/usr/local/bin:/usr/bin:/bin' };
  if (wanted.has('fcgiwrap')) {
    servers.fcgiwrap = startServer(FCGIWRAP, ['-s', `unix:${sock('fcgiwrap')}`], {
      env,
      logFile: join(work, 'fcgiwrap.out'),
    });
  }
  if (wanted.has('fcgiwrap-c4')) {
    servers['fcgiwrap-c4'] = startServer(FCGIWRAP, ['-c', '4', '-s', `unix:${sock('fcgiwrap-c4')}`], {
      env,
      logFile: join(work, 'fcgiwrap-c4.out'),
    });
  }
  for (const floor of FLOORS.filter((f) => wanted.has(f))) {
    const binary = join(work, floor);
    const flags = FLOOR_FLAGS[floor];
    execFileSync(process.env.CC || 'cc', [
      '-O2',
      ...flags,
      '-o',
      binary,
      join(ROOT, 'scripts/bench/relay-floor.c'),
    ]);
    servers[floor] = startServer(binary, [sock(floor)], { env, logFile: join(work, `${floor}.out`) });
  }
  for (const name of Object.keys(servers)) {
    await waitFor(`${name} on ${sock(name)}`, () => socketUp(sock(name)));
    // Once up: git-fcgi's spawn helper is running by then, and is moved in with it.
    const cgroup = cpuCgroup(name);
    if (cgroup) {
      cgroup.add(servers[name].pid);
      cgroups[name] = cgroup;
    }
  }
  if (wanted.has('fcgiwrap') || wanted.has('fcgiwrap-c4'))
    execFileSync('chmod', ['0666', ...[...wanted].filter((s) => s.startsWith('fcgiwrap')).map(sock)]);

  const ports = {};
  const blocks = [];
  for (const system of wanted) {
    ports[system] = await freePort();
    const slowSock = isGitFcgi(system) ? sock(`${system}-slow`) : sock(system);
    const upstream = KEPT_ALIVE.has(system) ? `kept_alive_${system.replaceAll('-', '_')}` : null;
    if (upstream)
      blocks.push(`  upstream ${upstream} {\n    server unix:${sock(system)};\n    keepalive 16;\n  }`);
    blocks.push(`  server {
    listen 127.0.0.1:${ports[system]} backlog=1024;
${location('/', sock(system), HTTP_BACKEND, '      fastcgi_param PATH_INFO $uri;\n', upstream)}
${location('/slow/', slowSock, slowBackend, '      fastcgi_split_path_info ^(/slow)(/.*)$;\n      fastcgi_param PATH_INFO $fastcgi_path_info;\n')}
  }`);
  }
  const prefix = join(work, 'nginx');
  await mkdir(prefix);
  const p = (n) => join(prefix, n);
  writeFileSync(
    p('nginx.conf'),
    `daemon off;\nuser root;\nworker_processes 2;\npid ${p('nginx.pid')};\nerror_log ${p('error.log')} warn;\n` +
      `events { worker_connections 2048; }\nhttp {\n  access_log off;\n  keepalive_requests 100000;\n` +
      `  client_body_temp_path ${p('cb')};\n  fastcgi_temp_path ${p('fc')};\n  proxy_temp_path ${p('px')};\n` +
      `  uwsgi_temp_path ${p('uw')};\n  scgi_temp_path ${p('sc')};\n${blocks.join('\n')}\n}\n`,
  );
  servers.nginx = startServer(NGINX, ['-p', `${prefix}/`, '-c', p('nginx.conf'), '-e', p('error.log')], {
    logFile: p('stdout.log'),
  });
  for (const system of wanted) {
    await waitFor(`nginx on ${ports[system]}`, () => socketUp({ port: ports[system], host: '127.0.0.1' }));
  }
  return { servers, ports, repos };
}

// ---------------------------------------------------------------- cases

function cgiEnv(repos, method, pathInfo, extra = {}) {
  return {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: method,
    PATH_INFO: pathInfo,
    GIT_PROJECT_ROOT: repos,
    GIT_HTTP_EXPORT_ALL: '1',
    REMOTE_ADDR: '127.0.0.1',
    SERVER_PROTOCOL: 'HTTP/1.1',
    ...extra,
  };
}

const CURL_W = '%{http_code} %{size_download} %{time_total}';

async function curlPost(url, bodyFile, contentType, { rate, outFile } = {}) {
  const args = ['-sS', '-X', 'POST', '-T', bodyFile, '-H', `Content-Type: ${contentType}`, '-H', 'Expect:'];
  if (rate) args.push('--limit-rate', rate);
  args.push('-o', outFile ?? '/dev/null', '-w', CURL_W, url);
  const r = await run('curl', args, { timeoutMs: 600_000 });
  const [status, size, seconds] = r.stdout.trim().split(' ');
  return {
    ok: r.code === 0 && status === '200',
    status,
    bytes: Number(size),
    seconds: Number(seconds),
    err: r.stderr,
  };
}

function makeCases(ctx) {
  const { manifest, ports, repos, servers } = ctx;
  const url = (system, path) => `http://127.0.0.1:${ports[system]}${path}`;
  const pushTarget = () => {
    const dir = join(repos, 'push.git');
    rmSync(dir, { recursive: true, force: true });
    execFileSync('git', ['init', '-q', '--bare', dir]);
    execFileSync('git', ['-C', dir, 'config', 'http.receivepack', 'true']);
  };
  /** The processes whose reaped children are the git processes a server ran. */
  const gitParents = (system) =>
    isGitFcgi(system) ? daemonPids(servers[system].pid) : withChildren(servers[system].pid, 'fcgiwrap');
  /**
   * Runs `clients` (an async function per client) at once against `system` and measures wall
   * time, git's CPU (the server's reaped children), the server's own CPU and nginx's.
   */
  /** CPU seconds of `system`'s git processes so far: its cgroup's, less its own. */
  const gitCpu = (system) => {
    const cgroup = cgroups[system];
    if (cgroup) return cgroup.cpuSeconds() - ownCpuSeconds(system, servers[system].pid);
    return reapedChildrenCpuSeconds(gitParents(system));
  };
  const concurrently = async (system, clients) => {
    const gitBefore = gitCpu(system);
    const serverBefore = ownCpuSeconds(system, servers[system].pid);
    const nginxBefore = ownCpuSeconds('nginx', servers.nginx.pid);
    const started = process.hrtime.bigint();
    const results = await Promise.all(clients.map((client) => client()));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    // git may still be exiting after the last byte: its CPU counts once it has been reaped.
    await waitGitReaped(servers[system].pid);
    return {
      results,
      seconds,
      gitCpuSeconds: gitCpu(system) - gitBefore,
      serverCpuSeconds: ownCpuSeconds(system, servers[system].pid) - serverBefore,
      nginxCpuSeconds: ownCpuSeconds('nginx', servers.nginx.pid) - nginxBefore,
    };
  };
  const bigTree = manifest.bigTree;
  // Every measured fleet run wants another commit (main~k), so that no run is served from what an
  // earlier one left behind (a pack cache); the 32 clients of a run want the same.
  let fleetSeq = 0;
  const nextFleetCommit = () => {
    const k = fleetSeq++ % (bigTree.commits.length - INCREMENTAL_COMMITS - 1);
    return { k, want: bigTree.commits[k], have: bigTree.commits[k + INCREMENTAL_COMMITS] };
  };
  /** Runs `git index-pack --stdin --strict` on a depth-1 pack (the shallow commits told to the repository). */
  const strictIndex = async (chunks, shallow) => {
    const dir = join(work, 'index-pack.git');
    rmSync(dir, { recursive: true, force: true });
    execFileSync('git', ['init', '-q', '--bare', dir]);
    if (shallow.length) writeFileSync(join(dir, 'shallow'), `${shallow.join('\n')}\n`);
    const packFile = join(work, 'index-pack.pack');
    writeFileSync(packFile, Buffer.concat(chunks));
    const r = await run('git', ['-C', dir, 'index-pack', '--stdin', '--strict'], { stdin: packFile });
    rmSync(dir, { recursive: true, force: true });
    rmSync(packFile, { force: true });
    return r.code === 0 ? null : `index-pack --strict: ${r.stderr.trim().split('\n').pop()}`;
  };
  /** The fleet: FLEET_CLIENTS identical v2 fetches, each response checked (see fleet.mjs). */
  const fleet = async (system, incremental) => {
    const { k, want, have } = nextFleetCommit();
    const request = incremental ? { want, have } : { want, deepen: 1 };
    const body = fetchBody(request);
    const expected = expectedObjects(join(repos, 'bigtree.git'), request);
    const chunks = [];
    const m = await concurrently(
      system,
      Array.from(
        { length: FLEET_CLIENTS },
        (_, i) => () =>
          fetchPack(url(system, '/bigtree.git/git-upload-pack'), body, {
            expected,
            onPack: i === 0 && !incremental ? (c) => chunks.push(c) : undefined,
          }),
      ),
    );
    const errors = m.results.filter((r) => !r.ok).map((r) => r.error);
    // One response of each depth-1 run through git's own strictest check, after the clock stopped.
    if (!incremental && m.results[0].ok) {
      const strict = await strictIndex(chunks, m.results[0].shallow);
      if (strict) errors.push(strict);
    }
    const bytes = m.results.reduce((a, r) => a + r.bytes, 0);
    return {
      ok: true,
      commit: `main~${k}`,
      objects: expected,
      seconds: m.seconds,
      gitCpuSeconds: m.gitCpuSeconds,
      serverCpuSeconds: m.serverCpuSeconds,
      nginxCpuSeconds: m.nginxCpuSeconds,
      responseMB: bytes / 1e6,
      failures: errors.length,
      ...(errors.length ? { errors: [...new Set(errors)].slice(0, 3) } : {}),
    };
  };
  const pushOk = (file) =>
    existsSync(file) && /unpack ok[\s\S]*ok refs\/heads\/main/.test(readFileSync(file, 'latin1'));

  return {
    clone: {
      title: `1. full clone of the large repo (pack ${(manifest.largePackFileBytes / 1e6).toFixed(0)} MB), upload-pack POST`,
      systems: SYSTEMS,
      async measure(system) {
        const bytes = manifest.largePackFileBytes;
        if (system === 'direct') {
          const size = readFileSync(manifest.cloneBody).length;
          const r = await run(HTTP_BACKEND, [], {
            env: cgiEnv(repos, 'POST', '/large.git/git-upload-pack', {
              CONTENT_TYPE: 'application/x-git-upload-pack-request',
              CONTENT_LENGTH: String(size),
            }),
            stdin: manifest.cloneBody,
            stdout: 'ignore',
          });
          return { ok: r.code === 0, seconds: r.ms / 1000, mbps: bytes / 1e6 / (r.ms / 1000) };
        }
        const serverBefore = ownCpuSeconds(system, servers[system].pid);
        const gitBefore = gitCpu(system);
        const r = await curlPost(
          url(system, '/large.git/git-upload-pack'),
          manifest.cloneBody,
          'application/x-git-upload-pack-request',
        );
        await waitGitReaped(servers[system].pid);
        return {
          ok: r.ok && r.bytes >= bytes * 0.99,
          seconds: r.seconds,
          mbps: bytes / 1e6 / r.seconds,
          responseBytes: r.bytes,
          serverCpuSeconds: ownCpuSeconds(system, servers[system].pid) - serverBefore,
          gitCpuSeconds: gitCpu(system) - gitBefore,
        };
      },
    },
    ...Object.fromEntries(
      REFS_CONNECTIONS.map((c) => [
        `refs-${c}`,
        {
          group: 'refs',
          title: `2. ref advertisement (info/refs?service=git-upload-pack), ${c} connection${c > 1 ? 's' : ''}`,
          systems: SERVERS,
          async measure(system) {
            if (system === 'direct') {
              const list = join(work, 'direct-refs.list');
              writeFileSync(list, Array.from({ length: DIRECT_REFS_COUNT }, (_, i) => i).join('\n'));
              const r = await run('xargs', ['-P', String(c), '-n', '1', '-a', list, HTTP_BACKEND], {
                env: cgiEnv(repos, 'GET', '/large.git/info/refs', {
                  QUERY_STRING: 'service=git-upload-pack',
                }),
                stdout: 'ignore',
              });
              return {
                ok: r.code === 0,
                rps: DIRECT_REFS_COUNT / (r.ms / 1000),
                failures: r.code === 0 ? 0 : 1,
              };
            }
            const r = await run(
              'wrk',
              [
                '-t',
                String(Math.min(2, c)),
                '-c',
                String(c),
                '-d',
                `${REFS_SECONDS}s`,
                '--timeout',
                '10s',
                url(system, '/large.git/info/refs?service=git-upload-pack'),
              ],
              { timeoutMs: (REFS_SECONDS + 30) * 1000 },
            );
            const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
            const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
            const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
              r.stdout,
            );
            const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
            return { ok: r.code === 0 && Number.isFinite(rps), rps, failures: non2xx + sockErrors };
          },
        },
      ]),
    ),
    clones: {
      title: `3. 32 concurrent git clones of the medium repo (pack ${(manifest.mediumPackFileBytes / 1e6).toFixed(1)} MB)`,
      systems: SERVERS.filter((s) => s !== 'direct'),
      async measure(system) {
        const base = join(work, 'clones');
        rmSync(base, { recursive: true, force: true });
        const cpuBefore = machineCpuSeconds();
        const serverBefore = ownCpuSeconds(system, servers[system].pid);
        const nginxBefore = ownCpuSeconds('nginx', servers.nginx.pid);
        const started = process.hrtime.bigint();
        const results = await Promise.all(
          Array.from({ length: 32 }, (_, i) =>
            run('git', ['clone', '-q', '--bare', url(system, '/medium.git'), join(base, `c${i}.git`)], {
              env: { PATH: process.env.PATH, HOME: work, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1' },
              timeoutMs: 300_000,
            }),
          ),
        );
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const cpuSeconds = machineCpuSeconds() - cpuBefore;
        const serverCpuSeconds = ownCpuSeconds(system, servers[system].pid) - serverBefore;
        const nginxCpuSeconds = ownCpuSeconds('nginx', servers.nginx.pid) - nginxBefore;
        rmSync(base, { recursive: true, force: true });
        const failures = results.filter((r) => r.code !== 0).length;
        return { ok: true, seconds, cpuSeconds, serverCpuSeconds, nginxCpuSeconds, failures };
      },
    },
    push: {
      title: `4. push of ${(manifest.pushBodyBytes / 1e9).toFixed(2)} GB (receive-pack POST)`,
      systems: SERVERS,
      async measure(system) {
        pushTarget();
        const out = join(work, 'push.out');
        rmSync(out, { force: true });
        const bytes = manifest.pushBodyBytes;
        const cpu = {};
        let seconds;
        if (system === 'direct') {
          const r = await run(HTTP_BACKEND, [], {
            env: cgiEnv(repos, 'POST', '/push.git/git-receive-pack', {
              CONTENT_TYPE: 'application/x-git-receive-pack-request',
              CONTENT_LENGTH: String(bytes),
              REMOTE_USER: 'bench',
            }),
            stdin: manifest.pushBody,
            stdout: out,
          });
          seconds = r.ms / 1000;
        } else {
          const gitBefore = gitCpu(system);
          const serverBefore = ownCpuSeconds(system, servers[system].pid);
          const r = await curlPost(
            url(system, '/push.git/git-receive-pack'),
            manifest.pushBody,
            'application/x-git-receive-pack-request',
            { outFile: out },
          );
          seconds = r.seconds;
          await waitGitReaped(servers[system].pid);
          cpu.gitCpuSeconds = gitCpu(system) - gitBefore;
          cpu.serverCpuSeconds = ownCpuSeconds(system, servers[system].pid) - serverBefore;
        }
        const ok = pushOk(out);
        rmSync(join(repos, 'push.git'), { recursive: true, force: true });
        return { ok, seconds, mbps: bytes / 1e6 / seconds, ...cpu };
      },
    },
    'slow-clone': {
      title: `6a. full clone of the large repo read at ${SLOW_CLIENT_RATE}B/s (fastcgi_buffering off)`,
      systems: SLOW_SYSTEMS,
      async measure(system) {
        const r = await curlPost(
          url(system, '/large.git/git-upload-pack'),
          manifest.cloneBody,
          'application/x-git-upload-pack-request',
          { rate: SLOW_CLIENT_RATE },
        );
        return {
          ok: r.ok && r.bytes >= manifest.largePackFileBytes * 0.99,
          seconds: r.seconds,
          mbps: r.bytes / 1e6 / r.seconds,
        };
      },
    },
    fleet: {
      title: `7. CI fleet: ${FLEET_CLIENTS} concurrent depth-1 fetches (v2, deepen 1) of the big-tree repo (${bigTree?.files} files)`,
      systems: SERVERS.filter((s) => s !== 'direct'),
      showFailures: true,
      measure: (system) => fleet(system, false),
    },
    'fleet-incremental': {
      title: `8. incremental fleet: ${FLEET_CLIENTS} concurrent fetches of the same ${INCREMENTAL_COMMITS} new commits (v2, with a have) of the big-tree repo`,
      systems: SERVERS.filter((s) => s !== 'direct'),
      showFailures: true,
      measure: (system) => fleet(system, true),
    },
    'clone-warm': {
      title: `9. full clone of the large repo (pack ${(manifest.largePackFileBytes / 1e6).toFixed(0)} MB), warm, ${WARM_CLONES} in a row`,
      systems: SERVERS.filter((s) => s !== 'direct'),
      async measure(system) {
        const bytes = manifest.largePackFileBytes;
        const seconds = [];
        let ok = true;
        for (let i = 0; i < WARM_CLONES; i++) {
          const r = await curlPost(
            url(system, '/large.git/git-upload-pack'),
            manifest.cloneBody,
            'application/x-git-upload-pack-request',
          );
          ok &&= r.ok && r.bytes >= bytes * 0.99;
          seconds.push(r.seconds);
        }
        return {
          ok,
          seconds: median(seconds),
          ...Object.fromEntries(seconds.map((s, i) => [`seconds${i + 1}`, s])),
        };
      },
    },
    'git-clones': {
      title: `10. ${FLEET_CLIENTS} concurrent git clone --depth 1 of the big-tree repo (${bigTree?.files} files)`,
      systems: SERVERS.filter((s) => s !== 'direct'),
      showFailures: true,
      async measure(system) {
        const base = join(work, 'git-clones');
        rmSync(base, { recursive: true, force: true });
        const cpuBefore = machineCpuSeconds();
        const m = await concurrently(
          system,
          Array.from(
            { length: FLEET_CLIENTS },
            (_, i) => () =>
              run(
                'git',
                [
                  'clone',
                  '-q',
                  '--bare',
                  '--depth',
                  '1',
                  url(system, '/bigtree.git'),
                  join(base, `c${i}.git`),
                ],
                {
                  env: {
                    PATH: process.env.PATH,
                    HOME: work,
                    GIT_TERMINAL_PROMPT: '0',
                    GIT_CONFIG_NOSYSTEM: '1',
                  },
                  timeoutMs: 600_000,
                },
              ),
          ),
        );
        const cpuSeconds = machineCpuSeconds() - cpuBefore;
        rmSync(base, { recursive: true, force: true });
        const failed = m.results.filter((r) => r.code !== 0);
        return {
          ok: true,
          seconds: m.seconds,
          cpuSeconds,
          gitCpuSeconds: m.gitCpuSeconds,
          serverCpuSeconds: m.serverCpuSeconds,
          nginxCpuSeconds: m.nginxCpuSeconds,
          failures: failed.length,
          ...(failed.length
            ? { errors: [...new Set(failed.map((r) => r.stderr.trim().split('\n').pop()))].slice(0, 3) }
            : {}),
        };
      },
    },
    'slow-push': {
      title: `6b. push of ${(manifest.pushBodyBytes / 1e9).toFixed(2)} GB into a backend reading ${SLOW_BACKEND_BYTES_PER_S / 1048576} MiB/s`,
      systems: SLOW_SYSTEMS,
      rssOf: (system) => (isGitFcgi(system) ? servers[`${system}-slow`].pid : undefined),
      async measure(system) {
        const out = join(work, 'slow-push.out');
        const r = await curlPost(
          url(system, '/slow/slowpush.git/git-receive-pack'),
          manifest.pushBody,
          'application/x-git-receive-pack-request',
          { outFile: out },
        );
        const ok = r.ok && readFileSync(out, 'latin1').includes(`read ${manifest.pushBodyBytes}`);
        return { ok, seconds: r.seconds, mbps: manifest.pushBodyBytes / 1e6 / r.seconds };
      },
    },
  };
}

// ---------------------------------------------------------------- stats and report

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
function fmt(x) {
  if (!Number.isFinite(x)) return '—';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}
function summary(samples) {
  const xs = samples.filter(Number.isFinite);
  if (xs.length === 0) return null;
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}
const cell = (s) =>
  s === null ? '—' : s.n === 1 ? fmt(s.median) : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;

function machineInfo() {
  const sh = (cmd, args) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch (e) {
      return String(e.stderr ?? '').trim();
    }
  };
  return {
    date: new Date().toISOString(),
    host: `${os.type()} ${os.release()} ${os.arch()}`,
    os: /PRETTY_NAME="(.*)"/.exec(sh('cat', ['/etc/os-release']))?.[1] ?? '?',
    cpu: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}`,
    memGB: Math.round(os.totalmem() / 1e9),
    node: process.version,
    nginx:
      execFileSync(NGINX, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) ||
      sh('sh', ['-c', `${NGINX} -v 2>&1`]),
    git: sh('git', ['--version']),
    fcgiwrap: sh('dpkg-query', ['-W', '-f=${Version}', 'fcgiwrap']),
    gitFcgi: sh('git', ['-C', ROOT, 'describe', '--always', '--dirty']),
    loadavg: os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
  };
}

/** Table rows: [label, metric, unit, lower-is-better]. */
const METRICS = {
  clone: [
    ['wall time, s', 'seconds', true],
    ['MB/s', 'mbps', false],
    ["git's CPU (http-backend, upload-pack, pack-objects), s", 'gitCpuSeconds', true],
    ["the FastCGI server's own CPU (not git's), s", 'serverCpuSeconds', true],
  ],
  refs: [['requests/s', 'rps', false]],
  clones: [
    ['wall time, s', 'seconds', true],
    ['CPU of the whole machine (servers and clients), s', 'cpuSeconds', true],
    ["the FastCGI server's own CPU (not git's), s", 'serverCpuSeconds', true],
    ["nginx's CPU, s", 'nginxCpuSeconds', true],
  ],
  push: [
    ['wall time, s', 'seconds', true],
    ['MB/s', 'mbps', false],
    ["git's CPU (http-backend, receive-pack, index-pack), s", 'gitCpuSeconds', true],
    ["the FastCGI server's own CPU (not git's), s", 'serverCpuSeconds', true],
  ],
  'slow-clone': [['wall time, s', 'seconds', true]],
  fleet: [
    ['wall time, s', 'seconds', true],
    ["git's CPU (the server's git processes), s", 'gitCpuSeconds', true],
    ["the FastCGI server's own CPU (not git's), s", 'serverCpuSeconds', true],
    ["nginx's CPU, s", 'nginxCpuSeconds', true],
  ],
  'fleet-incremental': [
    ['wall time, s', 'seconds', true],
    ["git's CPU (the server's git processes), s", 'gitCpuSeconds', true],
    ["the FastCGI server's own CPU (not git's), s", 'serverCpuSeconds', true],
  ],
  'clone-warm': Array.from({ length: WARM_CLONES }, (_, i) => [
    `clone ${i + 1} of ${WARM_CLONES}: wall time, s`,
    `seconds${i + 1}`,
    true,
  ]),
  'git-clones': [
    ['wall time, s', 'seconds', true],
    ['CPU of the whole machine (servers and clients), s', 'cpuSeconds', true],
    ["git's CPU on the server side, s", 'gitCpuSeconds', true],
    ["the FastCGI server's own CPU (not git's), s", 'serverCpuSeconds', true],
  ],
  'slow-push': [['wall time, s', 'seconds', true]],
};

function report(results, info, caseDefs) {
  const cols = ALL_SYSTEMS.filter((s) => SYSTEMS.includes(s) || Object.values(results).some((r) => r[s]));
  const ratioTo = ['git-fcgi-base', 'fcgiwrap-c4', 'direct', 'relay-floor'].filter((s) => cols.includes(s));
  const head = ['case', ...cols.map((c) => LABEL[c]), ...ratioTo.map((r) => `git-fcgi ÷ ${LABEL[r]}`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  const row = (label, values, ratios) => lines.push(`| ${[label, ...values, ...ratios].join(' | ')} |`);
  for (const [key, def] of Object.entries(caseDefs)) {
    const res = results[key];
    if (!res) continue;
    const group = def.group ?? key;
    for (const [label, metric] of METRICS[group]) {
      const stats = Object.fromEntries(
        cols.map((s) => [s, res[s] ? summary(res[s].map((x) => x[metric])) : null]),
      );
      const mine = stats['git-fcgi'];
      row(
        `${def.title}: ${label}`,
        cols.map((s) => cell(stats[s])),
        ratioTo.map((r) => (mine && stats[r] ? (mine.median / stats[r].median).toFixed(2) : '—')),
      );
    }
    const failures = cols.map((s) =>
      res[s] ? res[s].reduce((a, x) => a + (x.failures ?? 0) + (x.ok ? 0 : 1), 0) : null,
    );
    if (
      failures.some((f) => f !== null && f > 0) ||
      group === 'clones' ||
      key === 'refs-64' ||
      def.showFailures
    ) {
      row(
        `${def.title}: failures (all runs)`,
        failures.map((f) => (f === null ? '—' : String(f))),
        ratioTo.map(() => ''),
      );
    }
    if (res['git-fcgi'] || res['git-fcgi-base']) {
      row(
        `${def.title}: git-fcgi peak RSS, MB`,
        cols.map((s) => (isGitFcgi(s) && res[s] ? cell(summary(res[s].map((x) => x.rssMb))) : '')),
        ratioTo.map(() => ''),
      );
    }
  }
  const machine = `${info.date.slice(0, 10)}, ${info.os}, ${info.cpu}, ${info.memGB} GB RAM, ${info.host}; node ${info.node}, ${info.nginx.replace('nginx version: ', '')}, ${info.git}, fcgiwrap ${info.fcgiwrap}; git-fcgi ${info.gitFcgi}; load average at start ${info.loadavg}`;
  return `${lines.join('\n')}\n\n${RUNS} runs per system, systems alternating run by run; median (min–max). Peak RSS: git-fcgi's VmHWM plus its spawn helper's, reset (clear_refs 5) before each run.\n${machine}\n`;
}

// ---------------------------------------------------------------- main

async function main() {
  const manifest = await prepareRepos(opt.cache, repoSpecs(opt.quick), log);
  if (CASES.some((c) => BIG_TREE_CASES.includes(c)))
    manifest.bigTree = await prepareBigTree(opt.cache, bigTreeSpec(opt.quick), log);
  const info = machineInfo();
  log(
    `work dir ${work}; large pack ${(manifest.largePackFileBytes / 1e6).toFixed(0)} MB, push ${(manifest.pushBodyBytes / 1e6).toFixed(0)} MB`,
  );
  const ctx = { manifest, ...(await setup(manifest)) };
  const caseDefs = makeCases(ctx);
  const selected = Object.fromEntries(
    Object.entries(caseDefs).filter(([k, d]) => CASES.includes(d.group ?? k)),
  );
  const results = {};
  for (const [key, def] of Object.entries(selected)) {
    results[key] = {};
    for (let r = 0; r < RUNS; r++) {
      const order = def.systems.map((_, i) => def.systems[(i + r) % def.systems.length]);
      for (const system of order) {
        const pid = def.rssOf ? def.rssOf(system) : isGitFcgi(system) ? ctx.servers[system].pid : undefined;
        if (pid !== undefined) resetPeakRss(pid);
        const m = await def.measure(system);
        if (pid !== undefined) m.rssMb = peakRssMb(pid);
        (results[key][system] ??= []).push(m);
        log(`${key} run ${r + 1}/${RUNS} ${system}: ${JSON.stringify(m)}`);
      }
    }
  }
  info.loadavgEnd = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const table = report(results, info, selected);
  process.stdout.write(`\n${table}`);
  writeFileSync(opt.out, JSON.stringify({ info, runs: RUNS, manifest, results }, null, 2));
  if (opt.markdown) writeFileSync(opt.markdown, table);
  log(`wrote ${opt.out}${opt.markdown ? ` and ${opt.markdown}` : ''}`);
  for (const [name, server] of Object.entries(ctx.servers)) {
    if (name !== 'nginx') await stopServer(server);
  }
  await stopServer(ctx.servers.nginx);
  const errors = readFileSync(join(work, 'nginx', 'error.log'), 'utf8').trim();
  if (errors) log(`nginx error.log (last lines):\n${errors.split('\n').slice(-5).join('\n')}`);
}

process.on('exit', () => {
  for (const cgroup of Object.values(cgroups)) cgroup.remove();
});

main().then(
  () => process.exit(0),
  (err) => {
    log(`bench failed: ${err.stack ?? err}`);
    process.exit(1);
  },
);
