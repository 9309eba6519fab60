import { createHash } from 'node:crypto';

/**
 * Remembers user+password pairs that verified, for a short while, so that bcrypt does not cost
 * every request of a clone (git sends the credentials on each of them). Only a hash of the pair
 * is kept; a new htpasswd generation empties the cache.
 */
export class CredentialCache {
  private readonly verified = new Map<string, number>();
  private generation = -1;

  constructor(
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  private key(user: string, password: string): string {
    return createHash('sha256').update(user).update('\0').update(password).digest('base64');
  }

  private sync(generation: number): void {
    if (generation === this.generation) return;
    this.verified.clear();
    this.generation = generation;
  }

  has(user: string, password: string, generation: number): boolean {
    this.sync(generation);
    const key = this.key(user, password);
    const expires = this.verified.get(key);
    if (expires === undefined) return false;
    if (expires > this.now()) return true;
    this.verified.delete(key);
    return false;
  }

  add(user: string, password: string, generation: number, ttlMs: number): void {
    this.sync(generation);
    if (ttlMs <= 0) return;
    const key = this.key(user, password);
    this.verified.delete(key);
    this.verified.set(key, this.now() + ttlMs);
    // Maps iterate in insertion order: the first key is the oldest.
    for (const oldest of this.verified.keys()) {
      if (this.verified.size <= this.maxEntries) break;
      this.verified.delete(oldest);
    }
  }
}
