import type { StatusSnapshot } from './status.js';

export type StatusFormat = 'text' | 'json' | 'openmetrics';

export const CONTENT_TYPES: Readonly<Record<StatusFormat, string>> = {
  text: 'text/plain; charset=utf-8',
  json: 'application/json',
  openmetrics: 'application/openmetrics-text; version=1.0.0; charset=utf-8',
};

/** php-fpm's convention: `?json`, `?openmetrics`, anything else is text. */
export function statusFormat(queryString: string): StatusFormat {
  const names = new Set(queryString.split('&').map((p) => p.split('=')[0]));
  if (names.has('json')) return 'json';
  if (names.has('openmetrics')) return 'openmetrics';
  return 'text';
}

export function renderStatus(s: StatusSnapshot, format: StatusFormat): string {
  if (format === 'json') return renderJson(s);
  if (format === 'openmetrics') return renderOpenMetrics(s);
  return renderText(s);
}

function renderText(s: StatusSnapshot): string {
  const rows: Array<[string, string | number]> = [
    ['start time', s.startTime.toISOString()],
    ['start since', s.uptimeS],
    ['accepted requests', s.accepted],
    ['active backends', s.active],
    ['queued requests', s.queued],
    ['max active reached', s.maxActiveReached],
    ['max children', s.maxChildren],
    ['queue size', s.queue],
    ['spawned backends', s.spawned],
    ['ref cache hits', s.refCacheHits],
    ['fetch cache hits', s.fetchCacheHits],
    ['fetch cache coalesced', s.fetchCacheCoalesced],
    ...(s.fetchCache === null
      ? []
      : ([
          ['fetch cache entries', s.fetchCache.entries],
          ['fetch cache bytes', s.fetchCache.bytes],
        ] as Array<[string, number]>)),
    ...(s.pack === null
      ? []
      : ([
          ['pack cache hits', s.pack.hits],
          ['pack cache misses', s.pack.misses],
          ['pack cache coalesced', s.pack.coalesced],
          ['pack cache bypassed', s.pack.bypassed],
          ['pack cache bytes served', s.pack.bytesServed],
          ['pack cache bytes generated', s.pack.bytesGenerated],
          ['pack cache entries', s.pack.entries],
          ['pack cache disk bytes', s.pack.diskBytes],
        ] as Array<[string, number]>)),
    ['bytes in', s.bytesIn],
    ['bytes out', s.bytesOut],
    ['spliced responses', s.splicedResponses],
    ['spliced bytes', s.splicedBytes],
    ...Object.entries(s.responses).map(([code, n]): [string, number] => [`responses ${code}`, n]),
    ...Object.entries(s.services).map(([name, n]): [string, number] => [`service ${name}`, n]),
  ];
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}\n`).join('');
}

function renderJson(s: StatusSnapshot): string {
  return `${JSON.stringify({
    start_time: s.startTime.toISOString(),
    start_since: s.uptimeS,
    accepted: s.accepted,
    active: s.active,
    queued: s.queued,
    max_active_reached: s.maxActiveReached,
    max_children: s.maxChildren,
    queue_size: s.queue,
    spawned: s.spawned,
    ref_cache_hits: s.refCacheHits,
    fetch_cache_hits: s.fetchCacheHits,
    fetch_cache_coalesced: s.fetchCacheCoalesced,
    ...(s.fetchCache === null
      ? {}
      : { fetch_cache: { entries: s.fetchCache.entries, bytes: s.fetchCache.bytes } }),
    ...(s.pack === null
      ? {}
      : {
          pack_cache: {
            hits: s.pack.hits,
            misses: s.pack.misses,
            coalesced: s.pack.coalesced,
            bypassed: s.pack.bypassed,
            bytes_served: s.pack.bytesServed,
            bytes_generated: s.pack.bytesGenerated,
            entries: s.pack.entries,
            disk_bytes: s.pack.diskBytes,
          },
        }),
    bytes_in: s.bytesIn,
    bytes_out: s.bytesOut,
    spliced_responses: s.splicedResponses,
    spliced_bytes: s.splicedBytes,
    responses: s.responses,
    services: s.services,
  })}\n`;
}

/** OpenMetrics text (what Prometheus scrapes): a TYPE and HELP line per family, `# EOF` last. */
function renderOpenMetrics(s: StatusSnapshot): string {
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter', help: string, samples: string[]): void => {
    out.push(`# TYPE git_fcgi_${name} ${type}`, `# HELP git_fcgi_${name} ${help}`, ...samples);
  };
  const counter = (name: string, help: string, value: number): void =>
    family(name, 'counter', help, [`git_fcgi_${name}_total ${value}`]);
  const gauge = (name: string, help: string, value: number): void =>
    family(name, 'gauge', help, [`git_fcgi_${name} ${value}`]);
  gauge('start_time_seconds', 'When the daemon started (Unix time).', s.startTime.getTime() / 1000);
  counter('accepted_requests', 'Git requests accepted.', s.accepted);
  gauge('active_backends', 'Backends running now.', s.active);
  gauge('queued_requests', 'Requests waiting for a backend now.', s.queued);
  gauge('max_active_backends', 'Most backends that ran at once.', s.maxActiveReached);
  gauge('max_children', 'Configured limit of backends at once.', s.maxChildren);
  gauge('queue_size', 'Configured length of the wait queue.', s.queue);
  counter('spawned_backends', 'Backends started.', s.spawned);
  counter('ref_cache_hits', 'Ref advertisements answered from the cache, without a backend.', s.refCacheHits);
  counter('fetch_cache_hits', 'Fetches answered from a kept answer, without a backend.', s.fetchCacheHits);
  counter(
    'fetch_cache_coalesced',
    'Fetches answered with the answer git gave an identical request in flight, without a backend of their own.',
    s.fetchCacheCoalesced,
  );
  if (s.fetchCache !== null) {
    gauge('fetch_cache_entries', 'Fetch answers kept now.', s.fetchCache.entries);
    gauge('fetch_cache_bytes', 'Bytes the kept fetch answers count against fetch_cache.', s.fetchCache.bytes);
  }
  if (s.pack !== null) {
    counter('pack_cache_hits', 'Packs served from a finished cached pack.', s.pack.hits);
    counter('pack_cache_misses', 'Packs that ran git pack-objects for the cache.', s.pack.misses);
    counter(
      'pack_cache_coalesced',
      'Packs served from a pack being generated for another request.',
      s.pack.coalesced,
    );
    counter(
      'pack_cache_bypassed',
      'Packs git made itself (the cache declined: see the debug log).',
      s.pack.bypassed,
    );
    counter(
      'pack_cache_served_bytes',
      'Pack bytes served from the cache (hits and coalesced).',
      s.pack.bytesServed,
    );
    counter(
      'pack_cache_generated_bytes',
      'Pack bytes git pack-objects made for the cache.',
      s.pack.bytesGenerated,
    );
    gauge('pack_cache_entries', 'Packs on disk now (in use or kept).', s.pack.entries);
    gauge('pack_cache_disk_bytes', 'Bytes of the cached packs on disk now.', s.pack.diskBytes);
  }
  counter('received_bytes', 'Request body bytes passed to backends.', s.bytesIn);
  counter('sent_bytes', 'Response body bytes sent.', s.bytesOut);
  counter(
    'spliced_responses',
    'Responses whose rest git-fcgi-splice moved into the FastCGI connection, past the event loop.',
    s.splicedResponses,
  );
  counter(
    'spliced_bytes',
    'Response body bytes git-fcgi-splice moved (counted in sent_bytes too).',
    s.splicedBytes,
  );
  family(
    'responses',
    'counter',
    'Finished requests by HTTP status (499: the client left).',
    Object.entries(s.responses).map(([code, n]) => `git_fcgi_responses_total{code="${code}"} ${n}`),
  );
  family(
    'service_requests',
    'counter',
    'Finished requests by git service.',
    Object.entries(s.services).map(
      ([name, n]) => `git_fcgi_service_requests_total{service="${escapeLabel(name)}"} ${n}`,
    ),
  );
  return `${out.join('\n')}\n# EOF\n`;
}

function escapeLabel(value: string): string {
  return value.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, '\\n');
}
