import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { GitFcgiError } from '../errors.js';

/**
 * Writes the daemon's pid to `path` (as spawn-fcgi -P does) and returns how to remove it at
 * exit. Removal leaves a file that no longer holds our pid alone (a newer instance wrote it) and
 * reports, rather than throws, when it cannot remove the file.
 */
export function writePidFile(path: string): () => string | null {
  const pid = String(process.pid);
  try {
    writeFileSync(path, `${pid}\n`, { mode: 0o644 });
  } catch (err) {
    throw new GitFcgiError('ERR_CONFIG', `cannot write pid_file ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return () => {
    try {
      if (readFileSync(path, 'utf8').trim() !== pid) return null;
      unlinkSync(path);
      return null;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'ENOENT' ? null : `cannot remove pid_file ${path}: ${(err as Error).message}`;
    }
  };
}
