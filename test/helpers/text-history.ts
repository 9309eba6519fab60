import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defer, type Cleanup } from './cleanup.js';
import { git, type BareRepo } from './repos.js';

export interface TextHistoryOptions {
  readonly files: number;
  readonly commits: number;
  /** Lines of about 70 characters per file at first. */
  readonly lines: number;
}

/**
 * A bare repository (exported, HEAD main) of `files` text files over `commits` commits, each later
 * commit cutting three lines out of a third of the files. Repacked with -f, git stores the newest
 * (smallest) blobs as deltas against their older versions, as in a long-lived repository: a
 * depth-1 fetch cannot reuse them and has to redo the delta search, which makes it CPU-bound
 * (about 0.7 s of git CPU per 1000 files of 100 lines on the 2-core test VM).
 */
export async function textHistoryRepo(
  t: Cleanup,
  root: string,
  name: string,
  opts: TextHistoryOptions,
): Promise<BareRepo> {
  const path = join(root, name);
  await mkdir(root, { recursive: true });
  await git(t, ['init', '-q', '--bare', '--initial-branch=main', path]);
  defer(t, () => rm(path, { recursive: true, force: true, maxRetries: 5 }));
  await git(t, ['fast-import', '--quiet'], { cwd: path, input: fastImport(opts) });
  await git(t, ['repack', '-adfq'], { cwd: path, timeoutMs: 120_000 });
  await writeFile(join(path, 'git-daemon-export-ok'), '');
  const head = await git(t, ['rev-parse', 'refs/heads/main'], { cwd: path });
  return { path, head: head.stdout.toString().trim() };
}

/** A fast-import stream for refs/heads/main, the same for the same options. */
function fastImport({ files, commits, lines }: TextHistoryOptions): Buffer {
  const random = mulberry32(7);
  const pick = (n: number): number => Math.floor(random() * n);
  const words = Array.from({ length: 4000 }, () =>
    Array.from({ length: 2 + pick(9) }, () => String.fromCharCode(97 + pick(26))).join(''),
  );
  const pool = Array.from({ length: 20_000 }, () =>
    Array.from({ length: 12 }, () => words[pick(words.length)]).join(' '),
  );
  const contents = Array.from({ length: files }, () =>
    Array.from({ length: lines }, () => pool[pick(pool.length)] ?? ''),
  );
  const out: Buffer[] = [];
  let mark = 0;
  for (let c = 0; c < commits; c++) {
    const changed =
      c === 0 ? contents.map((_, i) => i) : Array.from({ length: Math.floor(files / 3) }, () => pick(files));
    const marks = new Map<number, number>();
    for (const i of changed) {
      const text = contents[i] ?? [];
      if (c > 0) text.splice(pick(Math.max(1, text.length - 5)), 3);
      const data = Buffer.from(`${text.join('\n')}\n`);
      marks.set(i, ++mark);
      out.push(Buffer.from(`blob\nmark :${mark}\ndata ${data.length}\n`), data, Buffer.from('\n'));
    }
    const message = `commit ${c}`;
    const paths = [...marks].map(([i, m]) => `M 100644 :${m} d${i % 50}/f${i}.txt\n`).join('');
    out.push(
      Buffer.from(
        `commit refs/heads/main\ncommitter T <t@git-fcgi.invalid> ${1_700_000_000 + c * 60} +0000\n` +
          `data ${message.length}\n${message}\n${paths}\n`,
      ),
    );
  }
  return Buffer.concat(out);
}

function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}
