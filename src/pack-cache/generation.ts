import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BackendProcess, Spawner } from '../request/backend-process.js';
import type { PackFile } from './pack-file.js';

export interface GenerationOptions {
  readonly spawn: Spawner;
  /** Aborted when the daemon stops: the generation is the daemon's, not a request's. */
  readonly signal: AbortSignal;
  readonly idleTimeoutMs: number;
  readonly killGraceMs: number;
  readonly log: Logger;
  /**
   * Room for more bytes on disk (the budget); false: the pack stops being cached. Called
   * before each write.
   */
  readonly reserve: (bytes: number) => boolean;
  /** pack-objects' stderr (progress), for the reader that started it while it is attached. */
  readonly onStderr: (chunk: Buffer) => void;
  readonly onBytes: (bytes: number) => void;
}

export interface PackObjectsRun {
  readonly program: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  readonly cwd: string;
  readonly stdin: Buffer;
}

/**
 * Runs pack-objects once and writes its output to `pack`, detached from any request: readers
 * come and go. Writes are chained, one at a time in order; stdout is paused while one is
 * pending or, once the file takes no more (a full disk, the budget), while the memory window is
 * full. Resolves when the pack is finished or failed; never rejects.
 */
export async function generate(
  run: PackObjectsRun,
  pack: PackFile,
  options: GenerationOptions,
): Promise<void> {
  const { log } = options;
  let child: BackendProcess;
  try {
    child = await options.spawn(run.program, run.args, run.env, run.cwd, options.signal);
  } catch (err) {
    log.warn('pack cache: cannot run pack-objects', { reason: describeError(err) });
    pack.finish('failed', 128);
    return;
  }
  let idle: NodeJS.Timeout | undefined;
  const kill = (why: string): void => {
    log.warn(`pack cache: pack-objects killed: ${why}`, { pid: child.pid });
    child.kill(options.killGraceMs);
  };
  const touch = (): void => {
    clearTimeout(idle);
    idle = setTimeout(() => kill(`no output for ${options.idleTimeoutMs} ms`), options.idleTimeoutMs);
  };
  const onAbort = (): void => kill('the daemon stops');
  options.signal.addEventListener('abort', onAbort, { once: true });
  touch();
  child.stdin.on('error', () => {});
  child.stdin.end(run.stdin);
  child.stderr.on('data', (chunk: Buffer) => {
    touch();
    options.onStderr(chunk);
  });
  let failedWrite = false;
  // The last chunk is stored before the pack counts as finished.
  let storing: Promise<void> = Promise.resolve();
  const stdoutDone = new Promise<void>((resolve) => {
    child.stdout.once('end', resolve);
    child.stdout.once('error', (err) => {
      failedWrite = true;
      log.warn('pack cache: reading pack-objects failed', { reason: describeError(err) });
      resolve();
    });
  });
  // The spawn helper's stdout reads into one reused buffer (a view valid until resume()).
  const onChunk = (chunk: Buffer, isView: boolean): false => {
    touch();
    child.stdout.pause();
    // Chained, not only paused: Node resumes a child's stdout itself when the child exits
    // (child_process' flushStdio), so the last chunk can come while the one before is still
    // being written, and would be written at the same offset. (A view comes only after resume().)
    storing = storing
      .then(() => store(chunk, isView))
      .then(() => {
        child.stdout.resume();
      });
    return false;
  };
  if (child.readStdout) child.readStdout((view) => onChunk(view, true));
  else child.stdout.on('data', (chunk: Buffer) => onChunk(chunk, false));
  const store = async (chunk: Buffer, isView: boolean): Promise<void> => {
    options.onBytes(chunk.length);
    if (pack.cacheable && options.reserve(chunk.length) && (await pack.writeToFile(chunk))) return;
    if (pack.cacheable) {
      log.info('pack cache: a pack is not cached (budget reached or the disk full): it is streamed only', {
        at: pack.fileBytes,
      });
      pack.stopCaching();
    }
    pack.keep(isView ? Buffer.from(chunk) : chunk);
    while (!pack.windowHasRoom && pack.readers.size > 0) await pack.changed();
    if (pack.readers.size === 0) kill('nobody reads a pack that is not cached');
  };
  const exit = await child.exited;
  await stdoutDone;
  await storing;
  clearTimeout(idle);
  options.signal.removeEventListener('abort', onAbort);
  const code = exit.code ?? 128;
  if (code === 0 && !failedWrite) pack.finish('done', 0);
  else pack.finish('failed', code === 0 ? 128 : code);
}
