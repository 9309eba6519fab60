import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { GitFcgiError } from '../errors.js';
import type { Logger } from '../log.js';
import { signalGroup, spawnError as backendSpawnError, type Spawner } from './backend-process.js';
import { HelperSpawn, hello } from './helper-spawn.js';

/** Built next to dist/cli.js by `npm ci` (see src/native/spawnd.c for why and how). */
export const SPAWN_HELPER_PATH = fileURLToPath(new URL('../git-fcgi-spawnd', import.meta.url));

const REPORT_LEN = 13;
/**
 * How long a spawn waits for the helper to start its backend: a start takes milliseconds, but
 * a helper stuck (stopped, blocked in an exec on a hung mount) must not hold requests forever.
 */
const START_TIMEOUT_MS = 10_000;
/** The helper's MAX_MESSAGE: larger spawn messages are refused here, not sent (see spawnd.c). */
const MAX_MESSAGE_BYTES = 4 << 20;
const STAGES = ['fork', 'chdir', 'exec', 'message', 'streams'] as const;
const SIGNAL_NAMES = new Map(
  Object.entries(constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]),
);
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, number]) => [number, name]));

export interface SpawnHelperOptions {
  /** How long a spawn may wait for the helper to start its backend (default 10 s). */
  readonly startTimeoutMs?: number;
}

/**
 * The client side of git-fcgi-spawnd: backends are started by that small helper process, so
 * the daemon never forks itself. Each backend's stdin, stdout and stderr are UNIX socket
 * connections from the daemon to the helper, handed to the backend as they are; exits come
 * back on a control connection.
 */
export class SpawnHelper {
  private readonly spawns = new Map<number, HelperSpawn>();
  private nextId = 1;
  private received: Buffer = Buffer.alloc(0);
  private closed = false;
  private gone = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly address: string,
    private readonly control: net.Socket,
    private readonly log: Logger,
    private readonly startTimeoutMs: number,
  ) {
    control.on('data', (chunk: Buffer) => this.onReports(chunk));
    control.on('error', () => {});
    control.once('close', () => this.onGone('its control connection closed'));
    child.once('exit', (code, signal) => this.onGone(`it exited (${signal ?? `code ${code}`})`));
  }

  /** Starts the helper; rejects when it cannot run (no binary, no listening socket). */
  static async start(binary: string, log: Logger, options: SpawnHelperOptions = {}): Promise<SpawnHelper> {
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
      return new SpawnHelper(child, address, control, log, options.startTimeoutMs ?? START_TIMEOUT_MS);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }

  readonly spawn: Spawner = (program, args, env, cwd, signal) => {
    if (this.closed) return Promise.reject(spawnError(program, 'the spawn helper is gone'));
    if (signal.aborted) return Promise.reject(signal.reason);
    const strings = [program, cwd, ...args, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    if (strings.some((s) => s.includes('\0')) || args.length > 0xffff) {
      return Promise.reject(spawnError(program, 'a NUL byte in its arguments or environment'));
    }
    const body = Buffer.from(`${strings.join('\0')}\0`);
    if (body.length + 7 > MAX_MESSAGE_BYTES) {
      const why = `E2BIG: ${body.length} bytes of arguments and environment`;
      return Promise.reject(spawnError(program, why, 'E2BIG'));
    }
    const id = this.takeId();
    const argc = Buffer.allocUnsafe(2);
    argc.writeUInt16LE(args.length, 0);
    this.control.write(controlMessage('S', id, argc, body));
    const spawn = new HelperSpawn({
      id,
      program,
      address: this.address,
      signal,
      startTimeoutMs: this.startTimeoutMs,
      forget: () => this.spawns.delete(id),
      release: () => {
        if (this.control.writable) this.control.write(controlMessage('R', id));
      },
    });
    this.spawns.set(id, spawn);
    return spawn.started;
  };

  /** The next id no spawn in the table has: the helper would take a report for the other. */
  private takeId(): number {
    let id = this.nextId;
    while (this.spawns.has(id)) id = id >= 0xffffffff ? 1 : id + 1;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }

  /** Ends the helper (at exit): backends still running get SIGTERM from it, SIGKILL 2 s later. */
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
    const spawn = this.spawns.get(id);
    if (spawn === undefined) return;
    if (kind === 'P') spawn.onStarted(a);
    else if (kind === 'F') {
      const code = ERRNO_NAMES.get(a) ?? `errno ${a}`;
      spawn.onFailed(`${code} at ${STAGES[b] ?? 'start'}`, code);
    } else if (kind === 'X') {
      spawn.onExited(
        a < 0 ? { code: null, signal: SIGNAL_NAMES.get(b) ?? 'SIGKILL' } : { code: a, signal: null },
      );
    }
  }

  /**
   * The helper ended (closed, killed, or a bug): later requests fall back to Node's own spawn,
   * and the backends it started are counted as killed. Ending on its own (the control
   * connection closed, SIGTERM) it ends their groups itself: SIGTERM, SIGKILL 2 s later. Killed
   * outright (SIGKILL, a crash) it could not, and the daemon sends the SIGKILLs: the one case
   * where a signal goes to a group whose leader the helper does not hold. A leader whose exit
   * was not reported is init's child then, its pid taken until it exits and init reaps it; only
   * that moment is left for the pid to be reused.
   */
  private onGone(why: string): void {
    if (this.gone) return;
    this.gone = true;
    if (!this.closed) this.log.error(`spawn helper gone: ${why}; starting backends without it from now on`);
    this.closed = true;
    this.control.destroy();
    const running = [...this.spawns.values()].flatMap((spawn) => spawn.onHelperGone() ?? []);
    const { child } = this;
    const killedOutright = (): void => {
      if (child.signalCode !== null) for (const pid of running) signalGroup(pid, 'SIGKILL');
    };
    if (child.exitCode !== null || child.signalCode !== null) killedOutright();
    else {
      child.once('exit', killedOutright);
      child.kill('SIGTERM'); // still there without its control connection: it ends what runs
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

/** u32 length, then `kind`, u32 id and the rest. */
function controlMessage(kind: 'S' | 'R', id: number, ...rest: Buffer[]): Buffer {
  const head = Buffer.allocUnsafe(9);
  head.writeUInt32LE(5 + rest.reduce((sum, b) => sum + b.length, 0), 0);
  head.write(kind, 4, 'latin1');
  head.writeUInt32LE(id, 5);
  return Buffer.concat([head, ...rest]);
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
