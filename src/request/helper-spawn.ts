import net from 'node:net';
import type { GitFcgiError } from '../errors.js';
import { signalGroup, spawnError, type BackendExit, type BackendProcess } from './backend-process.js';

export interface HelperSpawnOptions {
  readonly id: number;
  readonly program: string;
  /** The helper's socket. */
  readonly address: string;
  /** The request's: aborted, the spawn is given up. */
  readonly signal: AbortSignal;
  /** How long the helper may take to start the backend before the spawn is given up. */
  readonly startTimeoutMs: number;
  /** The helper will say nothing more about this spawn: it leaves the helper's table. */
  readonly forget: () => void;
  /** Sends 'R': the group gets no more signals, the helper may reap its leader. */
  readonly release: () => void;
}

/**
 * One backend started through git-fcgi-spawnd, as the daemon sees it: its three streams, then
 * the helper's reports ('P' started, 'F' not started, 'X' exited), until it sends 'R'.
 *
 * Waiting for the start has an end, whatever the helper does: the request's abort signal, a
 * deadline, and a stream that cannot connect each give the spawn up (rejecting `started`),
 * so a request never holds its max_children slot waiting for a start that will not come. A
 * spawn given up is forgotten once the helper reports it failed, or killed if the helper
 * starts it all the same.
 *
 * Signals go to the whole process group (-pid), and only while the helper keeps the leader
 * unreaped: 'R' is sent once the exit is in, the relay has let go of stdout (it will not call
 * kill() any more) and no SIGKILL is pending. Until then the group id cannot name any other
 * group, however long ago the leader exited (see spawnd.c).
 */
export class HelperSpawn {
  readonly started: Promise<BackendProcess>;
  private readonly streams: readonly [net.Socket, net.Socket, net.Socket];
  private readonly exited: Promise<BackendExit>;
  private resolveExit: (exit: BackendExit) => void = () => {};
  private resolveStart: (backend: BackendProcess) => void = () => {};
  private rejectStart: (err: unknown) => void = () => {};
  private startTimer: NodeJS.Timeout | undefined;
  private givenUp = false;
  private pid: number | null = null;
  private exit: BackendExit | null = null;
  private stdoutClosed = false;
  private killing = false;
  private killTimer: NodeJS.Timeout | undefined;
  private released = false;

  constructor(private readonly options: HelperSpawnOptions) {
    const { address, id } = options;
    this.streams = [streamTo(address, id, 0), streamTo(address, id, 1), streamTo(address, id, 2)];
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    this.started = new Promise((resolve, reject) => {
      this.resolveStart = resolve;
      this.rejectStart = reject;
    });
    // A stream that cannot connect (the helper overwhelmed or going away) means the spawn will
    // not start. One that merely closes does not: a backend that exits at once closes its
    // streams, and that can be seen before the helper's 'P' (another connection). A stream the
    // helper drops before the start leaves the spawn to its deadline.
    for (const stream of this.streams) {
      stream.on('error', (err) => this.giveUp(this.error(`cannot reach the spawn helper: ${err.message}`)));
    }
    this.streams[1].once('close', () => {
      this.stdoutClosed = true;
      this.maybeRelease();
    });
    options.signal.addEventListener('abort', this.onAbort, { once: true });
    this.startTimer = setTimeout(() => {
      this.giveUp(this.error(`the spawn helper did not start it within ${options.startTimeoutMs} ms`));
    }, options.startTimeoutMs);
  }

  /** 'P': running as `pid`. */
  onStarted(pid: number): void {
    this.stopWaiting();
    this.pid = pid;
    if (this.givenUp) {
      // Started after all: its streams are closed already, and nobody will relay it.
      this.kill(0);
      return;
    }
    const [stdin, stdout, stderr] = this.streams;
    const readStdout = (onView: (view: Buffer) => boolean): void => {
      viewSinks.set(stdout, onView);
      stdout.resume();
    };
    this.resolveStart({ stdin, stdout, stderr, readStdout, pid, exited: this.exited, kill: this.kill });
  }

  /** 'F': not started; `why` is the errno's name and the stage. */
  onFailed(why: string, code: string): void {
    this.options.forget();
    this.giveUp(spawnError(this.options.program, why, Object.assign(new Error(why), { code })));
  }

  /** 'X': exited. The leader stays a zombie of the helper until released. */
  onExited(exit: BackendExit): void {
    this.exit = exit;
    this.streams[0].destroy(); // as Node does with a child's stdin at exit
    this.resolveExit(exit);
    this.maybeRelease();
  }

  /**
   * The helper is gone: nothing will report on this spawn any more, and nothing signals its
   * group from here on (see SpawnHelper.onGone). A backend still running is counted as killed;
   * its pid is returned.
   */
  onHelperGone(): number | null {
    this.options.forget();
    clearTimeout(this.killTimer);
    this.killTimer = undefined;
    this.released = true;
    if (this.pid === null) {
      this.giveUp(this.error('the spawn helper is gone'));
      return null;
    }
    if (this.exit !== null) return null;
    this.resolveExit({ code: null, signal: 'SIGKILL' });
    return this.pid;
  }

  /**
   * SIGTERM to the group now, SIGKILL after `graceMs` whatever the leader did meanwhile:
   * members of the group can outlive it (a forked pack-objects). Idempotent.
   */
  private readonly kill = (graceMs: number): void => {
    const { pid } = this;
    if (pid === null || this.killing || this.released) return;
    this.killing = true;
    signalGroup(pid, 'SIGTERM');
    this.killTimer = setTimeout(() => {
      this.killTimer = undefined;
      signalGroup(pid, 'SIGKILL');
      this.maybeRelease();
    }, graceMs);
    this.killTimer.unref();
  };

  private maybeRelease(): void {
    if (this.released || this.exit === null || !this.stdoutClosed || this.killTimer !== undefined) return;
    this.released = true;
    this.options.forget();
    this.options.release();
  }

  private readonly onAbort = (): void => {
    this.giveUp(this.options.signal.reason);
  };

  private giveUp(err: unknown): void {
    if (this.pid !== null || this.givenUp) return;
    this.givenUp = true;
    this.stopWaiting();
    for (const stream of this.streams) stream.destroy();
    this.rejectStart(err);
  }

  private stopWaiting(): void {
    clearTimeout(this.startTimer);
    this.options.signal.removeEventListener('abort', this.onAbort);
  }

  private error(why: string): GitFcgiError {
    return spawnError(this.options.program, why);
  }
}

/** The 5 bytes that open every connection to the helper: spawn id and role. */
export function hello(id: number, role: number): Buffer {
  const b = Buffer.allocUnsafe(5);
  b.writeUInt32LE(id, 0);
  b.writeUInt8(role, 4);
  return b;
}

/**
 * One of a backend's standard streams, usable at once (writes wait for the connection). Like a
 * pipe it closes when both sides are done: stdin's end() is a shutdown(SHUT_WR), and the
 * backend's exit ends each socket's reading side.
 */
function streamTo(address: string, id: number, role: number): net.Socket {
  const socket = role === 1 ? viewReadingSocket(address) : net.connect({ path: address });
  socket.write(hello(id, role));
  // Nothing comes back on stdin but its end, which must be read for the socket to close.
  if (role === 0) socket.on('data', () => {});
  return socket;
}

/** Where each stdout socket's reads go once the relay has asked for them (readStdout). */
const viewSinks = new WeakMap<net.Socket, (view: Buffer) => boolean>();
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * A socket that reads into one buffer of its own (net's `onread`): nothing is allocated per
 * read. Paused until readStdout() gives it a sink.
 */
function viewReadingSocket(address: string): net.Socket {
  const socket: net.Socket = net.connect({
    path: address,
    onread: {
      buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
      callback: (bytes: number, buffer: Uint8Array): boolean => {
        const sink = viewSinks.get(socket);
        return sink !== undefined && sink(Buffer.from(buffer.buffer, buffer.byteOffset, bytes));
      },
    },
  });
  socket.pause();
  return socket;
}
