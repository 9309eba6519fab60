import { readFile, stat } from 'node:fs/promises';
import { schemeOf, type HashScheme } from './password-hashes.js';

export interface HtpasswdEntry {
  readonly user: string;
  readonly hash: string;
  readonly scheme: HashScheme;
}

export interface ParsedHtpasswd {
  readonly entries: ReadonlyMap<string, HtpasswdEntry>;
  /** Lines ignored and why (plain-text or crypt passwords, malformed lines, repeated users). */
  readonly warnings: readonly string[];
}

/** An htpasswd file's text -> its usable entries. Like Apache, the first line for a user counts. */
export function parseHtpasswd(text: string, name = 'htpasswd'): ParsedHtpasswd {
  const entries = new Map<string, HtpasswdEntry>();
  const warnings: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const where = `${name}:${i + 1}`;
    const colon = line.indexOf(':');
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1).trim();
    if (colon <= 0 || hash === '') {
      warnings.push(`${where}: not "user:hash", ignored`);
      return;
    }
    const scheme = schemeOf(hash);
    if (scheme === null) {
      warnings.push(
        `${where}: ${user}: plain-text or crypt() password refused; use htpasswd -B (bcrypt), -m or -s`,
      );
      return;
    }
    if (entries.has(user)) {
      warnings.push(`${where}: ${user} appears again; the first entry counts`);
      return;
    }
    entries.set(user, { user, hash, scheme });
  });
  return { entries, warnings };
}

/**
 * An htpasswd file, re-read when it changes (checked by stat on every use, which costs far less
 * than a password check). `generation` grows with every reload, so caches can tell.
 */
export class HtpasswdFile {
  private signature = '';
  private parsed: ParsedHtpasswd = { entries: new Map(), warnings: [] };
  private loading: Promise<ParsedHtpasswd> | null = null;
  generation = 0;

  constructor(
    readonly path: string,
    private readonly onLoad: (parsed: ParsedHtpasswd, generation: number) => void,
  ) {}

  /** The entries as the file holds them now. A file that cannot be read throws. */
  async entries(): Promise<ReadonlyMap<string, HtpasswdEntry>> {
    this.loading ??= this.refresh().finally(() => {
      this.loading = null;
    });
    return (await this.loading).entries;
  }

  private async refresh(): Promise<ParsedHtpasswd> {
    const info = await stat(this.path, { bigint: true });
    const signature = `${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
    if (signature === this.signature) return this.parsed;
    this.parsed = parseHtpasswd(await readFile(this.path, 'utf8'), this.path);
    this.signature = signature;
    this.generation++;
    this.onLoad(this.parsed, this.generation);
    return this.parsed;
  }
}
