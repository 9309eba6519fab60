import { BlockList, isIPv4, type Socket } from 'node:net';

/**
 * php-fpm's listen.allowed_clients for TCP listeners: connections from other addresses are
 * closed before a byte is read. UNIX sockets are guarded by their file mode instead.
 */
export function clientFilter(allowed: readonly string[] | 'any'): (socket: Socket) => boolean {
  if (allowed === 'any') return () => true;
  const list = new BlockList();
  for (const address of allowed) list.addAddress(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  return (socket) => {
    const remote = socket.remoteAddress;
    if (remote === undefined) return true; // a UNIX socket
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote)?.[1];
    if (v4 !== undefined) return list.check(v4, 'ipv4');
    return list.check(remote, isIPv4(remote) ? 'ipv4' : 'ipv6');
  };
}
