import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { GitFcgiError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Spawner } from '../request/backend-process.js';
import { cacheKey, findProgram } from './cache-key.js';
import { generate } from './generation.js';
import { HookMessageParser, type HookMessage } from './hook-message.js';
import { PackFile } from './pack-file.js';
import { streamPack, writeStderr } from './reader.js';
import { PackStore, type StoreEntry } from './store.js';
import { Tickets, type PackOutcome, type Ticket } from './tickets.js';

export interface PackCacheOptions {
  readonly dir: string;
  readonly budgetBytes: number;
  readonly maxAgeMs: number;
  readonly idleTimeoutMs: number;
  readonly killGraceMs: number;
  readonly spawn: Spawner;
  readonly log: Logger;
  /** dist/git-fcgi-pack-hook. */
  readonly hookPath: string;
}

/** What the status page shows. */
export interface PackCacheFigures {
  readonly hits: number;
  readonly misses: number;
  readonly coalesced: number;
  readonly bypassed: number;
  readonly bytesServed: number;
  readonly bytesGenerated: number;
  readonly entries: number;
  readonly diskBytes: number;
}

/** git runs the hook through a shell when its path has any of these (run-command.c prepare_shell_cmd). */
const SHELL_METACHARACTERS = /[|&;<>()$`\\"' \t\n*?[#~=%]/;
const MESSAGE_LIMITS = { maxHeaderBytes: 1 << 20, maxStdinBytes: 16 << 20 };
/** The hook sends its message at once: a connection silent for this long is dropped. */
const MESSAGE_TIMEOUT_MS = 30_000;

/**
 * The pack-objects cache: answers git-fcgi-pack-hook on a socket of its own, runs pack-objects
 * once per key (generation.ts) and streams the result to every hook that asks for the same
 * pack (reader.ts), from a file kept within a budget (store.ts).
 */
export class PackCache {
  private readonly tickets = new Tickets();
  private readonly packs = new Map<StoreEntry, PackFile>();
  private readonly store: PackStore;
  private readonly stopping = new AbortController();
  private readonly running = new Set<Promise<void>>();
  private readonly sweeper: NodeJS.Timeout;
  private counts = { hits: 0, misses: 0, coalesced: 0, bypassed: 0, bytesServed: 0, bytesGenerated: 0 };

  private constructor(
    private readonly options: PackCacheOptions,
    private readonly server: net.Server,
    private readonly address: string,
  ) {
    this.store = new PackStore({
      budgetBytes: options.budgetBytes,
      maxAgeMs: options.maxAgeMs,
      onRemove: (entry) => {
        this.packs.get(entry)?.remove();
        this.packs.delete(entry);
      },
    });
    server.on('connection', (socket) => this.onConnection(socket));
    this.sweeper = setInterval(() => this.store.sweep(Date.now()), Math.min(options.maxAgeMs, 60_000));
    this.sweeper.unref();
  }

  static async start(options: PackCacheOptions): Promise<PackCache> {
    if (SHELL_METACHARACTERS.test(options.hookPath)) {
      throw new GitFcgiError(
        'ERR_CONFIG',
        `the pack hook's path ${options.hookPath} has shell metacharacters`,
      );
    }
    const name = `git-fcgi-pack-${process.pid}-${randomBytes(6).toString('hex')}`;
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(`\0${name}`, () => resolve());
    });
    return new PackCache(options, server, `@${name}`);
  }

  /** For an upload-pack POST: its token, and the config and variables that make git ask the hook. */
  begin(
    requestId: string,
    gitDir: string,
  ): {
    readonly ticket: Ticket;
    readonly gitConfig: readonly [string, string];
    readonly env: Readonly<Record<string, string>>;
  } {
    const ticket = this.tickets.register(requestId, gitDir);
    return {
      ticket,
      gitConfig: ['uploadpack.packObjectsHook', this.options.hookPath],
      env: { GIT_FCGI_PACK_SOCKET: this.address, GIT_FCGI_PACK_TOKEN: ticket.token },
    };
  }

  /** The request is over: its token stops working. */
  end(ticket: Ticket): PackOutcome | null {
    this.tickets.release(ticket);
    return ticket.outcome;
  }

  figures(): PackCacheFigures {
    return { ...this.counts, entries: this.store.entries, diskBytes: this.store.bytes };
  }

  /** Kills running generations, stops listening, deletes the files. */
  async close(): Promise<void> {
    this.stopping.abort(new Error('git-fcgi stops'));
    clearInterval(this.sweeper);
    this.server.close();
    // Killed above (SIGTERM, SIGKILL after kill_grace); a stop never waits on a stuck stream.
    const bound = new Promise((resolve) => setTimeout(resolve, this.options.killGraceMs + 2000).unref());
    await Promise.race([Promise.all(this.running), bound]);
    this.store.clear();
  }

  private onConnection(socket: net.Socket): void {
    socket.on('error', () => {});
    const parser = new HookMessageParser(MESSAGE_LIMITS);
    const timer = setTimeout(() => socket.destroy(), MESSAGE_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      let message: HookMessage | null;
      try {
        message = parser.push(chunk);
      } catch (err) {
        clearTimeout(timer);
        this.options.log.warn('pack cache: bad hook message', { reason: describeError(err) });
        socket.destroy();
        return;
      }
      if (message === null) return;
      clearTimeout(timer);
      socket.off('data', onData);
      this.answer(socket, message);
    };
    socket.on('data', onData);
    socket.once('close', () => clearTimeout(timer));
  }

  private answer(socket: net.Socket, message: HookMessage): void {
    const { log } = this.options;
    const ticket = this.tickets.get(message.token);
    const bypass = (why: string, level: 'debug' | 'warn' = 'debug'): void => {
      log[level](`pack cache: not used: ${why}`, ticket ? { req: ticket.requestId } : {});
      this.counts.bypassed++;
      if (ticket) ticket.outcome = 'bypass';
      socket.end('N');
    };
    if (ticket === undefined) return bypass('a hook with an unknown token', 'warn');
    let cwd: string;
    try {
      cwd = realpathSync(message.cwd);
    } catch {
      cwd = message.cwd;
    }
    if (cwd !== ticket.gitDir) return bypass(`the hook ran in ${cwd}, not in ${ticket.gitDir}`, 'warn');
    if (message.stdin === null)
      return bypass(`pack-objects' input is over ${MESSAGE_LIMITS.maxStdinBytes} bytes`);
    if (message.argv[0] !== 'git' || !message.argv.includes('pack-objects')) {
      return bypass(`not git pack-objects: ${message.argv.join(' ')}`, 'warn');
    }
    const env = { ...message.env };
    delete env.GIT_FCGI_PACK_SOCKET;
    delete env.GIT_FCGI_PACK_TOKEN;
    const program = findProgram('git', env.PATH);
    if (program === null) return bypass('no git on the hook PATH');
    const key = cacheKey({ gitDir: cwd, program, argv: message.argv, env, stdin: message.stdin });
    if (key === null) return bypass('the repository changed just now or has too many loose refs');
    const now = Date.now();
    let entry = this.store.lookup(key, now);
    let pack = entry === null ? undefined : this.packs.get(entry);
    let outcome: PackOutcome;
    if (entry !== null && pack !== undefined) {
      entry.users++;
      outcome = pack.state === 'done' ? 'hit' : 'coalesced';
    } else {
      entry = this.store.create(key, now);
      pack = new PackFile(entry, path.join(this.options.dir, `pack-${randomBytes(8).toString('hex')}`));
      this.packs.set(entry, pack);
      entry.users++;
      outcome = 'miss';
      this.startGeneration(
        pack,
        { program, args: message.argv.slice(1), env, cwd, stdin: message.stdin },
        socket,
      );
    }
    this.counts[outcome === 'hit' ? 'hits' : outcome === 'miss' ? 'misses' : 'coalesced']++;
    ticket.outcome = outcome;
    socket.write('Y');
    void this.read(pack, socket, outcome);
  }

  private startGeneration(pack: PackFile, run: Parameters<typeof generate>[0], leader: net.Socket): void {
    const { entry } = pack;
    const done = generate(run, pack, {
      spawn: this.options.spawn,
      signal: this.stopping.signal,
      idleTimeoutMs: this.options.idleTimeoutMs,
      killGraceMs: this.options.killGraceMs,
      log: this.options.log,
      reserve: (bytes) => this.store.reserve(entry, bytes, Date.now()),
      onStderr: (chunk) => writeStderr(leader, chunk),
      onBytes: (bytes) => {
        this.counts.bytesGenerated += bytes;
      },
    }).then(() => {
      if (pack.state === 'done' && pack.cacheable) entry.complete = true;
      else this.store.drop(entry);
      this.store.release(entry, Date.now());
      this.running.delete(done);
    });
    this.running.add(done);
  }

  private async read(pack: PackFile, socket: net.Socket, outcome: PackOutcome): Promise<void> {
    const self = {};
    pack.readers.set(self, 0);
    let sent = 0;
    try {
      sent = await streamPack(pack, socket, self);
    } catch (err) {
      this.options.log.warn('pack cache: streaming a pack failed', { reason: describeError(err) });
      socket.destroy();
    }
    pack.readers.delete(self);
    pack.trim();
    if (outcome !== 'miss') this.counts.bytesServed += sent;
    this.store.release(pack.entry, Date.now());
  }
}
