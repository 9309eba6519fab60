import assert from 'node:assert/strict';
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

/** An HTTP answer as a test got it. */
export interface Answer {
  readonly status: number;
  readonly body: Buffer;
}

/** POSTs `body` to upload-pack (`url`) as git does; the whole answer, within 20 s. */
export async function postUploadPack(
  url: string,
  body: Buffer,
  protocol: string | undefined,
  contentType = 'application/x-git-upload-pack-request',
): Promise<Answer> {
  const res = await fetch(url, {
    method: 'POST',
    body,
    headers: {
      'Content-Type': contentType,
      ...(protocol === undefined ? {} : { 'Git-Protocol': protocol }),
    },
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** A protocol v2 fetch as `git fetch` sends it, without progress (progress lines depend on timing). */
export function v2Fetch(want: string, haves: readonly string[]): Buffer {
  let body = `${pktLine('command=fetch\n')}${pktLine('agent=git/test\n')}0001`;
  body += `${pktLine('thin-pack\n')}${pktLine('no-progress\n')}${pktLine('ofs-delta\n')}${pktLine(`want ${want}\n`)}`;
  for (const have of haves) body += pktLine(`have ${have}\n`);
  return Buffer.from(`${body}${pktLine('done\n')}0000`);
}

/** The same as protocol v0 asks it. */
export function v0Fetch(want: string, haves: readonly string[]): Buffer {
  let body = `${pktLine(`want ${want} multi_ack_detailed side-band-64k thin-pack no-progress ofs-delta agent=git/test\n`)}0000`;
  for (const have of haves) body += pktLine(`have ${have}\n`);
  return Buffer.from(`${body}${pktLine('done\n')}`);
}

/**
 * What an answer says, whatever pkt-lines carried it: its lines (flush and delim as 0000 and
 * 0001) and, demultiplexed, the pack (band 1) and the messages (bands 2 and 3). Two runs of git
 * for the same request do not agree byte for byte: upload-pack sends each read of pack-objects'
 * output as a side-band packet, and how much one read gets depends on timing.
 */
export function answerMeaning(answer: Answer): { lines: string[]; pack: Buffer; messages: string } {
  const lines: string[] = [`status ${answer.status}`];
  const { body } = answer;
  // An error page (git http-backend's own text) is compared whole.
  if (answer.status !== 200)
    return { lines: [...lines, body.toString('latin1')], pack: Buffer.alloc(0), messages: '' };
  const pack: Buffer[] = [];
  let messages = '';
  let at = 0;
  while (at < body.length) {
    const length = Number.parseInt(body.toString('latin1', at, at + 4), 16);
    assert.ok(Number.isInteger(length), `a pkt-line at ${at}`);
    if (length < 4) {
      lines.push(body.toString('latin1', at, at + 4));
      at += 4;
      continue;
    }
    const payload = body.subarray(at + 4, at + length);
    at += length;
    const band = payload[0];
    if (band === 1) pack.push(payload.subarray(1));
    else if (band === 2 || band === 3) messages += `${band}:${payload.subarray(1).toString('latin1')}`;
    else lines.push(payload.toString('latin1'));
  }
  return { lines, pack: Buffer.concat(pack), messages };
}

/** `answer` says what git's `reference` says. */
export function assertSameAnswer(answer: Answer, reference: Answer, what: string): void {
  const [ours, theirs] = [answerMeaning(answer), answerMeaning(reference)];
  assert.deepEqual(ours.lines, theirs.lines, `${what}: the lines`);
  assert.equal(ours.messages, theirs.messages, `${what}: the messages`);
  assert.ok(
    ours.pack.equals(theirs.pack),
    `${what}: the pack (${ours.pack.length} bytes, git's ${theirs.pack.length})`,
  );
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
