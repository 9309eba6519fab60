// The CI-fleet cases: a repository with a big tree (a depth-1 fetch of it costs git about as much
// CPU as one of git.git's tip, since a shallow pack gets no bitmap help and every object goes
// through pack-objects' delta search), protocol v2 fetch requests, and a client that checks each
// response is a whole pack without keeping it.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';

const GIT_ENV = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: '/nonexistent',
};

function git(args, opts = {}) {
  const r = spawnSync('git', args, { env: GIT_ENV, maxBuffer: 256 << 20, ...opts });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${String(r.stderr)}`);
  return String(r.stdout);
}

/** Sizes of the big-tree repository: `files` source files at the tip, `commits` commits of 20 changed files each. */
export const bigTreeSpec = (quick) => (quick ? { files: 1000, commits: 60 } : { files: 20000, commits: 100 });

/** Commits between the have and the want of the incremental fetch. */
export const INCREMENTAL_COMMITS = 20;

/** A C-like source file: mostly the same from version to version, a line in nine changes. */
function sourceFile(file, version) {
  const lines = [];
  const n = 30 + (file % 50);
  for (let i = 0; i < n; i++) {
    const v = i % 9 === 0 ? version : 0;
    const tag = createHash('md5').update(`${file}:${i}:${v}`).digest('hex').slice(0, 16);
    lines.push(
      `static int fn_${file}_${i}(int x) { return x * ${(i * 31 + file) % 997} + ${(i + v) % 13}; } /* ${tag} */`,
    );
  }
  return `${lines.join('\n')}\n`;
}

async function buildBigTree(dir, { files, commits }) {
  await rm(dir, { recursive: true, force: true });
  git(['init', '-q', '--bare', '-b', 'main', dir]);
  const child = spawn('git', ['fast-import', '--quiet'], {
    cwd: dir,
    env: GIT_ENV,
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  const exited = once(child, 'exit');
  for (let c = 0; c < commits; c++) {
    const msg = `commit ${c}\n`;
    const out = [
      `commit refs/heads/main\ncommitter bench <bench@example.invalid> ${1_600_000_000 + c * 60} +0000\ndata ${msg.length}\n${msg}`,
    ];
    const changed =
      c === 0
        ? Array.from({ length: files }, (_, f) => f)
        : Array.from({ length: 20 }, (_, k) => (c * 7919 + k * 104_729) % files);
    for (const f of changed) {
      const data = sourceFile(f, c);
      out.push(`M 100644 inline src/d${f % 97}/f${f}.c\ndata ${Buffer.byteLength(data)}\n${data}\n`);
    }
    if (!child.stdin.write(out.join(''))) await once(child.stdin, 'drain');
  }
  child.stdin.end();
  const [code] = await exited;
  if (code !== 0) throw new Error(`git fast-import exited ${code}`);
  git(['-c', 'pack.writeBitmapHashCache=true', 'repack', '-adbq'], { cwd: dir });
}

/** The big-tree repository under `cacheDir`, generated the first time (a minute or so). */
export async function prepareBigTree(cacheDir, spec, log) {
  const key = createHash('sha256')
    .update(JSON.stringify({ bigtree: spec }))
    .digest('hex')
    .slice(0, 12);
  const dir = join(cacheDir, `bigtree-${key}`);
  const repo = join(dir, 'bigtree.git');
  const manifestFile = join(dir, 'manifest.json');
  if (existsSync(manifestFile)) return JSON.parse(await readFile(manifestFile, 'utf8'));
  await mkdir(dir, { recursive: true });
  log(`generating big-tree repository (${spec.files} files, ${spec.commits} commits)`);
  await buildBigTree(repo, spec);
  const commits = git(['rev-list', 'main'], { cwd: repo }).trim().split('\n');
  const manifest = { repo, commits, files: spec.files };
  await writeFile(manifestFile, JSON.stringify(manifest));
  return manifest;
}

const pkt = (line) => `${(Buffer.byteLength(line) + 4).toString(16).padStart(4, '0')}${line}`;

/** A protocol v2 `fetch` command, as `git fetch --depth 1` (deepen) or an incremental fetch (have) sends it. */
export function fetchBody({ want, have, deepen }) {
  let body = `${pkt('command=fetch')}${pkt('agent=git/bench')}0001`;
  body += `${pkt('thin-pack')}${pkt('no-progress')}${pkt('ofs-delta')}${pkt(`want ${want}\n`)}`;
  if (have) body += pkt(`have ${have}\n`);
  if (deepen) body += pkt(`deepen ${deepen}\n`);
  return Buffer.from(`${body}${pkt('done\n')}0000`);
}

/** Objects a pack for this request must hold: the want's whole tree (depth 1) or what the have lacks. */
export function expectedObjects(repo, { want, have }) {
  const args = have ? ['rev-list', '--objects', want, '--not', have] : ['rev-list', '--objects', '-n1', want];
  return git(args, { cwd: repo }).trim().split('\n').length;
}

/**
 * Checks a v2 fetch response as it streams: pkt-lines up to `packfile`, then side-band: band 1 is
 * the pack (header, object count, and the SHA-1 trailer over everything before it), band 3 an
 * error. `onPack(chunk)` sees the pack's bytes (for index-pack). A state machine over the
 * chunks as they come: pack bytes are hashed where they lie, never gathered or copied, so that
 * 32 clients checking 23 MB each cost the machine little beside the servers they measure (the
 * previous version concatenated every chunk twice and took more CPU than git-fcgi itself).
 */
export class PackCheck {
  constructor(onPack) {
    this.onPack = onPack;
    this.lengthBytes = Buffer.alloc(4);
    this.lengthHave = 0;
    /** Payload bytes of the current pkt-line still to come (0: a length comes next). */
    this.remaining = 0;
    /** The current pkt-line's side-band (-1: its first byte has not come yet). */
    this.band = -1;
    /** Payload of a line that is read whole (before the pack, and band 3). */
    this.parts = [];
    this.inPack = false;
    this.done = false;
    this.error = null;
    this.hash = createHash('sha1');
    this.head = Buffer.alloc(0);
    this.tail = Buffer.alloc(0);
    this.packBytes = 0;
    this.shallow = [];
  }

  push(chunk) {
    let i = 0;
    while (i < chunk.length && !this.done && !this.error) {
      if (this.remaining === 0) {
        const take = Math.min(4 - this.lengthHave, chunk.length - i);
        chunk.copy(this.lengthBytes, this.lengthHave, i, i + take);
        this.lengthHave += take;
        i += take;
        if (this.lengthHave < 4) return;
        this.lengthHave = 0;
        const hex = this.lengthBytes.toString('latin1');
        if (!/^[0-9a-f]{4}$/.test(hex)) {
          this.error = 'bad pkt-line';
          return;
        }
        const len = parseInt(hex, 16);
        if (len < 4) {
          if (len === 0 && this.inPack) this.done = true;
          continue;
        }
        this.remaining = len - 4;
        this.band = -1;
        this.parts = [];
        if (this.remaining === 0) this.endLine();
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - i);
      let part = chunk.subarray(i, i + take);
      i += take;
      this.remaining -= take;
      if (this.inPack) {
        if (this.band === -1) {
          this.band = part[0];
          part = part.subarray(1);
        }
        if (this.band === 1) {
          if (part.length > 0) this.packData(part);
        } else if (this.band === 3) this.parts.push(part);
      } else this.parts.push(part);
      if (this.remaining === 0) this.endLine();
    }
  }

  endLine() {
    if (this.inPack) {
      if (this.band === 3) this.error = `remote error: ${Buffer.concat(this.parts).toString().trim()}`;
      return;
    }
    const line = Buffer.concat(this.parts).toString('latin1');
    if (line === 'packfile\n') this.inPack = true;
    else if (line.startsWith('shallow ')) this.shallow.push(line.slice(8).trim());
    else if (line.startsWith('ERR ')) this.error = line.trim();
  }

  packData(data) {
    this.packBytes += data.length;
    if (this.head.length < 12)
      this.head = Buffer.concat([this.head, data.subarray(0, 12 - this.head.length)]);
    this.onPack?.(data);
    // Everything but the last 20 bytes seen so far goes into the hash.
    if (data.length >= 20) {
      if (this.tail.length > 0) this.hash.update(this.tail);
      this.hash.update(data.subarray(0, data.length - 20));
      this.tail = Buffer.from(data.subarray(data.length - 20));
      return;
    }
    const all = Buffer.concat([this.tail, data]);
    if (all.length > 20) this.hash.update(all.subarray(0, all.length - 20));
    this.tail = Buffer.from(all.subarray(Math.max(0, all.length - 20)));
  }

  /** null if the pack is whole, else what is wrong. */
  verdict(expected) {
    if (this.error) return this.error;
    if (!this.done) return `truncated (${this.packBytes} pack bytes)`;
    if (this.head.toString('latin1', 0, 4) !== 'PACK') return 'no PACK header';
    const objects = this.head.readUInt32BE(8);
    if (expected !== undefined && objects !== expected) return `${objects} objects, expected ${expected}`;
    if (!this.hash.digest().equals(this.tail)) return 'SHA-1 trailer does not match';
    return null;
  }
}

/**
 * POSTs a v2 fetch to upload-pack and checks the response (see PackCheck), discarding it.
 * Resolves { ok, status, bytes, error, shallow }.
 */
export function fetchPack(url, body, { expected, onPack, timeoutMs = 600_000 } = {}) {
  return new Promise((resolve) => {
    const check = new PackCheck(onPack);
    let settled = false;
    const finish = (r) => {
      if (settled) return;
      settled = true;
      resolve(r);
    };
    const req = http.request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: {
          'Content-Type': 'application/x-git-upload-pack-request',
          Accept: 'application/x-git-upload-pack-result',
          'Git-Protocol': 'version=2',
          'Content-Length': body.length,
        },
        timeout: timeoutMs,
      },
      (res) => {
        let bytes = 0;
        res.on('data', (chunk) => {
          bytes += chunk.length;
          if (res.statusCode === 200) check.push(chunk);
        });
        res.on('end', () => {
          const error = res.statusCode === 200 ? check.verdict(expected) : `HTTP ${res.statusCode}`;
          finish({ ok: error === null, status: res.statusCode, bytes, error, shallow: check.shallow });
        });
        res.on('error', (e) => finish({ ok: false, status: res.statusCode, bytes, error: String(e) }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => finish({ ok: false, status: 0, bytes: 0, error: String(e) }));
    req.end(body);
  });
}

/** [pid, ppid, comm, utime+stime+cutime+cstime ticks...] of every process. */
function processTable() {
  const table = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      table.set(Number(entry), { ppid: Number(f[1]), comm });
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** Every descendant of `pid`. */
export function descendants(pid) {
  const table = processTable();
  const out = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop();
    for (const [child, { ppid }] of table) {
      if (ppid === p) {
        out.push({ pid: child, comm: table.get(child).comm });
        todo.push(child);
      }
    }
  }
  return out;
}

/**
 * CPU seconds of the children `pids` have waited for (cutime + cstime): the git processes a
 * FastCGI server ran, once they have exited and been reaped (git-fcgi-spawnd, fcgiwrap's
 * workers and git http-backend all reap their children, so upload-pack and pack-objects count).
 */
export function reapedChildrenCpuSeconds(pids) {
  return cpuSecondsOf(pids, 'children');
}

/**
 * CPU seconds from /proc/PID/stat of every pid still there: their own utime + stime ('self'),
 * or cutime + cstime, what their reaped children used ('children').
 */
export function cpuSecondsOf(pids, whose) {
  // Fields after "pid (comm) ": state is 0, so utime/stime are 11/12 and cutime/cstime 13/14.
  const first = whose === 'self' ? 11 : 13;
  let ticks = 0;
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[first]) + Number(fields[first + 1]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / 100; // USER_HZ
}

const CPUACCT = '/sys/fs/cgroup/cpuacct';
const CGROUP2 = '/sys/fs/cgroup/unified';

/**
 * A cgroup that counts the CPU of a server and everything it starts, exited processes included
 * (fcgiwrap ignores SIGCHLD, so its git processes are nobody's reaped children). cgroup v1's
 * cpuacct when mounted, else v2; null when neither can be made (then reapedChildrenCpuSeconds).
 */
export function cpuCgroup(name) {
  for (const [root, file, parse] of [
    [CPUACCT, 'cpuacct.usage', (text) => Number(text) / 1e9],
    [CGROUP2, 'cpu.stat', (text) => Number(/usage_usec (\d+)/.exec(text)?.[1]) / 1e6],
  ]) {
    if (!existsSync(join(root, 'cgroup.procs'))) continue;
    const dir = join(root, `git-fcgi-bench-${process.pid}-${name}`);
    try {
      mkdirSync(dir);
    } catch {
      continue;
    }
    return {
      dir,
      /** Moves `pid` and its descendants in (those forked later follow them). */
      add(pid) {
        for (const p of [pid, ...descendants(pid).map((d) => d.pid)]) {
          try {
            writeFileSync(join(dir, 'cgroup.procs'), String(p));
          } catch {
            // gone meanwhile
          }
        }
      },
      cpuSeconds: () => parse(readFileSync(join(dir, file), 'utf8')),
      remove() {
        for (let i = 0; i < 20; i++) {
          try {
            rmdirSync(dir);
            return;
          } catch {
            spawnSync('sleep', ['0.1']);
          }
        }
      },
    };
  }
  return null;
}

/** git-fcgi's helpers that live as long as the daemon (comm is at most 15 characters). */
const LONG_LIVED_HELPERS = new Set(['git-fcgi-spawnd', 'git-fcgi-splice']);

/** Waits (up to `ms`) until no process whose name starts with "git" runs under `pid`. */
export async function waitGitReaped(pid, ms = 10_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!descendants(pid).some((d) => d.comm.startsWith('git') && !LONG_LIVED_HELPERS.has(d.comm)))
      return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
