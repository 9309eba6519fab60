import type { Socket } from 'node:net';
import type { PackFile } from './pack-file.js';

/** The most pack bytes in one 'o' frame: the hook's frame payload limit is its 64 KiB buffer. */
const CHUNK_BYTES = 64 * 1024;
const HEAD_BYTES = 5;

/** A frame header: its type (see src/native/pack-hook.c) and the payload length. */
export function frameHead(type: 'p' | 'o' | 'e' | 'x', length: number): Buffer {
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

/** Resolves once the socket took the bytes (its callback); false when it is gone. */
const send = (socket: Socket, bytes: Buffer): Promise<boolean> =>
  new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) {
      resolve(false);
      return;
    }
    socket.write(bytes, (err) => resolve(err === undefined || err === null));
  });

/** A 'f' frame: the file now holds `bytes` bytes. */
function sizeFrame(bytes: number): Buffer {
  const frame = Buffer.allocUnsafe(HEAD_BYTES + 8);
  frame[0] = 0x66; // 'f'
  frame.writeUInt32BE(8, 1);
  frame.writeBigUInt64BE(BigInt(bytes), HEAD_BYTES);
  return frame;
}

/**
 * Streams `pack` to one hook: the file's path, then how far it is written as it grows (the
 * hook copies those bytes from the file itself, so they never pass through the daemon), then
 * any bytes the file could not take from the memory window inline, then the exit code. Waits
 * while the pack grows. Resolves with the pack bytes handed over once the hook has closed the
 * connection: until then it may still be opening or reading the file, which must not be removed
 * under it. The caller has registered `self` in pack.readers and removes it.
 */
export async function streamPack(pack: PackFile, socket: Socket, self: object): Promise<number> {
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
    const where = Buffer.from(pack.hasFile ? pack.path : '');
    if (!(await send(socket, Buffer.concat([frameHead('p', where.length), where])))) return offset;
    for (;;) {
      if (gone) return offset;
      if (pack.hasFile && offset < pack.fileBytes) {
        const bytes = pack.fileBytes;
        if (!(await send(socket, sizeFrame(bytes)))) return offset;
        offset = bytes;
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
        await closed;
        return offset;
      }
      await Promise.race([pack.changed(), closed]);
    }
  } finally {
    socket.off('close', onClose);
  }
}
function advance(pack: PackFile, self: object, offset: number): void {
  pack.readers.set(self, offset);
  if (!pack.cacheable) pack.trim();
}
