import { setTimeout as sleep } from 'node:timers/promises';

export class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
}

/** Settles like `p`, or rejects with a DeadlineError naming `what` after `ms`. Does not cancel `p`. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

export interface WaitForOptions {
  readonly timeoutMs: number;
  readonly intervalMs?: number;
  readonly what: string;
}

/**
 * Polls `predicate` until it returns true. A predicate that throws ends the wait with that error, so it can
 * fail fast (e.g. "the process exited"); a predicate that hangs is cut off by the same deadline.
 */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  { timeoutMs, intervalMs = 25, what }: WaitForOptions,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) throw new DeadlineError(`timed out after ${timeoutMs} ms waiting for ${what}`);
    if (await withDeadline(Promise.resolve(predicate()), left, `waiting for ${what}`)) return;
    await sleep(Math.min(intervalMs, Math.max(0, end - Date.now())));
  }
}
