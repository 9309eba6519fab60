import net from 'node:net';
import { join } from 'node:path';
import { defer, type Cleanup } from './cleanup.js';
import { tmpDir } from './tmp.js';

export interface CountingProxy {
  /** The UNIX socket to connect to instead of the target. */
  readonly socket: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connections open now. */
  readonly open: number;
}

/**
 * A UNIX socket that passes every connection through to `target` unchanged (bytes, backpressure, ends and
 * closes), counting them: how a test sees whether a front end reuses its connections to git-fcgi.
 */
export async function startCountingProxy(t: Cleanup, target: string): Promise<CountingProxy> {
  const socket = join(await tmpDir(t, 'proxy-'), 'proxy.sock');
  const live = new Set<net.Socket>();
  let connections = 0;
  let open = 0;
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    connections++;
    open++;
    const upstream = net.connect({ path: target, allowHalfOpen: true });
    live.add(client).add(upstream);
    let closed = 0;
    const onClose = (): void => {
      client.destroy();
      upstream.destroy();
      if (++closed === 2) open--;
      live.delete(client);
      live.delete(upstream);
    };
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('data', (chunk: Buffer) => {
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
      });
      from.on('end', () => to.end());
      from.on('error', () => from.destroy());
      from.on('close', onClose);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  defer(t, async () => {
    for (const s of live) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    socket,
    get connections() {
      return connections;
    },
    get open() {
      return open;
    },
  };
}
