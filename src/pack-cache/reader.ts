import { close, open, read } from 'node:fs';
import type { Socket } from 'node:net';
import type { PackFile } from './pack-file.js';

/** One read of the file: the hook's frame payload limit is its 64 KiB buffer. */
const CHUNK_BYTES = 64 * 1024;
const HEAD_BYTES = 5;

/** A frame header: type ('o' stdout, 'e' stderr, 'x' exit code) and the payload length. */
export function frameHead(type: 'o' | 'e' | 'x', length: number): Buffer {
  const head = Buffer.allocUnsafe(HEAD_BYTES);
  head[0] = type.charCodeAt(0);
  head.writeUInt32BE(length, 1);
  return head;
}

/** stderr for the hook as frames of at most CHUNK_BYTES (progress; small). */
export function writeStderr(socket: Socket, chunk: Buffer): void {
  if (socket.destroyed || !socket.writable) return;
  for (let at = 0; at < chunk.length; at += CHUNK_BYTES) {
    const part = chunk.subarray(at, at + CHUNK_BYTES);
    socket.write(Buffer.concat([frameHead('e', part.length), part]));
  }
}

const openFile = (path: string): Promise<number | null> =>
  new Promise((resolve) => open(path, 'r', (err, fd) => resolve(err === null ? fd : null)));

const readAt = (fd: number, buf: Buffer, at: number, length: number, position: number): Promise<number> =>
  new Promise((resolve, reject) =>
    read(fd, buf, at, length, position, (err, n) => (err === null ? resolve(n) : reject(err))),
  );

/** Resolves once the socket took the bytes (its callback); false when it is gone. */
const send = (socket: Socket, bytes: Buffer): Promise<boolean> =>
  new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) {
      resolve(false);
      return;
    }
    socket.write(bytes, (err) => resolve(err === undefined || err === null));
  });

/**
 * Streams `pack` to one hook as frames, from the file as far as it is written, then from the
 * memory window, waiting while the pack grows; the exit code last. One fixed buffer per
 * reader; the next read waits for the socket to take the last one. Resolves with the pack
 * bytes sent; the caller has registered `self` in pack.readers and removes it.
 */
export async function streamPack(pack: PackFile, socket: Socket, self: object): Promise<number> {
  const buf = Buffer.allocUnsafe(HEAD_BYTES + CHUNK_BYTES);
  let fd: number | null = null;
  let offset = 0;
  let gone = false;
  let onClose = (): void => {};
  const closed = new Promise<void>((resolve) => {
    onClose = (): void => {
      gone = true;
      resolve();
    };
  });
  socket.once('close', onClose);
  try {
    fd = await openFile(pack.path);
    for (;;) {
      if (gone) return offset;
      if (fd !== null && offset < pack.fileBytes) {
        const n = await readAt(fd, buf, HEAD_BYTES, Math.min(CHUNK_BYTES, pack.fileBytes - offset), offset);
        if (n === 0) throw new Error('the cached pack is shorter than written');
        buf[0] = 0x6f; // 'o'
        buf.writeUInt32BE(n, 1);
        if (!(await send(socket, buf.subarray(0, HEAD_BYTES + n)))) return offset;
        offset += n;
        advance(pack, self, offset);
        continue;
      }
      if (offset < pack.totalBytes) {
        const part = pack.fromMemory(offset, CHUNK_BYTES);
        if (part === null) throw new Error('pack bytes neither in the file nor in memory');
        socket.write(frameHead('o', part.length));
        if (!(await send(socket, part))) return offset;
        offset += part.length;
        advance(pack, self, offset);
        continue;
      }
      if (pack.state !== 'running') {
        const code = pack.state === 'done' ? 0 : pack.exitCode & 0xff || 128;
        await send(socket, Buffer.concat([frameHead('x', 1), Buffer.from([code])]));
        socket.end();
        return offset;
      }
      await Promise.race([pack.changed(), closed]);
    }
  } finally {
    socket.off('close', onClose);
    if (fd !== null) close(fd, () => {});
  }
}

function advance(pack: PackFile, self: object, offset: number): void {
  pack.readers.set(self, offset);
  if (!pack.cacheable) pack.trim();
}
