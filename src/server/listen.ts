import { chmodSync, chownSync, fstatSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { GitFcgiError } from '../errors.js';
import { formatListen, type ListenAddress } from '../config/values.js';
import { accountName } from './privileges.js';

/** Where a FastCGI server ended up listening, and how to clean up after it. */
export interface Bound {
  readonly description: string;
  /** Removes the socket file if it is still the one we created. */
  readonly cleanup: () => void;
}

/** systemd socket activation hands over its first socket as fd 3 (sd_listen_fds). */
const SD_LISTEN_FDS_START = 3;

/**
 * Node calls listen(2) again on a socket it adopts, with a backlog of 511 unless told: that
 * would shrink the queue systemd made (Backlog=, by default as long as the kernel allows) for
 * every later start too. Connections wait in that queue while git-fcgi restarts. The kernel
 * caps the value at net.core.somaxconn.
 */
const INHERITED_BACKLOG = 0x7fffffff;

function listenError(what: string, err?: unknown): GitFcgiError {
  return new GitFcgiError('ERR_LISTEN', what, err === undefined ? {} : { cause: err });
}

/** True when something accepts connections on the UNIX socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * A socket file left behind by a crash is replaced (as spawn-fcgi does); one a live server
 * still answers on is not: two daemons on one socket would be a silent misconfiguration.
 */
async function clearStaleSocket(path: string): Promise<void> {
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    return;
  }
  if (!stat.isSocket()) throw listenError(`${path} exists and is not a socket; refusing to replace it`);
  if (await socketAnswers(path)) throw listenError(`another server is already listening on ${path}`);
  unlinkSync(path);
}

function listenOn(server: net.Server, options: net.ListenOptions | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    const onListening = (): void => {
      server.removeListener('error', onError);
      resolve();
    };
    server.once('error', onError);
    // With a descriptor Node takes the backlog only as the second argument, not as an option.
    if ('fd' in options) server.listen(options, INHERITED_BACKLOG, onListening);
    else server.listen(options, onListening);
  });
}

/** The socket the FastCGI convention (spawn-fcgi, systemd) passes when no address is given. */
function inheritedFd(env: NodeJS.ProcessEnv): { fd: number; from: string } | null {
  if (env.LISTEN_PID === String(process.pid) && Number(env.LISTEN_FDS) >= 1) {
    return { fd: SD_LISTEN_FDS_START, from: 'systemd socket activation (fd 3)' };
  }
  try {
    if (fstatSync(0).isSocket()) return { fd: 0, from: 'inherited socket on fd 0' };
  } catch {
    // fd 0 closed
  }
  return null;
}

export async function bindFastCgi(
  server: net.Server,
  address: ListenAddress | null,
  socketMode: number,
  owner: { readonly uid: number; readonly gid: number } | null = null,
): Promise<Bound> {
  if (address === null) {
    const inherited = inheritedFd(process.env);
    if (inherited === null) {
      throw listenError(
        'nothing to listen on: give --listen (unix:/path or HOST:PORT), or start under spawn-fcgi or systemd',
      );
    }
    await listenOn(server, { fd: inherited.fd }).catch((err: unknown) => {
      throw listenError(`cannot listen on the ${inherited.from}`, err);
    });
    delete process.env.LISTEN_FDS;
    delete process.env.LISTEN_PID;
    delete process.env.LISTEN_FDNAMES;
    return { description: inherited.from, cleanup: () => {} };
  }
  const description = formatListen(address);
  if (address.kind === 'tcp') {
    await listenOn(server, { host: address.host, port: address.port }).catch((err: unknown) => {
      throw listenError(`cannot listen on ${description}: ${(err as Error).message}`, err);
    });
    const bound = server.address();
    const port = typeof bound === 'object' && bound !== null ? bound.port : address.port;
    return { description: formatListen({ ...address, port }), cleanup: () => {} };
  }
  const { path } = address;
  await clearStaleSocket(path);
  await listenOn(server, { path }).catch((err: unknown) => {
    throw listenError(`cannot listen on ${path}: ${(err as Error).message}`, err);
  });
  // A socket nginx cannot use (or anyone can) is worse than none: remove it and fail.
  try {
    if (owner !== null) chownSync(path, owner.uid, owner.gid);
    chmodSync(path, socketMode);
  } catch (err) {
    unlinkSync(path);
    throw listenError(`cannot set owner or mode of ${path}: ${(err as Error).message}`, err);
  }
  const { ino, uid, gid, mode } = statSync(path);
  // The front end's workers must be this user or in this group (nginx's "13: Permission denied").
  const access = `owner ${accountName('passwd', uid)}:${accountName('group', gid)}, mode 0${(mode & 0o777).toString(8)}`;
  return {
    description: `${description} (${access})`,
    cleanup: () => {
      try {
        if (lstatSync(path).ino === ino) unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}
