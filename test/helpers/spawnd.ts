import net from 'node:net';
import { join } from 'node:path';
import { defer, type Cleanup } from './cleanup.js';
import { repoRoot } from './daemon.js';
import { waitFor, withDeadline } from './deadline.js';
import { startProcess, type StartOptions, type StartedProcess } from './start-process.js';

export const SPAWN_HELPER = join(repoRoot, 'dist', 'git-fcgi-spawnd');

/** One 13-byte report of the helper: 'P' started (a: pid), 'F' not started (a: errno, b: stage), 'X' exited. */
export interface SpawndReport {
  readonly kind: string;
  readonly id: number;
  readonly a: number;
  readonly b: number;
}

/** A backend's three streams, as the helper hands them to it. */
export interface SpawndStreams {
  readonly stdin: net.Socket;
  readonly stdout: net.Socket;
  readonly stderr: net.Socket;
}

/**
 * git-fcgi-spawnd run by the test process as the daemon runs it (this process is its daemon),
 * spoken to in its own protocol (src/native/spawnd.c): tests of the helper alone.
 */
export interface Spawnd {
  readonly process: StartedProcess;
  /** The helper's pid (a launcher such as prlimit execs it in place). */
  readonly pid: number;
  readonly address: string;
  readonly control: net.Socket;
  reports(): SpawndReport[];
  /** The first report of `kind` for `id`, waited for up to `timeoutMs`. */
  report(kind: string, id: number, timeoutMs?: number): Promise<SpawndReport>;
  /** A connection to the helper that has sent `bytes`. */
  open(bytes: Buffer): Promise<net.Socket>;
  /** The spawn message for `id` and its three streams. */
  spawn(id: number, program: string, env: readonly string[]): Promise<SpawndStreams>;
  /** Raw bytes on the control connection. */
  send(bytes: Buffer): void;
}

export function hello(id: number, role: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32LE(id, 0);
  b[4] = role;
  return b;
}

/** A control message: u32 length, then `kind`, u32 id and `rest`. */
export function controlMessage(kind: string, id: number, rest: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUInt32LE(5 + rest.length, 0);
  head.write(kind, 4, 'latin1');
  head.writeUInt32LE(id, 5);
  return Buffer.concat([head, rest]);
}

/** 'S': run `program` in / with no arguments and exactly `env`. */
export function spawnMessage(id: number, program: string, env: readonly string[]): Buffer {
  const argc = Buffer.alloc(2);
  const strings = Buffer.from([program, '/', ...env].map((s) => `${s}\0`).join(''));
  return controlMessage('S', id, Buffer.concat([argc, strings]));
}

export async function startSpawnd(
  t: Cleanup,
  opts: { readonly launcher?: readonly string[]; readonly extraFds?: StartOptions['extraFds'] } = {},
): Promise<Spawnd> {
  const name = `git-fcgi-spawnd-test-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  const [cmd = SPAWN_HELPER, ...launcherArgs] = opts.launcher ?? [];
  const args = [...launcherArgs, ...(opts.launcher === undefined ? [] : [SPAWN_HELPER])];
  const proc = await startProcess(t, cmd, [...args, `@${name}`, String(process.pid)], {
    ...(opts.extraFds === undefined ? {} : { extraFds: opts.extraFds }),
  });
  await waitFor(() => proc.stdout().includes('ready\n'), { timeoutMs: 5000, what: 'the helper to listen' });
  const address = `\0${name}`;
  const open = (bytes: Buffer): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const socket = net.connect(address, () => {
        socket.removeListener('error', reject);
        socket.on('error', () => {});
        socket.write(bytes, () => resolve(socket));
      });
      socket.once('error', reject);
    });
  const control = await open(hello(0, 'C'.charCodeAt(0)));
  defer(t, () => control.destroy());
  let received = Buffer.alloc(0);
  control.on('data', (chunk: Buffer) => (received = Buffer.concat([received, chunk])));
  const reports = (): SpawndReport[] => {
    const out: SpawndReport[] = [];
    for (let at = 0; at + 13 <= received.length; at += 13) {
      out.push({
        kind: String.fromCharCode(received[at] ?? 0),
        id: received.readUInt32LE(at + 1),
        a: received.readInt32LE(at + 5),
        b: received.readInt32LE(at + 9),
      });
    }
    return out;
  };
  const find = (kind: string, id: number): SpawndReport | undefined =>
    reports().find((r) => r.kind === kind && r.id === id);
  return {
    process: proc,
    pid: proc.pid,
    address,
    control,
    reports,
    report: async (kind, id, timeoutMs = 5000) => {
      await waitFor(() => find(kind, id) !== undefined, {
        timeoutMs,
        what: `report ${kind} for spawn ${id} (have ${JSON.stringify(reports())})`,
      });
      const found = find(kind, id);
      if (found === undefined) throw new Error('unreachable');
      return found;
    },
    open,
    send: (bytes) => control.write(bytes),
    spawn: async (id, program, env) => {
      control.write(spawnMessage(id, program, env));
      const [stdin, stdout, stderr] = await withDeadline(
        Promise.all([0, 1, 2].map((role) => open(hello(id, role)))),
        5000,
        `the streams of spawn ${id}`,
      );
      if (stdin === undefined || stdout === undefined || stderr === undefined) throw new Error('unreachable');
      defer(t, () => [stdin, stdout, stderr].forEach((s) => s.destroy()));
      return { stdin, stdout, stderr };
    },
  };
}

/** Everything `socket` sends until it ends. */
export function readAll(socket: net.Socket, timeoutMs: number, what: string): Promise<string> {
  let out = '';
  socket.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return withDeadline(
    new Promise<string>((resolve) => socket.once('end', () => resolve(out))),
    timeoutMs,
    what,
  );
}
