// Generates the benchmark's repositories and request bodies once, into a cache directory that
// survives between runs (regenerated only when the sizes asked for change).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'bench',
  GIT_AUTHOR_EMAIL: 'bench@example.invalid',
  GIT_COMMITTER_NAME: 'bench',
  GIT_COMMITTER_EMAIL: 'bench@example.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: '/nonexistent',
};

function git(args, opts = {}) {
  const r = spawnSync('git', args, { env: GIT_ENV, maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${String(r.stderr)}`);
  return String(r.stdout);
}

/** Text that changes a little between versions of a file: deltas, like real source history. */
function textVersion(path, version) {
  const lines = [];
  for (let i = 0; i < 400; i++) {
    const touched = (i * 7 + version) % 50 === 0 ? version : 0;
    lines.push(
      `${path} line ${i} ${touched} ${createHash('md5').update(`${path}:${i}:${touched}`).digest('hex')}`,
    );
  }
  return Buffer.from(`${lines.join('\n')}\n`);
}

/**
 * Feeds `git fast-import` a history of `commits` commits on main, each changing one file given
 * by `blobFor(commit)`, then tags every `tagEvery`th commit.
 */
async function fastImport(dir, { commits, blobFor, tagEvery, compression }) {
  git(['init', '-q', '--bare', '-b', 'main', dir]);
  const child = spawn('git', ['-c', `core.compression=${compression}`, 'fast-import', '--quiet'], {
    cwd: dir,
    env: GIT_ENV,
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  const exited = once(child, 'exit');
  const write = async (data) => {
    if (!child.stdin.write(data)) await once(child.stdin, 'drain');
  };
  for (let c = 0; c < commits; c++) {
    const { path, data } = blobFor(c);
    const msg = `commit ${c}\n`;
    await write(
      `commit refs/heads/main\nmark :${c + 1}\ncommitter bench <bench@example.invalid> ${1_600_000_000 + c * 60} +0000\n` +
        `data ${msg.length}\n${msg}M 100644 inline ${path}\ndata ${data.length}\n`,
    );
    await write(data);
    await write('\n');
    if (tagEvery > 0 && c % tagEvery === 0) await write(`reset refs/tags/v${c}\nfrom :${c + 1}\n\n`);
  }
  child.stdin.end();
  const [code] = await exited;
  if (code !== 0) throw new Error(`git fast-import exited ${code}`);
}

/** Size of the repository's .pack files (not .idx or bitmaps): what a full clone sends. */
async function packBytes(dir) {
  const packDir = join(dir, 'objects', 'pack');
  let total = 0;
  for (const name of await readdir(packDir)) {
    if (name.endsWith('.pack')) total += (await stat(join(packDir, name))).size;
  }
  return total;
}

/** One pkt-line. */
function pkt(line) {
  return `${(line.length + 4).toString(16).padStart(4, '0')}${line}`;
}

/** A protocol v0 upload-pack request that wants every ref: the POST of a full clone. */
function uploadPackBody(dir) {
  const ids = [
    ...new Set(git(['for-each-ref', '--format=%(objectname)'], { cwd: dir }).split('\n').filter(Boolean)),
  ];
  const caps = ' multi_ack_detailed no-done side-band-64k thin-pack ofs-delta agent=git/bench';
  const wants = ids.map((id, i) => pkt(`want ${id}${i === 0 ? caps : ''}\n`));
  return Buffer.from(`${wants.join('')}0000${pkt('done\n')}`);
}

async function buildRepo(dir, spec) {
  await rm(dir, { recursive: true, force: true });
  await fastImport(dir, spec);
  // Bitmaps and one pack, as a served repository has after gc; window 0 because random blobs never delta.
  git(['-c', 'pack.writeBitmapHashCache=true', 'repack', '-adbq', ...(spec.noDelta ? ['--window=0'] : [])], {
    cwd: dir,
  });
  git(['config', 'http.receivepack', 'true'], { cwd: dir });
}

/**
 * The body of a push creating refs/heads/main with `blobs` incompressible blobs of `blobBytes`:
 * the receive-pack command, a flush, and the pack (stored uncompressed, as random data would be).
 */
async function buildPushBody(work, file, { blobs, blobBytes }) {
  const src = join(work, 'push-src.git');
  await rm(src, { recursive: true, force: true });
  // One commit holding every blob, so the pack is all blobs and the push is one ref.
  git(['init', '-q', '--bare', '-b', 'main', src]);
  const child = spawn('git', ['-c', 'core.compression=0', 'fast-import', '--quiet'], {
    cwd: src,
    env: GIT_ENV,
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  const exited = once(child, 'exit');
  const write = async (data) => {
    if (!child.stdin.write(data)) await once(child.stdin, 'drain');
  };
  await write(
    'commit refs/heads/main\ncommitter bench <bench@example.invalid> 1600000000 +0000\ndata 5\npush\n',
  );
  for (let b = 0; b < blobs; b++) {
    await write(`M 100644 inline blob-${b}\ndata ${blobBytes}\n`);
    await write(randomBytes(blobBytes));
    await write('\n');
  }
  child.stdin.end();
  const [code] = await exited;
  if (code !== 0) throw new Error(`git fast-import exited ${code}`);
  const head = git(['rev-parse', 'main'], { cwd: src }).trim();
  const out = createWriteStream(file);
  const zero = '0'.repeat(40);
  out.write(`${pkt(`${zero} ${head} refs/heads/main\0 report-status agent=git/bench\n`)}0000`);
  const pack = spawn(
    'git',
    ['-c', 'pack.compression=0', 'pack-objects', '--stdout', '--revs', '--window=0', '-q'],
    { cwd: src, env: GIT_ENV, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  pack.stdin.end('main\n');
  pack.stdout.pipe(out);
  const [packCode] = await once(pack, 'exit');
  await once(out, 'close');
  if (packCode !== 0) throw new Error(`git pack-objects exited ${packCode}`);
  await rm(src, { recursive: true, force: true });
}

/** Sizes of everything generated: the full benchmark's, or small ones for --quick. */
export function repoSpecs(quick) {
  return quick
    ? {
        large: { commits: 400, fileBytes: 80_000, files: 50, tagEvery: 20 },
        medium: { commits: 200, files: 20 },
        push: { blobs: 100, blobBytes: 1 << 20 },
      }
    : {
        large: { commits: 4000, fileBytes: 80_000, files: 200, tagEvery: 40 },
        medium: { commits: 1500, files: 60 },
        push: { blobs: 1024, blobBytes: 1 << 20 },
      };
}

/**
 * Makes sure the repositories and request bodies for `specs` exist under `cacheDir` and returns
 * their paths and sizes. `log` reports progress (generation takes minutes the first time).
 */
export async function prepareRepos(cacheDir, specs, log) {
  const key = createHash('sha256').update(JSON.stringify(specs)).digest('hex').slice(0, 12);
  const dir = join(cacheDir, key);
  const root = join(dir, 'repos');
  const manifestFile = join(dir, 'manifest.json');
  if (existsSync(manifestFile)) {
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8'));
    manifest.largePackFileBytes = await packBytes(join(manifest.root, 'large.git'));
    manifest.mediumPackFileBytes = await packBytes(join(manifest.root, 'medium.git'));
    return manifest;
  }
  await mkdir(root, { recursive: true });

  const { large, medium, push } = specs;
  log(
    `generating large repository (${large.commits} commits, ~${Math.round((large.commits * large.fileBytes) / 1e6)} MB)`,
  );
  await buildRepo(join(root, 'large.git'), {
    commits: large.commits,
    tagEvery: large.tagEvery,
    compression: 1,
    noDelta: true,
    blobFor: (c) => ({ path: `data/f${c % large.files}.bin`, data: randomBytes(large.fileBytes) }),
  });
  log(`generating medium repository (${medium.commits} commits)`);
  await buildRepo(join(root, 'medium.git'), {
    commits: medium.commits,
    tagEvery: 0,
    compression: -1,
    noDelta: false,
    blobFor: (c) => {
      const path = `src/file${c % medium.files}.txt`;
      return { path, data: textVersion(path, Math.floor(c / medium.files) + 1) };
    },
  });
  const cloneBody = join(dir, 'large-clone.body');
  await writeFile(cloneBody, uploadPackBody(join(root, 'large.git')));
  log(`generating push body (${push.blobs} blobs of ${push.blobBytes} bytes)`);
  const pushBody = join(dir, 'push.body');
  await buildPushBody(dir, pushBody, push);

  const manifest = {
    root,
    largePackFileBytes: await packBytes(join(root, 'large.git')),
    largeCommits: large.commits,
    mediumPackFileBytes: await packBytes(join(root, 'medium.git')),
    mediumCommits: medium.commits,
    cloneBody,
    pushBody,
    pushBodyBytes: (await stat(pushBody)).size,
  };
  await writeFile(manifestFile, JSON.stringify(manifest, null, 2));
  return manifest;
}
