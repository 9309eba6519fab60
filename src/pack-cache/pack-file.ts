import { closeSync, openSync, unlinkSync, write } from 'node:fs';
import type { StoreEntry } from './store.js';

/** Most bytes kept in memory for readers once the file cannot take more (a full disk, the budget). */
export const MEMORY_WINDOW_BYTES = 1 << 20;

/**
 * One pack as it is written and read: the bytes [0, fileBytes) are in the file, those from
 * there to totalBytes in a bounded memory window once writing to the file stopped (a full disk,
 * the budget reached). Readers follow it as it grows; `changed()` wakes them.
 */
export class PackFile {
  fileBytes = 0;
  totalBytes = 0;
  state: 'running' | 'done' | 'failed' = 'running';
  exitCode = 0;
  /** Whether the file still takes the bytes (else they go to the memory window). */
  cacheable: boolean;
  /** Whether the file was made: readers copy [0, fileBytes) from it, even once it is no longer cacheable. */
  readonly hasFile: boolean;
  private readonly window: Buffer[] = [];
  private windowBytes = 0;
  private wakeups: Array<() => void> = [];
  private fd: number | null;
  /** Each attached reader's offset, for trimming the window. */
  readonly readers = new Map<object, number>();

  constructor(
    readonly entry: StoreEntry,
    readonly path: string,
  ) {
    try {
      this.fd = openSync(path, 'wx', 0o600);
      this.cacheable = true;
    } catch {
      this.fd = null;
      this.cacheable = false;
    }
    this.hasFile = this.cacheable;
  }

  /** Appends `chunk` to the file; resolves false (nothing counted) when it could not. */
  writeToFile(chunk: Buffer): Promise<boolean> {
    const fd = this.fd;
    if (fd === null || !this.cacheable) return Promise.resolve(false);
    return new Promise((resolve) => {
      let done = 0;
      const next = (): void => {
        write(fd, chunk, done, chunk.length - done, this.fileBytes + done, (err, n) => {
          if (err !== null || n === 0) {
            resolve(false);
            return;
          }
          done += n;
          if (done < chunk.length) next();
          else {
            this.fileBytes += chunk.length;
            this.totalBytes = this.fileBytes;
            this.wake();
            resolve(true);
          }
        });
      };
      next();
    });
  }

  /** From now on bytes go to memory: readers take the file up to here, then the window. */
  stopCaching(): void {
    this.cacheable = false;
    this.closeWriter();
  }

  /** Adds `chunk` to the memory window. */
  keep(chunk: Buffer): void {
    this.window.push(chunk);
    this.windowBytes += chunk.length;
    this.totalBytes += chunk.length;
    this.wake();
  }

  /** Whether the window has room (else the producer waits for readers: backpressure). */
  get windowHasRoom(): boolean {
    return this.windowBytes < MEMORY_WINDOW_BYTES;
  }

  /** The bytes at `offset` in the window (at most `max`), or null when they are not there. */
  fromMemory(offset: number, max: number): Buffer | null {
    let start = this.totalBytes - this.windowBytes;
    for (const chunk of this.window) {
      if (offset < start + chunk.length && offset >= start) {
        return chunk.subarray(offset - start, Math.min(chunk.length, offset - start + max));
      }
      start += chunk.length;
    }
    return null;
  }

  /** Drops window bytes every reader has passed. */
  trim(): void {
    let lowest = Infinity;
    for (const offset of this.readers.values()) lowest = Math.min(lowest, offset);
    let start = this.totalBytes - this.windowBytes;
    while (this.window.length > 0) {
      const first = this.window[0] as Buffer;
      if (start + first.length > lowest) break;
      this.window.shift();
      this.windowBytes -= first.length;
      start += first.length;
    }
    this.wake();
  }

  finish(state: 'done' | 'failed', exitCode: number): void {
    this.state = state;
    this.exitCode = exitCode;
    this.closeWriter();
    this.wake();
  }

  /** Resolves at the next change (bytes, state, a reader moving on). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.wakeups.push(resolve));
  }

  /** Deletes the file; readers that opened it keep reading it. */
  remove(): void {
    this.closeWriter();
    try {
      unlinkSync(this.path);
    } catch {
      // Never created, or already gone.
    }
  }

  private closeWriter(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // Nothing to do about it.
    }
    this.fd = null;
  }

  private wake(): void {
    const wakeups = this.wakeups;
    this.wakeups = [];
    for (const wake of wakeups) wake();
  }
}
