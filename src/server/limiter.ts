import { formatDuration } from '../config/values.js';
import { GitFcgiError } from '../errors.js';

export interface LimiterSettings {
  readonly maxChildren: number;
  readonly queue: number;
  readonly queueTimeoutMs: number;
}

/** Gives a slot back; safe to call more than once. */
export type Release = () => void;

interface Waiter {
  readonly grant: (release: Release) => void;
}

/**
 * At most `maxChildren` backends at once; further requests wait first come, first served in a
 * queue of at most `queue`, each for at most `queueTimeoutMs`. A waiter whose client leaves
 * leaves the queue. Settings can change at any time (SIGHUP): a smaller limit takes effect as
 * running backends finish, a larger one admits waiters at once.
 */
export class Limiter {
  private running = 0;
  private peak = 0;
  private readonly waiting: Waiter[] = [];

  constructor(private settings: LimiterSettings) {}

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** The most backends that ever ran at once. */
  get maxActiveReached(): number {
    return this.peak;
  }

  update(settings: LimiterSettings): void {
    this.settings = settings;
    this.admit();
  }

  /**
   * Resolves with a release function once a slot is free. Rejects with ERR_OVERLOADED when the
   * queue is full, ERR_QUEUE_TIMEOUT after waiting too long, or the signal's reason.
   */
  acquire(signal: AbortSignal): Promise<Release> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    if (this.running < this.settings.maxChildren && this.waiting.length === 0) {
      return Promise.resolve(this.take());
    }
    if (this.waiting.length >= this.settings.queue) {
      return Promise.reject(
        busy(
          'ERR_OVERLOADED',
          `all backends busy (max_children = ${this.settings.maxChildren}) and the queue full (queue = ${this.settings.queue})`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const { queueTimeoutMs } = this.settings;
      const leave = (err: unknown): void => {
        const i = this.waiting.indexOf(waiter);
        if (i === -1) return;
        this.waiting.splice(i, 1);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        reject(err);
      };
      const onAbort = (): void => leave(signal.reason);
      const timer = setTimeout(() => {
        const waited = formatDuration(queueTimeoutMs);
        const busyWith = `max_children = ${this.settings.maxChildren}`;
        leave(
          busy(
            'ERR_QUEUE_TIMEOUT',
            `no backend free (${busyWith}) after ${waited} in the queue (queue_timeout)`,
          ),
        );
      }, queueTimeoutMs);
      const waiter: Waiter = {
        grant: (release) => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      this.waiting.push(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private take(): Release {
    this.running++;
    this.peak = Math.max(this.peak, this.running);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      this.admit();
    };
  }

  private admit(): void {
    while (this.running < this.settings.maxChildren) {
      const next = this.waiting.shift();
      if (next === undefined) return;
      next.grant(this.take());
    }
  }
}

/** Seconds a refused client is told to wait: long enough for running fetches to make room. */
const RETRY_AFTER_S = 5;

function busy(code: 'ERR_OVERLOADED' | 'ERR_QUEUE_TIMEOUT', message: string): GitFcgiError {
  return new GitFcgiError(code, message, { status: 503, headers: [['Retry-After', String(RETRY_AFTER_S)]] });
}
