/**
 * A git config file read as git's config.c reads it, for the few questions the ref
 * advertisement fast path asks (is a service switched on or off, which ref storage, which
 * extensions, is anything included). Anything it does not understand is an error: the fast
 * path is then not taken, and git answers for itself.
 */
export interface ConfigEntry {
  /** As `git config --list` prints it: section and name lower-cased, a subsection as written. */
  readonly key: string;
  /** null: a name without `=` (a boolean true). */
  readonly value: string | null;
}

export class ConfigSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
    this.name = 'ConfigSyntaxError';
  }
}

const NAME_START = /[A-Za-z]/;
const NAME_CHAR = /[A-Za-z0-9-]/;
const SECTION_CHAR = /[A-Za-z0-9.-]/;
const SPACE = /[ \t\v\f\r]/;

/** Parses a whole config file (bytes as latin1 or utf8 text); throws ConfigSyntaxError. */
export function parseGitConfig(text: string): ConfigEntry[] {
  if (text.includes('\0')) throw new ConfigSyntaxError('a NUL byte', 1);
  const entries: ConfigEntry[] = [];
  let at = text.startsWith('\uFEFF') ? 1 : text.startsWith('\xEF\xBB\xBF') ? 3 : 0;
  let line = 1;
  let section: string | null = null;
  const peek = (): string | undefined => text[at];
  const fail = (message: string): never => {
    throw new ConfigSyntaxError(message, line);
  };
  const skipComment = (): void => {
    while (at < text.length && text[at] !== '\n') at++;
  };

  while (at < text.length) {
    const c = text[at] as string;
    if (c === '\n') {
      line++;
      at++;
    } else if (SPACE.test(c)) {
      at++;
    } else if (c === '#' || c === ';') {
      skipComment();
    } else if (c === '[') {
      at++;
      section = readSectionHeader();
    } else if (NAME_START.test(c)) {
      // Before any section git takes the bare name as the key (`git config --list` shows it so).
      const name = readName();
      const value = readValue();
      entries.push({ key: section === null ? name : `${section}.${name}`, value });
    } else {
      fail(`unexpected ${JSON.stringify(c)}`);
    }
  }
  return entries;

  function readName(): string {
    let name = '';
    while (at < text.length && NAME_CHAR.test(text[at] as string)) name += text[at++];
    return name.toLowerCase();
  }

  /** After the name: nothing (true), or `=` and a value, to the end of the line. */
  function readValue(): string | null {
    while (at < text.length && SPACE.test(text[at] as string)) at++;
    const c = peek();
    if (c === undefined || c === '\n') return null;
    if (c !== '=') fail(`expected '=' after a variable name, got ${JSON.stringify(c)}`);
    at++;
    return parseValue();
  }

  /** config.c parse_value(): quotes, escapes, continuation lines, comments, spaces folded. */
  function parseValue(): string {
    let value = '';
    let quoted = false;
    let spaces = 0;
    for (;;) {
      const c = text[at];
      if (c === undefined || c === '\n') {
        if (quoted) fail('unterminated quote');
        return value;
      }
      at++;
      if (!quoted && (c === ';' || c === '#')) {
        skipComment();
        return value;
      }
      if (!quoted && SPACE.test(c)) {
        if (value.length > 0) spaces++;
        continue;
      }
      value += ' '.repeat(spaces);
      spaces = 0;
      if (c === '\\') {
        const next = text[at++];
        if (next === '\n') {
          line++;
          continue;
        }
        const escaped = next === 't' ? '\t' : next === 'b' ? '\b' : next === 'n' ? '\n' : next;
        if (escaped !== '"' && escaped !== '\\' && escaped !== '\t' && escaped !== '\b' && escaped !== '\n') {
          fail('bad escape in a value');
        }
        value += escaped;
      } else if (c === '"') {
        quoted = !quoted;
      } else {
        value += c;
      }
    }
  }

  /** After '[': `name]`, `name "subsection"]`, or the old `name.sub]`. */
  function readSectionHeader(): string {
    let name = '';
    while (at < text.length && SECTION_CHAR.test(text[at] as string)) name += text[at++];
    if (peek() === ']') {
      at++;
      if (name === '') fail('empty section name');
      return name.toLowerCase();
    }
    if (name === '' || name.includes('.') || !SPACE.test(peek() ?? '')) fail('bad section header');
    while (SPACE.test(peek() ?? '')) at++;
    if (peek() !== '"') fail('bad section header');
    at++;
    let subsection = '';
    for (;;) {
      const c = text[at++];
      if (c === undefined || c === '\n') fail('unterminated subsection');
      if (c === '"') break;
      if (c === '\\') {
        const next = text[at++];
        if (next === undefined || next === '\n') fail('unterminated subsection');
        subsection += next;
      } else subsection += c;
    }
    if (text[at++] !== ']') fail("expected ']' after a subsection");
    return `${name.toLowerCase()}.${subsection}`;
  }
}

/** git_parse_maybe_bool(): the spellings git accepts; undefined for anything else. */
export function gitBool(value: string | null): boolean | undefined {
  if (value === null) return true;
  const lower = value.toLowerCase();
  if (lower === 'true' || lower === 'yes' || lower === 'on') return true;
  if (lower === 'false' || lower === 'no' || lower === 'off' || lower === '') return false;
  return /^[+-]?\d+$/.test(value) ? Number(value) !== 0 : undefined;
}
