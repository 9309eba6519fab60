/**
 * Anything that can run code when a test or suite ends: a node:test `TestContext`, or `{ after }` from a suite.
 * Helpers accept this so they can register their own cleanup right after creating something.
 */
export interface Cleanup {
  after(fn: () => unknown): void;
}

type CleanupFn = () => unknown;

// node:test runs `after` hooks first-in-first-out and skips the remaining hooks once one throws. Helpers need
// the opposite: last-in-first-out (stop nginx before deleting its prefix) and every step attempted. So all
// helper cleanups for one Cleanup object share a single hook that runs them in reverse and reports failures
// together. Pass the same object (e.g. `t`) to every helper to get one ordered stack.
const stacks = new WeakMap<Cleanup, CleanupFn[]>();

export function defer(t: Cleanup, fn: CleanupFn): void {
  const existing = stacks.get(t);
  if (existing !== undefined) {
    existing.push(fn);
    return;
  }
  const stack: CleanupFn[] = [fn];
  stacks.set(t, stack);
  t.after(async () => {
    stacks.delete(t);
    const errors: unknown[] = [];
    for (let step = stack.pop(); step !== undefined; step = stack.pop()) {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanup steps failed`);
  });
}

/**
 * A Cleanup for fixtures a suite creates in `before()`: node:test's `after` must be called while
 * the describe body runs, so call this there (`const suite = suiteCleanup(after)`); everything
 * registered later runs, newest first, when the suite ends.
 */
export function suiteCleanup(register: (fn: () => unknown) => void): Cleanup {
  const steps: CleanupFn[] = [];
  register(async () => {
    for (let step = steps.pop(); step !== undefined; step = steps.pop()) await step();
  });
  return { after: (fn) => steps.push(fn) };
}
