import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { git } from './repos.js';
import { tmpDir } from './tmp.js';

/** Smart-HTTP request bodies built by hand, for clients that stop at chosen points. */
export function pktLine(text: string): string {
  return (text.length + 4).toString(16).padStart(4, '0') + text;
}

/** A protocol v0 fetch of `want` (what `git clone` POSTs to git-upload-pack). */
export function uploadPackRequest(want: string): Buffer {
  return Buffer.from(`${pktLine(`want ${want} side-band-64k ofs-delta\n`)}0000${pktLine('done\n')}`);
}

export const ZERO_OID = '0'.repeat(40);

export interface PushPack {
  /** The new commit: `base` plus one file of random bytes. */
  readonly commit: string;
  readonly pack: Buffer;
}

/** A pack holding one new commit on top of `base` (taken from `repo`), with `bytes` of random data. */
export async function makePushPack(t: Cleanup, repo: string, base: string, bytes: number): Promise<PushPack> {
  const work = await tmpDir(t, 'pack-');
  await git(t, ['init', '-q', work]);
  await git(t, ['fetch', '-q', repo, base], { cwd: work });
  await writeFile(join(work, 'blob.bin'), randomBytes(bytes));
  await git(t, ['read-tree', base], { cwd: work });
  await git(t, ['update-index', '--add', 'blob.bin'], { cwd: work });
  const tree = (await git(t, ['write-tree'], { cwd: work })).stdout.toString().trim();
  const commit = (
    await git(t, ['commit-tree', tree, '-p', base, '-m', 'pushed'], {
      cwd: work,
      env: {
        GIT_AUTHOR_NAME: 'p',
        GIT_AUTHOR_EMAIL: 'p@p',
        GIT_COMMITTER_NAME: 'p',
        GIT_COMMITTER_EMAIL: 'p@p',
      },
    })
  ).stdout
    .toString()
    .trim();
  const { stdout: pack } = await git(t, ['pack-objects', '--stdout', '--revs', '-q'], {
    cwd: work,
    input: `${commit}\n^${base}\n`,
  });
  return { commit, pack };
}

/** The body of a push creating `ref` at `commit` (what `git push` POSTs to git-receive-pack). */
export function receivePackRequest(ref: string, commit: string, pack: Buffer, old = ZERO_OID): Buffer {
  return Buffer.concat([Buffer.from(`${pktLine(`${old} ${commit} ${ref}\0 report-status\n`)}0000`), pack]);
}
