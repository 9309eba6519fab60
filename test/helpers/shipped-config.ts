import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from './daemon.js';

/**
 * A config from etc/ (or from `dir`, where a package installed the examples) as an admin pastes it, with
 * only `replace`'s strings substituted (temp paths, ports): each must occur, and none may be left.
 */
export async function shippedConfig(
  relative: string,
  replace: ReadonlyArray<readonly [string, string]>,
  dir = join(repoRoot, 'etc'),
): Promise<string> {
  let text = await readFile(join(dir, relative), 'utf8');
  for (const [from, to] of replace) {
    assert.ok(text.includes(from), `${join(dir, relative)} has ${JSON.stringify(from)}`);
    text = text.replaceAll(from, to);
  }
  for (const [from] of replace) assert.ok(!text.includes(from), `${JSON.stringify(from)} was substituted`);
  return text;
}

const SCISSORS = /^[ \t]*# ---- 8< ----.*$/gm;

/**
 * The config without its front-end authentication, as its comments tell an admin who lets git-fcgi check
 * passwords ([auth] mode = htpasswd): everything from the first `# ---- 8< ----` line to the second goes.
 */
export function withoutFrontEndAuth(text: string): string {
  const marks = [...text.matchAll(SCISSORS)];
  assert.equal(marks.length, 2, 'one block between two "# ---- 8< ----" lines');
  const [start, end] = marks;
  assert.ok(start?.index !== undefined && end?.index !== undefined);
  const cut = text.slice(0, start.index) + text.slice(end.index + end[0].length + 1);
  assert.doesNotMatch(cut, /8</);
  return cut;
}

/** `text` with the one line matching `line` replaced by `by` (or removed when `by` is empty): a trap shown. */
export function changeLine(text: string, line: RegExp, by: string): string {
  const lines = text.split('\n');
  const at = lines.flatMap((l, i) => (line.test(l) ? [i] : []));
  assert.equal(at.length, 1, `exactly one line matches ${String(line)}`);
  const [index] = at;
  assert.ok(index !== undefined);
  if (by === '') lines.splice(index, 1);
  else lines[index] = by;
  return lines.join('\n');
}
