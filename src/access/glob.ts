/**
 * Globs for repository paths and ref names: `*` and `?` stay within one path segment, `**` crosses
 * segments (`**` followed by `/` also matches nothing, so `**\/x.git` matches `x.git`). Character
 * classes and braces are not supported: refusing them keeps what a pattern matches obvious.
 */
export interface Glob {
  /** As written, without a leading '/'. */
  readonly source: string;
  readonly regex: RegExp;
  /** No wildcard at all: matches one name only. */
  readonly exact: boolean;
  /** Characters that are not wildcards: the more, the more specific. */
  readonly literalChars: number;
  /** How many `**` it holds: each one makes it less specific. */
  readonly doubleStars: number;
}

const UNSUPPORTED = /[[\]{}\\]/;

/** Throws with a message saying why, for the config loader to prefix with file and line. */
export function compileGlob(raw: string): Glob {
  const source = raw.trim().replace(/^\/+/, '');
  if (source === '') throw new Error('empty pattern');
  if (UNSUPPORTED.test(source)) throw new Error(`unsupported character in pattern "${raw}" (use * ? **)`);
  let re = '';
  let literalChars = 0;
  let doubleStars = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source.charAt(i);
    if (c === '*' && source.charAt(i + 1) === '*') {
      doubleStars++;
      i++;
      if (source.charAt(i + 1) === '/') {
        i++;
        re += '(?:.*/)?';
      } else re += '.*';
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else {
      literalChars++;
      re += c.replace(/[.+^$()|]/g, '\\$&');
    }
  }
  return {
    source,
    regex: new RegExp(`^${re}$`, 'u'),
    exact: literalChars === source.length,
    literalChars,
    doubleStars,
  };
}

export function globMatches(glob: Glob, name: string): boolean {
  return glob.regex.test(name);
}
