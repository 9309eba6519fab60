import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { GitFcgiError } from '../errors.js';
import type { Logger } from '../log.js';
import {
  groupKiller,
  spawnError as backendSpawnError,
  type BackendExit,
  type BackendProcess,
  type Spawner,
} from './backend-process.js';

/** Built next to dist/cli.js by `npm ci` (see src/native/spawnd.c for why and how). */
export const SPAWN_HELPER_PATH = fileURLToPath(new URL('../git-fcgi-spawnd', import.meta.url));

const REPORT_LEN = 13;
/** The helper's MAX_MESSAGE: larger spawn messages are refused here, not sent (see spawnd.c). */
const MAX_MESSAGE_BYTES = 4 << 20;
const STAGES = ['fork', 'chdir', 'exec', 'message'] as const;
const SIGNAL_NAMES = new Map(
  Object.entries(constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]),
);
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, number]) => [number, name]));

interface Pending {
  readonly program: string;
  readonly streams: [net.Socket, net.Socket, net.Socket];
  readonly started: (backend: BackendProcess) => void;
  readonly failed: (err: Error) => void;
  readonly exited: Promise<BackendExit>;
  readonly exit: (exit: BackendExit) => void;
  pid?: number;
}

/**
 * The client side of git-fcgi-spawnd: backends are started by that small helper process, so
 * the daemon never forks itself. Each backend's stdin, stdout and stderr are UNIX socket
 * connections from the daemon to the helper, handed to the backend as they are; exits come
 * back on a control connection.
 */
export class SpawnHelper {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private received: Buffer = Buffer.alloc(0);
  private closed = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly address: string,
    private readonly control: net.Socket,
    private readonly log: Logger,
  ) {
    control.on('data', (chunk: Buffer) => this.onReports(chunk));
    control.on('error', () => {});
    control.once('close', () => this.onGone('its control connection closed'));
    child.once('exit', (code, signal) => this.onGone(`it exited (${signal ?? `code ${code}`})`));
  }

  /** Starts the helper; rejects when it cannot run (no binary, no listening socket). */
  static async start(binary: string, log: Logger): Promise<SpawnHelper> {
    if (!existsSync(binary)) throw new Error(`${binary} is missing (built by npm ci; needs a C compiler)`);
    const name = `git-fcgi-spawnd-${process.pid}-${randomBytes(6).toString('hex')}`;
    const child = spawnChild(binary, [`@${name}`, String(process.pid)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {},
      // Its own session: a Ctrl-C for the daemon in a terminal must not kill it first.
      detached: true,
    });
    child.stderr?.on('data', (chunk: Buffer) => log.error(`spawn helper: ${chunk.toString().trim()}`));
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const fail = (why: string): void => {
        child.kill('SIGKILL');
        reject(new Error(`${binary} did not start: ${why}`));
      };
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code, signal) => fail(`exited (${signal ?? `code ${code}`})`));
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('ready\n')) {
          child.removeAllListeners('exit');
          child.removeAllListeners('error');
          resolve();
        }
      });
    });
    // Abstract: nothing on disk to clean up; the helper only accepts this process (SO_PEERCRED).
    const address = `\0${name}`;
    try {
      const control = await connect(address, 0, 'C'.charCodeAt(0));
      return new SpawnHelper(child, address, control, log);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }

  readonly spawn: Spawner = (program, args, env, cwd) => {
    if (this.closed) return Promise.reject(spawnError(program, 'the spawn helper is gone'));
    const strings = [program, cwd, ...args, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    if (strings.some((s) => s.includes('\0')) || args.length > 0xffff) {
      return Promise.reject(spawnError(program, 'a NUL byte in its arguments or environment'));
    }
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const body = Buffer.from(`${strings.join('\0')}\0`);
    if (body.length + 7 > MAX_MESSAGE_BYTES) {
      const why = `E2BIG: ${body.length} bytes of arguments and environment`;
      return Promise.reject(spawnError(program, why, 'E2BIG'));
    }
    const head = Buffer.allocUnsafe(11);
    head.writeUInt32LE(body.length + 7, 0);
    head.write('S', 4, 'latin1');
    head.writeUInt32LE(id, 5);
    head.writeUInt16LE(args.length, 9);
    this.control.write(Buffer.concat([head, body]));
    const streams = [0, 1, 2].map((role) => streamTo(this.address, id, role)) as Pending['streams'];
    let exit: (exit: BackendExit) => void = () => {};
    const exited = new Promise<BackendExit>((resolve) => (exit = resolve));
    return new Promise<BackendProcess>((started, failed) => {
      this.pending.set(id, { program, streams, started, failed, exited, exit });
      // A stream that cannot connect (the helper overwhelmed or going away) fails the spawn
      // instead of leaving the request waiting for a start that will not come.
      for (const stream of streams) {
        stream.once('error', (err) => {
          const p = this.pending.get(id);
          if (p === undefined || p.pid !== undefined) return;
          this.pending.delete(id);
          for (const s of streams) s.destroy();
          failed(spawnError(program, `cannot reach the spawn helper: ${err.message}`));
        });
      }
    });
  };

  /** Ends the helper (at exit); backends already running carry on and are not waited for. */
  close(): void {
    this.closed = true;
    this.control.end();
  }

  private onReports(chunk: Buffer): void {
    this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
    let at = 0;
    for (; this.received.length - at >= REPORT_LEN; at += REPORT_LEN) {
      const kind = String.fromCharCode(this.received[at] ?? 0);
      const id = this.received.readUInt32LE(at + 1);
      const a = this.received.readInt32LE(at + 5);
      const b = this.received.readInt32LE(at + 9);
      this.onReport(kind, id, a, b);
    }
    this.received = this.received.subarray(at);
  }

  private onReport(kind: string, id: number, a: number, b: number): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    if (kind === 'P') {
      p.pid = a;
      const [stdin, stdout, stderr] = p.streams;
      const readStdout = (onView: (view: Buffer) => boolean): void => {
        viewSinks.set(stdout, onView);
        stdout.resume();
      };
      p.started({ stdin, stdout, stderr, readStdout, pid: a, exited: p.exited, kill: groupKiller(a) });
    } else if (kind === 'F') {
      this.pending.delete(id);
      for (const s of p.streams) s.destroy();
      const code = ERRNO_NAMES.get(a) ?? `errno ${a}`;
      p.failed(spawnError(p.program, `${code} at ${STAGES[b] ?? 'start'}`, code));
    } else if (kind === 'X') {
      this.pending.delete(id);
      p.streams[0].destroy(); // as Node does with a child's stdin at exit
      p.exit(a < 0 ? { code: null, signal: SIGNAL_NAMES.get(b) ?? 'SIGKILL' } : { code: a, signal: null });
    }
  }

  /**
   * The helper died (a bug, or killed): nothing can report the backends' exits any more, so
   * they are killed and counted as such; later requests fall back to Node's own spawn.
   */
  private onGone(why: string): void {
    if (this.closed && this.pending.size === 0) return;
    const wasClosed = this.closed;
    this.closed = true;
    if (!wasClosed) this.log.error(`spawn helper gone: ${why}; starting backends without it from now on`);
    this.child.kill('SIGKILL');
    this.control.destroy();
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      if (p.pid === undefined) {
        for (const s of p.streams) s.destroy();
        p.failed(spawnError(p.program, 'the spawn helper is gone'));
      } else {
        groupKiller(p.pid)(0);
        p.exit({ code: null, signal: 'SIGKILL' });
      }
    }
  }

  get available(): boolean {
    return !this.closed;
  }
}

function spawnError(program: string, why: string, code?: string): GitFcgiError {
  const cause = code === undefined ? undefined : Object.assign(new Error(why), { code });
  return backendSpawnError(program, why, cause);
}

function hello(id: number, role: number): Buffer {
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

function connect(address: string, id: number, role: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: address });
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      socket.write(hello(id, role));
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
