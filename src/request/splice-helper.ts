import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type net from 'node:net';
import type { Readable } from 'node:stream';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { GitFcgiError } from '../errors.js';
import type { ResponseLease } from '../exchange.js';
import type { Logger } from '../log.js';
import type { SpliceRoute } from './stdout-to-response.js';

/** Built next to dist/cli.js by `npm ci` (see src/native/splice.c for why and how). */
export const SPLICE_HELPER_PATH = fileURLToPath(new URL('../git-fcgi-splice', import.meta.url));

/**
 * Body bytes a response sends through Node before its rest is spliced: a hand-off costs two
 * descriptor passings and a few messages, worth it only for what takes longer than that to relay.
 */
export const SPLICE_AFTER_BYTES = 1024 * 1024;

/** The route StdoutToResponse takes through `helper` while it runs. */
export function spliceRoute(helper: SpliceHelper): SpliceRoute {
  return {
    afterBytes: SPLICE_AFTER_BYTES,
    start: (stdout, lease, events) => helper.splice(stdout, lease, events),
  };
}

/** What one splice tells the output it replaces. */
export interface SpliceEvents {
  /** Body bytes written so far (at most once a second while bytes move). */
  progress(bytes: number): void;
  /**
   * The splice is over and the helper has closed its descriptors; `bytes` body bytes went out.
   * `error` when the backend's stdout could not be read or the connection written.
   */
  ended(bytes: number, error?: GitFcgiError): void;
}

export interface Splice {
  /**
   * Stops it. The lease comes back once the helper has let go of the connection, with the
   * bytes of a record it cut short still owed (see ResponseLease.giveBack). Idempotent.
   */
  cancel(): void;
}

interface Report {
  readonly splice: number;
  readonly bytes: number;
  readonly end?: number;
  readonly at?: number;
  readonly header_at?: number;
  readonly owed?: number;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, number]) => [number, name]));

/**
 * The client side of git-fcgi-splice: a large response's bytes go from the backend's stdout
 * into the FastCGI connection inside that helper, with splice(2), instead of through the event
 * loop. Both descriptors reach it over a Node.js IPC channel (SCM_RIGHTS); the daemon keeps its
 * own, writes nothing to the connection until the helper gives it back, and ends the request
 * (END_REQUEST) itself.
 */
export class SpliceHelper {
  private readonly active = new Map<number, ActiveSplice>();
  private nextId = 1;
  private gone = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly log: Logger,
  ) {
    child.on('message', (message: unknown) => this.onReport(message as Report));
    child.on('error', (err) => this.onGone(err.message));
    child.once('exit', (code, signal) => this.onGone(`it exited (${signal ?? `code ${code}`})`));
    child.once('disconnect', () => this.onGone('its channel closed'));
    child.stderr?.on('data', (chunk: Buffer) => log.error(`splice helper: ${chunk.toString().trim()}`));
  }

  /** Starts the helper; rejects when it cannot run. */
  static async start(binary: string, log: Logger): Promise<SpliceHelper> {
    if (!existsSync(binary)) throw new Error(`${binary} is missing (built by npm ci; needs a C compiler)`);
    const child = spawnChild(binary, [], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: {},
      // Its own session: a Ctrl-C for the daemon in a terminal must not end it first.
      detached: true,
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`${binary} did not start: ${err.message}`)));
    });
    // Not a reason to keep the daemon running.
    child.unref();
    (child.channel as { unref?: () => void } | null | undefined)?.unref?.();
    return new SpliceHelper(child, log);
  }

  get available(): boolean {
    return !this.gone;
  }

  get splicing(): number {
    return this.active.size;
  }

  /**
   * Hands `stdout` (a socket, paused, nothing of it read and unsent) and the leased connection
   * to the helper. Returns null when the helper is gone or `stdout` has no descriptor: the
   * caller relays as before.
   */
  splice(stdout: Readable, lease: ResponseLease, events: SpliceEvents): Splice | null {
    const handle = (stdout as unknown as { _handle?: object | null })._handle;
    if (this.gone || !this.child.connected || handle == null) return null;
    const id = this.takeId();
    const entry = new ActiveSplice(id, lease, events, {
      send: (message) => this.send(message),
      forget: () => this.active.delete(id),
      log: this.log,
    });
    this.active.set(id, entry);
    // 'net.Native' (a handle, not a net.Socket): Node tracks no server connections for it and,
    // with keepOpen, closes nothing. Handles are sent one at a time, each after the helper's ACK.
    const options = { keepOpen: true };
    this.child.send({ splice: id, role: 1 }, handle as net.Socket, options, this.onSendError);
    this.child.send(
      { splice: id, role: 2, request: lease.requestId },
      lease.handle as net.Socket,
      options,
      this.onSendError,
    );
    return entry;
  }

  /** Ends the helper (at exit): it closes every descriptor it holds. */
  close(): void {
    this.gone = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }

  private readonly onSendError = (err: Error | null): void => {
    if (err !== null) this.onGone(`cannot write to it: ${err.message}`);
  };

  private send(message: object): void {
    if (!this.gone && this.child.connected) this.child.send(message, this.onSendError);
  }

  private onReport(report: Report): void {
    if (typeof report !== 'object' || report === null || typeof report.splice !== 'number') return;
    this.active.get(report.splice)?.onReport(report);
  }

  private onGone(why: string): void {
    if (this.gone && this.active.size === 0) return;
    if (!this.gone) this.log.error(`splice helper gone: ${why}; responses go through the daemon from now on`);
    this.gone = true;
    for (const entry of [...this.active.values()]) entry.onHelperGone();
  }

  private takeId(): number {
    let id = this.nextId;
    while (this.active.has(id)) id = id >= 0x7fffffff ? 1 : id + 1;
    this.nextId = id >= 0x7fffffff ? 1 : id + 1;
    return id;
  }
}

/** One splice, from the hand-off to the helper's last report about it. */
class ActiveSplice implements Splice {
  private cancelled = false;
  private over = false;
  private bytes = 0;

  constructor(
    private readonly id: number,
    private readonly lease: ResponseLease,
    private readonly events: SpliceEvents,
    private readonly helper: {
      readonly send: (message: object) => void;
      readonly forget: () => void;
      readonly log: Logger;
    },
  ) {}

  cancel(): void {
    if (this.cancelled || this.over) return;
    this.cancelled = true;
    this.helper.send({ cancel: this.id });
  }

  private forget(): void {
    this.helper.forget();
  }

  onReport(report: Report): void {
    if (this.over) return;
    this.bytes = report.bytes;
    if (report.end === undefined) {
      this.events.progress(report.bytes);
      return;
    }
    this.over = true;
    this.forget();
    if (report.end === -1) {
      const where = { headerAt: report.header_at ?? 8, owed: report.owed ?? 0 };
      this.helper.log.debug('splice cancelled', {
        bytes: report.bytes,
        header_at: where.headerAt,
        owed: where.owed,
      });
      this.lease.giveBack(where);
      this.events.ended(report.bytes, spliceError('cancelled'));
    } else if (report.end === 0) {
      this.lease.giveBack({ headerAt: 8, owed: 0 });
      this.events.ended(report.bytes);
    } else {
      const errno = ERRNO_NAMES.get(report.end) ?? `errno ${report.end}`;
      const writing = report.at === 1;
      // A failed write may have left a record short: the connection is not to be trusted.
      this.lease.giveBack(writing ? 'broken' : { headerAt: 8, owed: 0 });
      const error =
        writing && (errno === 'EPIPE' || errno === 'ECONNRESET')
          ? new GitFcgiError(
              'ERR_CLIENT_ABORT',
              `the front end closed the connection (${errno} in the splice): the client left, or the front end gave up`,
              { status: 499 },
            )
          : spliceError(
              `${errno} ${writing ? 'writing the FastCGI connection' : "reading the backend's output"}`,
            );
      this.events.ended(report.bytes, error);
    }
  }

  /** Nothing will report on it any more; where the connection was left is unknown. */
  onHelperGone(): void {
    if (this.over) return;
    this.over = true;
    this.forget();
    this.lease.giveBack('broken');
    this.events.ended(this.bytes, spliceError('the splice helper is gone'));
  }
}

function spliceError(why: string): GitFcgiError {
  return new GitFcgiError('ERR_SPLICE', `splice: ${why}`, { status: 502 });
}
