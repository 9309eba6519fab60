import { GitFcgiError } from '../errors.js';

/** What git-fcgi-pack-hook sends (see src/native/pack-hook.c for the layout). */
export interface HookMessage {
  readonly token: string;
  readonly cwd: string;
  /** argv[1..] of the hook: `git [--shallow-file ""] pack-objects ...`. */
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** pack-objects' stdin; null when it was larger than the cap (then only counted). */
  readonly stdin: Buffer | null;
  readonly stdinBytes: number;
}

export interface HookMessageLimits {
  /** Largest header (token, cwd, argv, environment). */
  readonly maxHeaderBytes: number;
  /** Largest stdin kept; a larger one is read and dropped (the answer is then 'N'). */
  readonly maxStdinBytes: number;
}

const protocolError = (why: string): GitFcgiError =>
  new GitFcgiError('ERR_PACK_HOOK_PROTOCOL', `pack hook message: ${why}`, { status: 500 });

/**
 * The hook's message as a small state machine: 4 length bytes, the header, then the stdin of
 * the length the header gave. `push` takes chunks cut anywhere; it returns the message once it
 * is complete and throws ERR_PACK_HOOK_PROTOCOL on anything malformed, oversized or trailing.
 */
export class HookMessageParser {
  private state: 'length' | 'header' | 'stdin' | 'done' = 'length';
  private need = 4;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private header: Omit<HookMessage, 'stdin'> | null = null;
  private stdinSeen = 0;
  private keepStdin = true;

  constructor(private readonly limits: HookMessageLimits) {}

  push(chunk: Buffer): HookMessage | null {
    let at = 0;
    let result: HookMessage | null = null;
    while (at < chunk.length) {
      if (this.state === 'done') throw protocolError('bytes after the message');
      const take = Math.min(this.need, chunk.length - at);
      this.collect(chunk.subarray(at, at + take));
      at += take;
      this.need -= take;
      if (this.need === 0) result = this.advance();
    }
    if (this.state === 'stdin' && this.need === 0) result = this.advance();
    return result;
  }

  /** Whether the whole message has been read. */
  get complete(): boolean {
    return this.state === 'done';
  }

  private collect(bytes: Buffer): void {
    if (this.state === 'stdin') {
      this.stdinSeen += bytes.length;
      if (!this.keepStdin) return;
    }
    // Copied: the socket may reuse its chunk.
    this.parts.push(Buffer.from(bytes));
    this.partsBytes += bytes.length;
  }

  private take(): Buffer {
    const all = Buffer.concat(this.parts, this.partsBytes);
    this.parts = [];
    this.partsBytes = 0;
    return all;
  }

  private advance(): HookMessage | null {
    if (this.state === 'length') {
      const length = this.take().readUInt32BE(0);
      if (length === 0 || length > this.limits.maxHeaderBytes) {
        throw protocolError(`a header of ${length} bytes (at most ${this.limits.maxHeaderBytes})`);
      }
      this.state = 'header';
      this.need = length;
      return null;
    }
    if (this.state === 'header') {
      this.header = parseHeader(this.take());
      this.keepStdin = this.header.stdinBytes <= this.limits.maxStdinBytes;
      this.state = 'stdin';
      this.need = this.header.stdinBytes;
      return null;
    }
    if (this.state === 'stdin' && this.header !== null) {
      this.state = 'done';
      const stdin = this.keepStdin ? this.take() : null;
      return { ...this.header, stdin };
    }
    return null;
  }
}

function parseHeader(bytes: Buffer): Omit<HookMessage, 'stdin'> {
  if (bytes[bytes.length - 1] !== 0) throw protocolError('the header does not end with NUL');
  const strings = bytes
    .subarray(0, bytes.length - 1)
    .toString('utf8')
    .split('\0');
  const [token, cwd, argcText, stdinText] = strings;
  if (token === undefined || cwd === undefined || argcText === undefined || stdinText === undefined) {
    throw protocolError('a header without token, directory, argument count and stdin length');
  }
  if (!/^\d{1,5}$/.test(argcText) || !/^\d{1,15}$/.test(stdinText)) {
    throw protocolError('a malformed argument count or stdin length');
  }
  const argc = Number(argcText);
  const argv = strings.slice(4, 4 + argc);
  if (argv.length !== argc || argc === 0) throw protocolError(`fewer than ${argc} arguments`);
  const env: Record<string, string> = {};
  for (const entry of strings.slice(4 + argc)) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw protocolError('an environment entry without a name');
    env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return { token, cwd, argv, env, stdinBytes: Number(stdinText) };
}
