import { connect, type NetConnectOpts } from 'node:net';

// Readiness probes: a refused or failed connection means "not yet", never an error.
function accepts(options: NetConnectOpts): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(options);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** True when something accepts TCP connections on host:port. */
export const acceptsTcp = (port: number, host = '127.0.0.1'): Promise<boolean> => accepts({ host, port });

/** True when something accepts connections on the UNIX socket at `path`. */
export const acceptsUnix = (path: string): Promise<boolean> => accepts({ path });
