/**
 * The access sections ([auth], [groups], [repo:PATTERN]) read line by line, not by the `ini`
 * package: it splits section names at dots (`[repo:team/*.git]` would become a nested object),
 * and it forgets line numbers, which every error message here carries.
 */
export interface RawEntry {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

export interface RawSection {
  readonly name: string;
  readonly line: number;
  readonly entries: readonly RawEntry[];
}

export const REPO_PREFIX = 'repo:';

export function isAccessSection(name: string): boolean {
  return name === 'auth' || name === 'groups' || name.startsWith(REPO_PREFIX);
}

/** Sections read line by line: the access ones, and [env] (whose keys are case-sensitive names). */
export function isLineSection(name: string): boolean {
  return isAccessSection(name) || name === 'env';
}

const SECTION = /^\s*\[(.*)\]\s*$/;
const ENTRY = /^\s*([^=]*?)\s*=\s*(.*?)\s*$/;
const COMMENT = /^\s*(?:[;#]|$)/;

/** `"quoted"` verbatim; otherwise a `;` or `#` after whitespace starts a comment, as in `ini`. */
function unquote(raw: string): string {
  const quoted = /^"(.*)"$/.exec(raw);
  if (quoted?.[1] !== undefined) return quoted[1];
  return raw.replace(/(?:^|\s+)[;#].*$/, '');
}

/**
 * Splits an ini text into the access sections and the rest. The rest keeps its line count (the
 * access lines become empty) so the main loader's line numbers stay right.
 */
export function splitAccessSections(
  text: string,
  where: (line: number) => string,
): { readonly rest: string; readonly sections: readonly RawSection[] } {
  const lines = text.split('\n');
  const sections: Array<{ name: string; line: number; entries: RawEntry[] }> = [];
  let current: { name: string; line: number; entries: RawEntry[] } | null = null;
  const rest = lines.map((line, i) => {
    const number = i + 1;
    const header = SECTION.exec(line);
    if (header?.[1] !== undefined) {
      const name = header[1].trim();
      if (!isLineSection(name)) {
        current = null;
        return line;
      }
      if (sections.some((s) => s.name === name)) {
        throw new Error(`${where(number)}: duplicate section [${name}]`);
      }
      current = { name, line: number, entries: [] };
      sections.push(current);
      return '';
    }
    if (current === null) return line;
    if (!COMMENT.test(line)) {
      const entry = ENTRY.exec(line);
      if (entry?.[1] === undefined || entry[2] === undefined || entry[1] === '') {
        throw new Error(`${where(number)}: [${current.name}]: expected "key = value", got "${line.trim()}"`);
      }
      const key = entry[1];
      if (current.entries.some((e) => e.key === key)) {
        throw new Error(`${where(number)}: [${current.name}] ${key}: set twice`);
      }
      current.entries.push({ key, value: unquote(entry[2]), line: number });
    }
    return '';
  });
  return { rest: rest.join('\n'), sections };
}
