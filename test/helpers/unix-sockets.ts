import { readFile } from 'node:fs/promises';

/**
 * Connections accepted on the UNIX socket at `path` and still open, from /proc/net/unix: an accepted
 * socket carries its listener's path and is connected (state 03); the listener itself is not.
 */
export async function acceptedConnections(path: string): Promise<number> {
  const table = await readFile('/proc/net/unix', 'utf8');
  let count = 0;
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[7] === path && fields[5] === '03') count++;
  }
  return count;
}
