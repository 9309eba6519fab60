import net from 'node:net';
import { defer, type Cleanup } from './cleanup.js';

/**
 * A TCP proxy on 127.0.0.1 that passes requests through at full speed and responses at about
 * `bytesPerSecond`: a slow client for tools that cannot throttle themselves (git clone). nginx
 * cannot do it here: limit_rate does not apply with fastcgi_buffering off.
 */
export async function startSlowProxy(
  t: Cleanup,
  targetPort: number,
  bytesPerSecond: number,
): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', closeBoth);
      s.on('close', closeBoth);
    }
    client.on('data', (chunk: Buffer) => {
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    client.on('end', () => upstream.end());
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      upstream.pause();
      setTimeout(() => upstream.resume(), (chunk.length / bytesPerSecond) * 1000);
    });
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  defer(t, async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('proxy has no port');
  return address.port;
}
