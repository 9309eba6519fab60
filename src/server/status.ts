import type { FetchCacheFigures } from '../fetch-cache/fetch-cache.js';
import type { PackCacheFigures } from '../pack-cache/pack-cache.js';
import type { RequestEvents, RequestOutcome } from '../request/handle-request.js';

/** The limiter's live figures, read when the page is rendered. */
export interface LoadFigures {
  readonly active: number;
  readonly queued: number;
  readonly maxActiveReached: number;
  readonly maxChildren: number;
  readonly queue: number;
  /** The pack cache's figures; null when it is off. */
  readonly pack: PackCacheFigures | null;
  /** What the fetch cache holds now; null when it is off. */
  readonly fetch: FetchCacheFigures | null;
}

/** One snapshot of everything the status page shows. */
export interface StatusSnapshot {
  readonly startTime: Date;
  readonly uptimeS: number;
  readonly accepted: number;
  readonly active: number;
  readonly queued: number;
  readonly maxActiveReached: number;
  readonly maxChildren: number;
  readonly queue: number;
  readonly spawned: number;
  /** Ref advertisements answered from the cache, without a backend. */
  readonly refCacheHits: number;
  /** Fetches answered from the fetch cache: kept answers, and answers of an identical request's run. */
  readonly fetchCacheHits: number;
  readonly fetchCacheCoalesced: number;
  /** What the fetch cache holds now; null when it is off. */
  readonly fetchCache: FetchCacheFigures | null;
  /** The pack cache's figures; null when it is off. */
  readonly pack: PackCacheFigures | null;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Responses, and their body bytes, that git-fcgi-splice moved in part (bytesOut has them too). */
  readonly splicedResponses: number;
  readonly splicedBytes: number;
  /** By HTTP status, including git-fcgi's own 4xx/5xx and 499 for clients that left. */
  readonly responses: Readonly<Record<string, number>>;
  /** By git service (git-upload-pack, git-receive-pack, ..., dumb; `-` when refused before). */
  readonly services: Readonly<Record<string, number>>;
}

/**
 * Counters fed by the request handler's events (a request accepted, a backend spawned, the
 * access-log outcome of each request), never computed on the side.
 */
export class ServerStats implements RequestEvents {
  readonly startTime = new Date();
  private acceptedCount = 0;
  private spawnedCount = 0;
  private cacheHits = 0;
  private fetchHits = 0;
  private fetchCoalesced = 0;
  private bytesInTotal = 0;
  private bytesOutTotal = 0;
  private splicedCount = 0;
  private splicedTotal = 0;
  private readonly byStatus = new Map<string, number>();
  private readonly byService = new Map<string, number>();

  accepted(): void {
    this.acceptedCount++;
  }

  spawned(): void {
    this.spawnedCount++;
  }

  servedFromCache(): void {
    this.cacheHits++;
  }

  servedFromFetchCache(how: 'hit' | 'coalesced'): void {
    if (how === 'hit') this.fetchHits++;
    else this.fetchCoalesced++;
  }

  finished(outcome: RequestOutcome): void {
    this.bytesInTotal += outcome.bytesIn;
    this.bytesOutTotal += outcome.bytesOut;
    if (outcome.splicedBytes > 0) {
      this.splicedCount++;
      this.splicedTotal += outcome.splicedBytes;
    }
    bump(this.byStatus, String(outcome.status));
    bump(this.byService, outcome.service);
  }

  snapshot(load: LoadFigures, now = new Date()): StatusSnapshot {
    return {
      startTime: this.startTime,
      uptimeS: Math.floor((now.getTime() - this.startTime.getTime()) / 1000),
      accepted: this.acceptedCount,
      active: load.active,
      queued: load.queued,
      maxActiveReached: load.maxActiveReached,
      maxChildren: load.maxChildren,
      queue: load.queue,
      spawned: this.spawnedCount,
      refCacheHits: this.cacheHits,
      fetchCacheHits: this.fetchHits,
      fetchCacheCoalesced: this.fetchCoalesced,
      fetchCache: load.fetch,
      pack: load.pack,
      bytesIn: this.bytesInTotal,
      bytesOut: this.bytesOutTotal,
      splicedResponses: this.splicedCount,
      splicedBytes: this.splicedTotal,
      responses: sorted(this.byStatus),
      services: sorted(this.byService),
    };
  }
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function sorted(map: ReadonlyMap<string, number>): Record<string, number> {
  return Object.fromEntries([...map].sort(([a], [b]) => a.localeCompare(b)));
}
