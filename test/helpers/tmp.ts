import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defer, type Cleanup } from './cleanup.js';

/** A fresh directory under the OS temp dir, removed recursively when `t` cleans up. */
export async function tmpDir(t: Cleanup, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `git-fcgi-${prefix}`));
  // Retries cover a process that is still writing into the tree while it is being removed.
  defer(t, () => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }));
  return dir;
}
