import net from 'node:net';
import { withDeadline } from './deadline.js';

export interface FeedOptions {
  /** Half-close our side once everything is written (what a peer that is done sending does). */
  readonly end: boolean;
  readonly timeoutMs: number;
}

/**
 * Writes `pieces` to a FastCGI socket and collects what comes back until the server ends or
 * closes the connection; rejects when it does neither within the deadline.
 */
export async function feedFastCgi(
  socketPath: string,
  pieces: readonly Buffer[],
  opts: FeedOptions,
): Promise<Buffer> {
  const socket = net.connect(socketPath);
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.on('error', () => undefined);
  const ended = new Promise<void>((resolve) => {
    socket.once('end', resolve);
    socket.once('close', () => resolve());
  });
  try {
    for (const piece of pieces) socket.write(piece);
    if (opts.end) socket.end();
    await withDeadline(ended, opts.timeoutMs, 'the server to close the FastCGI connection');
  } finally {
    socket.destroy();
  }
  return Buffer.concat(received);
}
