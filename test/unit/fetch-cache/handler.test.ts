import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { describe, test } from 'node:test';
import type { Dependencies } from '../../../src/advertisement/depends-on.js';
import { isLocalFilesystem } from '../../../src/advertisement/depends-on.js';
import { loadConfig } from '../../../src/config/load.js';
import { GitFcgiError } from '../../../src/errors.js';
import type { Exchange, HeaderList, ResponseSink } from '../../../src/exchange.js';
import { FetchResponseCache, type FetchCapture } from '../../../src/fetch-cache/fetch-cache.js';
import {
  createRequestHandler,
  type HandlerDeps,
  type HandlerSettings,
} from '../../../src/request/handle-request.js';
import { withDeadline } from '../../helpers/deadline.js';
import {
  BACKEND,
  bareRepository,
  bodyIn,
  DEADLINE_MS,
  fetchBody,
  quietLog,
  type Fixture,
} from './fixtures.js';

/** Records the runs the handler sets up, so that the test can ask whether they are still announced. */
class RecordingCache extends FetchResponseCache {
  readonly keys: string[] = [];

  override capture(key: string, repoDir: string, dependsOn: Dependencies): FetchCapture {
    this.keys.push(key);
    return super.capture(key, repoDir, dependsOn);
  }
}

/** A response that keeps what the handler sends. */
class RecordingSink implements ResponseSink {
  status: number | null = null;
  ended = false;
  headersSent = false;
  readonly pending = 0;
  writeHead(status: number, _headers: HeaderList): void {
    this.status = status;
    this.headersSent = true;
  }
  write(): boolean {
    return true;
  }
  onceDrain(cb: () => void): void {
    cb();
  }
  end(): void {
    this.ended = true;
  }
  abort(): void {
    this.ended = true;
  }
}

const BODY = fetchBody('5'.repeat(40), ['6'.repeat(40)]);

function fetchRequest(signal: AbortSignal): { exchange: Exchange; sink: RecordingSink } {
  const sink = new RecordingSink();
  const params = new Map([
    ['REQUEST_METHOD', 'POST'],
    ['PATH_INFO', '/r.git/git-upload-pack'],
    ['CONTENT_TYPE', 'application/x-git-upload-pack-request'],
    ['CONTENT_LENGTH', String(BODY.length)],
    ['HTTP_GIT_PROTOCOL', 'version=2'],
    ['REMOTE_ADDR', '192.0.2.1'],
  ]);
  return { exchange: { params, body: bodyIn([BODY]), response: sink, signal, transport: 'fastcgi' }, sink };
}

function settingsFor(fixture: Fixture): HandlerSettings {
  return {
    ...loadConfig(null, { projectRoot: fixture.root, exportAll: true }),
    backend: BACKEND,
    serverSoftware: 'git-fcgi/test',
    home: null,
    servingUser: 'git',
  };
}

/**
 * How the wait for a backend slot can end without a slot (HandlerDeps.acquireSlot): busy, the
 * queue timing out, or the client gone (the limiter rejects with the signal's reason).
 */
const refusals: Array<[string, (client: AbortController) => unknown]> = [
  ['all backends busy and the queue full', () => new GitFcgiError('ERR_OVERLOADED', 'busy', { status: 503 })],
  ['too long in the queue', () => new GitFcgiError('ERR_QUEUE_TIMEOUT', 'no backend free', { status: 503 })],
  [
    'the client gone while it waits',
    (client) => {
      client.abort(new Error('client went away'));
      return client.signal.reason;
    },
  ],
];

describe('fetch cache in the request handler', { skip: !isLocalFilesystem(tmpdir()) }, () => {
  for (const [what, refusal] of refusals) {
    test(`a fetch that gets no backend slot (${what}) does not stay in flight`, async (t) => {
      const fixture = await bareRepository(t);
      const cache = new RecordingCache(1 << 20);
      let slotsAsked = 0;
      let refuse = true;
      const client = new AbortController();
      const deps: HandlerDeps = {
        settings: () => settingsFor(fixture),
        log: quietLog,
        acquireSlot: () => {
          slotsAsked++;
          return refuse ? Promise.reject(refusal(client)) : Promise.resolve(() => {});
        },
        spawn: () =>
          Promise.reject(new GitFcgiError('ERR_BACKEND_SPAWN', 'no git in this test', { status: 500 })),
        events: {
          accepted: () => {},
          spawned: () => {},
          servedFromCache: () => {},
          servedFromFetchCache: () => {},
          finished: () => {},
        },
        refCache: () => null,
        gitInstalls: fixture.installs,
        fetchCache: () => cache,
      };
      const handler = createRequestHandler(deps);

      const first = fetchRequest(client.signal);
      await withDeadline(handler(first.exchange), DEADLINE_MS, 'the refused request');
      assert.equal(slotsAsked, 1);
      assert.equal(cache.keys.length, 1, 'the fetch cache applied: a run was set up');
      assert.ok(first.sink.ended);
      assert.equal(cache.inFlight(cache.keys[0] ?? ''), undefined, 'the run that never ran is not announced');

      // So an identical request runs git (here: asks for a slot) instead of waiting for that run.
      refuse = false;
      const secondClient = new AbortController();
      // Were it left waiting for that run: it ends with the test.
      t.after(() => secondClient.abort(new Error('test over')));
      const second = fetchRequest(secondClient.signal);
      await withDeadline(handler(second.exchange), DEADLINE_MS, 'an identical request');
      assert.equal(slotsAsked, 2);
      assert.equal(second.sink.status, 500, 'the spawn failure of this test');
    });
  }
});
