import { REFERENCE, type KeyReference, type SectionReference } from './reference.js';

/**
 * The per-key blocks of etc/git-fcgi.ini, generated from the reference: the doc as comment lines,
 * the flag, then the key commented out with its default (or, in the access sections, whose
 * examples the test suite runs uncommented, with its example and the default in the comment).
 * The prose around the blocks is written by hand; `node scripts/sync-ini.mjs` rewrites the blocks.
 */

const WIDTH = 95;

/** Sections whose keys have generated blocks; the others are explained in prose. */
const BLOCK_SECTIONS = new Set(['server', 'git', 'log', 'auth']);

export function comment(text: string): string[] {
  const lines: string[] = [];
  let current = ';';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (current !== ';' && current.length + 1 + word.length > WIDTH) {
      lines.push(current);
      current = ';';
    }
    current = `${current} ${word}`;
  }
  if (current !== ';') lines.push(current);
  return lines;
}

/** Access sections are examples: their lines show a value to use, and say the default. */
const isAccess = (section: SectionReference): boolean => section.name === 'auth';

export function renderEntry(section: SectionReference, key: KeyReference): string[] {
  const lines = comment(key.doc);
  if (key.flag !== undefined) lines.push(`; Flag: ${key.flag}`);
  if (key.restart) lines.push('; Restart to change: a reload keeps the running value.');
  if (isAccess(section)) {
    const shown = key.example?.line ?? `${key.key} = ${key.default}`;
    if (shown !== `${key.key} = ${key.default}`)
      lines.push(`; Default: ${key.default === '' ? 'unset' : key.default}.`);
    lines.push(`;${shown}`);
    return lines;
  }
  lines.push(`;${key.key} =${key.default === '' ? '' : ` ${key.default}`}`);
  if (key.example !== undefined) {
    lines.push(
      `; e.g. ${key.example.line}${key.example.note === undefined ? '' : `  (${key.example.note})`}`,
    );
  }
  return lines;
}

interface Block {
  readonly section: string;
  readonly key: string;
  /** Line indexes: [start, end). */
  readonly start: number;
  readonly end: number;
}

const HEADER = /^;?\[([^\]]+)\]\s*$/;
const ASSIGNMENT = /^;?([A-Za-z_][\w]*)\s*=/;

/** The block of every `key =` / `;key =` line: the `; ` comment lines right above it, the line, its `; e.g.` lines. */
export function findBlocks(lines: readonly string[]): Block[] {
  const blocks: Block[] = [];
  let section = '';
  lines.forEach((line, i) => {
    const header = HEADER.exec(line);
    if (header?.[1] !== undefined) {
      section = header[1];
      return;
    }
    const assignment = ASSIGNMENT.exec(line);
    if (assignment?.[1] === undefined) return;
    let start = i;
    while (start > 0 && /^; \S/.test(lines[start - 1] ?? '')) start -= 1;
    let end = i + 1;
    while (/^; e\.g\. /.test(lines[end] ?? '')) end += 1;
    blocks.push({ section, key: assignment[1], start, end });
  });
  return blocks;
}

const sectionOf = (name: string): string => (name.startsWith('repo:') ? 'repo:PATTERN' : name);

/** What etc/git-fcgi.ini gets wrong about the reference, one line each. */
export function iniProblems(text: string, reference = REFERENCE): string[] {
  const lines = text.split('\n');
  const blocks = findBlocks(lines);
  const problems: string[] = [];
  for (const section of reference) {
    const headed = lines.some((l) => sectionOf(HEADER.exec(l)?.[1] ?? '') === section.name);
    if (!headed) problems.push(`no [${section.name}] section (commented or not)`);
    for (const key of section.keys) {
      if (key.placeholder) continue;
      const where = `[${section.name}] ${key.key}`;
      if (!BLOCK_SECTIONS.has(section.name)) {
        // Explained in a list in the comments: `;   key` or `;   key, other`.
        if (!new RegExp(`^;\\s+(?:\\w+, )*${key.key}\\b`, 'm').test(text))
          problems.push(`${where}: not explained`);
        continue;
      }
      const found = blocks.filter((b) => b.section === section.name && b.key === key.key);
      const [block] = found;
      if (block === undefined) {
        problems.push(`${where}: missing`);
        continue;
      }
      if (found.length > 1) problems.push(`${where}: more than once`);
      const expected = renderEntry(section, key);
      const copies = text.split(`\n${expected[0] ?? ''}\n`).length - 1;
      if (copies > 1) problems.push(`${where}: its documentation is in the file ${copies} times`);
      const actual = lines.slice(block.start, block.end);
      if (actual.join('\n') !== expected.join('\n')) {
        problems.push(
          `${where}: differs from the settings table; expected:\n${expected.join('\n')}\ngot:\n${actual.join('\n')}`,
        );
      }
    }
  }
  for (const block of blocks) {
    const section = reference.find((s) => s.name === sectionOf(block.section));
    if (section === undefined) continue;
    const known = section.keys.some((k) => k.placeholder || k.key === block.key);
    if (!known) problems.push(`[${block.section}] ${block.key}: not a key the loader accepts`);
  }
  return problems;
}

/** The text with every generated block replaced by its current rendering. */
export function syncIni(text: string, reference = REFERENCE): string {
  const lines = text.split('\n');
  const replaced = [...lines];
  const blocks = findBlocks(lines).reverse();
  for (const block of blocks) {
    const section = reference.find((s) => s.name === block.section);
    const key = section?.keys.find((k) => k.key === block.key);
    if (section === undefined || key === undefined || !BLOCK_SECTIONS.has(section.name)) continue;
    replaced.splice(block.start, block.end - block.start, ...renderEntry(section, key));
  }
  return replaced.join('\n');
}
