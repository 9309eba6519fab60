/**
 * Failed logins per client address in a sliding window. An address that reached the limit is
 * refused (429) without checking its password until its oldest failure leaves the window.
 */
export class FailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly now: () => number = Date.now,
    private readonly maxAddresses = 100_000,
  ) {}

  private recent(address: string): number[] {
    const since = this.now() - this.windowMs;
    const times = (this.failures.get(address) ?? []).filter((t) => t > since);
    if (times.length === 0) this.failures.delete(address);
    else this.failures.set(address, times);
    return times;
  }

  /** 0 when `address` may try; otherwise how long until it may. */
  retryAfterMs(address: string): number {
    const times = this.recent(address);
    if (times.length < this.max) return 0;
    const oldest = times[times.length - this.max] ?? this.now();
    return Math.max(1, oldest + this.windowMs - this.now());
  }

  recordFailure(address: string): void {
    const times = this.recent(address);
    times.push(this.now());
    // Keep only what the decision needs, so one noisy address costs bounded memory.
    this.failures.set(address, times.slice(-this.max));
    if (this.failures.size > this.maxAddresses) {
      for (const key of [...this.failures.keys()]) this.recent(key);
      const first = this.failures.keys().next();
      if (this.failures.size > this.maxAddresses && first.done !== true) this.failures.delete(first.value);
    }
  }
}
