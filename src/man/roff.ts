/**
 * Plain text -> man(7) source. Text is one sentence a line (roff then spaces sentences right and
 * linters do not complain); `code` becomes bold.
 */

/** Escapes text for a roff text line: backslashes, and hyphens as \- so flags copy as ASCII. */
export function escape(text: string): string {
  return text.replace(/\\/g, '\\e').replace(/-/g, '\\-');
}

/** Escapes text and turns `code` into bold. */
export function inline(text: string): string {
  return text
    .split('`')
    .map((part, i) => (i % 2 === 1 ? `\\fB${escape(part)}\\fR` : escape(part)))
    .join('');
}

/** A line that roff would read as a request (. or ' first) made literal. */
function literalStart(line: string): string {
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

/** Source lines stay under 80 bytes (mandoc -Tlint's style); roff fills them again anyway. */
const WIDTH = 78;

/** Roff text (already escaped) as lines under 80 bytes. */
export function wrap(line: string): string[] {
  const out: string[] = [];
  let current = '';
  for (const word of line.split(' ')) {
    if (current !== '' && current.length + 1 + word.length > WIDTH) {
      out.push(current);
      current = word;
    } else current = current === '' ? word : `${current} ${word}`;
  }
  if (current !== '') out.push(current);
  return out.map(literalStart);
}

/** A paragraph as text lines: each sentence starts a line. */
export function sentences(paragraph: string): string[] {
  return splitSentences(paragraph).flatMap((s) => wrap(inline(s)));
}

/** At `. `, `! ` and `? `, but not after e.g. or i.e. */
export function splitSentences(text: string): string[] {
  return text
    .split(/(?<![ (]e\.g\.|[ (]i\.e\.)(?<=[.!?])\s+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function paragraphs(texts: readonly string[]): string[] {
  return texts.flatMap((text, i) => [...(i > 0 ? ['.PP'] : []), ...sentences(text)]);
}

/**
 * A commander flags spec (`-c, --config <file>`, `--demo [dir]`) as a tag: flags bold, arguments
 * italic.
 */
export function flagSpec(spec: string): string {
  return spec
    .split(' ')
    .map((word) => {
      const required = /^<(.+)>$/.exec(word);
      if (required?.[1] !== undefined) return `\\fI${escape(required[1])}\\fR`;
      const optional = /^\[(.+)\]$/.exec(word);
      if (optional?.[1] !== undefined) return `[\\fI${escape(optional[1])}\\fR]`;
      const flag = /^(-[^,]*)(,?)$/.exec(word);
      if (flag?.[1] !== undefined) return `\\fB${escape(flag[1])}\\fR${flag[2] ?? ''}`;
      return escape(word);
    })
    .join(' ');
}

/** Literal lines (commands, config snippets), shown as they are, indented. */
export function literal(lines: readonly string[]): string[] {
  return ['.RS 4', '.nf', ...lines.map((line) => literalStart(escape(line))), '.fi', '.RE'];
}

export function example(lines: readonly string[]): string[] {
  return ['.PP', ...literal(lines)];
}
