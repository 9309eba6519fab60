import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderStatus, statusFormat } from '../../../src/server/status-format.js';
import { ServerStats } from '../../../src/server/status.js';

function sample() {
  const stats = new ServerStats();
  stats.accepted();
  stats.accepted();
  stats.spawned();
  stats.finished({ status: 200, service: 'git-upload-pack', bytesIn: 10, bytesOut: 300, splicedBytes: 0 });
  stats.finished({ status: 404, service: '-', bytesIn: 0, bytesOut: 0, splicedBytes: 0 });
  stats.servedFromFetchCache('hit');
  stats.servedFromFetchCache('hit');
  stats.servedFromFetchCache('coalesced');
  const load = {
    active: 1,
    queued: 2,
    maxActiveReached: 3,
    maxChildren: 4,
    queue: 16,
    pack: null,
    fetch: { entries: 5, bytes: 6000 },
  };
  return stats.snapshot(load, new Date(stats.startTime.getTime() + 5500));
}

describe('status page', () => {
  it('chooses the format from the query string like php-fpm', () => {
    assert.equal(statusFormat(''), 'text');
    assert.equal(statusFormat('json'), 'json');
    assert.equal(statusFormat('full&json'), 'json');
    assert.equal(statusFormat('openmetrics'), 'openmetrics');
    assert.equal(statusFormat('xml'), 'text');
  });

  it('counts what the events reported', () => {
    const s = sample();
    assert.equal(s.uptimeS, 5);
    assert.equal(s.accepted, 2);
    assert.equal(s.spawned, 1);
    assert.equal(s.bytesIn, 10);
    assert.equal(s.bytesOut, 300);
    assert.deepEqual(s.responses, { '200': 1, '404': 1 });
    assert.deepEqual(s.services, { '-': 1, 'git-upload-pack': 1 });
  });

  it('text: one aligned "name: value" line per figure', () => {
    const text = renderStatus(sample(), 'text');
    assert.match(text, /^start time: +\d{4}-\d\d-\d\dT/);
    assert.match(text, /^accepted requests: +2$/m);
    assert.match(text, /^active backends: +1$/m);
    assert.match(text, /^queued requests: +2$/m);
    assert.match(text, /^responses 404: +1$/m);
    assert.match(text, /^service git-upload-pack: +1$/m);
    assert.match(text, /^fetch cache hits: +2$/m);
    assert.match(text, /^fetch cache coalesced: +1$/m);
    assert.match(text, /^fetch cache entries: +5$/m);
  });

  it('json: one object', () => {
    const json = JSON.parse(renderStatus(sample(), 'json')) as Record<string, unknown>;
    assert.equal(json.accepted, 2);
    assert.equal(json.max_active_reached, 3);
    assert.deepEqual(json.responses, { '200': 1, '404': 1 });
    assert.equal(json.fetch_cache_hits, 2);
    assert.deepEqual(json.fetch_cache, { entries: 5, bytes: 6000 });
  });

  it('openmetrics: TYPE before samples, counters end in _total, # EOF last', () => {
    const text = renderStatus(sample(), 'openmetrics');
    assert.ok(text.endsWith('\n# EOF\n'));
    const typed = new Map<string, string>();
    for (const line of text.trimEnd().split('\n')) {
      const type = /^# TYPE (\S+) (counter|gauge)$/.exec(line);
      if (type?.[1] !== undefined && type[2] !== undefined) {
        typed.set(type[1], type[2]);
        continue;
      }
      if (line.startsWith('#')) {
        assert.match(line, /^# (HELP \S+ .+|EOF)$/);
        continue;
      }
      const sampleLine = /^(\w+?)(_total)?(\{\w+="[^"]*"\})? (\d+(\.\d+)?)$/.exec(line);
      assert.ok(sampleLine?.[1] !== undefined, `not a sample line: ${line}`);
      const kind = typed.get(sampleLine[1]);
      assert.ok(kind !== undefined, `no TYPE before ${line}`);
      assert.equal(sampleLine[2] !== undefined, kind === 'counter', line);
    }
    assert.match(text, /^git_fcgi_responses_total\{code="404"\} 1$/m);
    assert.match(text, /^git_fcgi_active_backends 1$/m);
    assert.match(text, /^git_fcgi_fetch_cache_hits_total 2$/m);
    assert.match(text, /^git_fcgi_fetch_cache_coalesced_total 1$/m);
    assert.match(text, /^git_fcgi_fetch_cache_bytes 6000$/m);
  });
});
