import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { GitFcgiError } from '../../../src/errors.js';
import type { BackendOutput, BackendOutputEvents } from '../../../src/request/backend-output.js';
import type { CgiHead } from '../../../src/request/cgi-headers.js';
import { BackendRelay, type RelayOptions, type RelayResult } from '../../../src/request/backend-relay.js';
import {
  FakeBackend,
  abortListeners,
  fakeExchange,
  fakeLog,
  listenedEvents,
  settle,
  type FakeExchange,
} from './relay-fakes.js';

const HEAD = 'Status: 200 OK\r\nContent-Type: application/x-git-upload-pack-result\r\n\r\n';
const KILL_GRACE_MS = 2000;
const IDLE_MS = 1000;

interface Run {
  readonly relay: BackendRelay;
  readonly backend: FakeBackend;
  readonly exchange: FakeExchange;
  readonly log: ReturnType<typeof fakeLog>;
  readonly result: Promise<RelayResult>;
  /** The result if the promise has settled, else null. */
  settled(): RelayResult | null;
}

function start(
  options: Partial<RelayOptions> = {},
  parts: { backend?: FakeBackend; exchange?: FakeExchange } = {},
): Run {
  const backend = parts.backend ?? new FakeBackend();
  const exchange = parts.exchange ?? fakeExchange();
  const log = fakeLog();
  const relay = new BackendRelay(exchange, backend, {
    idleTimeoutMs: IDLE_MS,
    killGraceMs: KILL_GRACE_MS,
    contentLength: null,
    log,
    ...options,
  });
  let value: RelayResult | null = null;
  const result = relay.run().then((r) => (value = r));
  return { relay, backend, exchange, log, result, settled: () => value };
}

function failures(run: Run): string[] {
  return run.log.lines.filter((l) => l.message === 'request failed').map((l) => String(l.meta?.reason));
}

function terminalEvents(exchange: FakeExchange): string[] {
  return exchange.response.events.filter((e) => e.kind === 'end' || e.kind === 'abort').map((e) => e.kind);
}

/** Mocked setTimeout and Date, so idle_timeout can be stepped through. */
function mockTime(t: TestContext): (ms: number) => void {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  return (ms) => t.mock.timers.tick(ms);
}

describe('BackendRelay outcomes', () => {
  test('done: head with the first body byte, body in order, END_REQUEST last, result once reaped', async () => {
    const run = start();
    const { backend, exchange } = run;
    exchange.body.end('0032want');
    backend.stdout.write(HEAD);
    await settle();
    assert.equal(exchange.response.headersSent, false, 'no head before the first body byte');
    backend.stdout.write('PACK');
    backend.stdout.end('data');
    await settle();
    assert.equal(backend.stdinBytes, '0032want');
    assert.ok(backend.stdinEnded);
    assert.equal(exchange.response.ended, false, 'no end before the exit');
    backend.exit(0);
    const { head, ...result } = await run.result;
    assert.deepEqual(result, { status: 200, bytesIn: 8, bytesOut: 8, exit: 0 });
    // The head it went out with, for a cache that keeps the answer; no view into a chunk kept.
    assert.equal(head?.status, 200);
    assert.deepEqual(head.headers, [['Content-Type', 'application/x-git-upload-pack-result']]);
    assert.deepEqual(
      exchange.response.events.map((e) => e.kind),
      ['head', 'write', 'write', 'end'],
    );
    assert.equal(exchange.response.body, 'PACKdata');
    assert.deepEqual(backend.kills, []);
    assert.deepEqual(failures(run), []);
  });

  test("done: git's own refusal (a 404 head, exit 1) is passed on as it is", async () => {
    const run = start();
    run.exchange.body.end();
    run.backend.finish('Status: 404 Not Found\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\n\r\n', 1);
    const result = await run.result;
    assert.equal(result.status, 404);
    assert.equal(result.exit, 1);
    assert.equal(result.error, undefined);
    assert.equal(run.exchange.response.status, 404);
    assert.deepEqual(terminalEvents(run.exchange), ['end']);
  });

  test('backend-failed: output that ends before the head is a 502 answer', async () => {
    const run = start();
    run.exchange.body.end();
    run.backend.stdout.end('Status: 200 OK\r\n');
    run.backend.exit(128);
    const result = await run.result;
    assert.equal(result.status, 502);
    assert.match(result.error ?? '', /^ERR_CGI_HEADER: backend ended \(exit 128\) before its headers/);
    assert.equal(run.exchange.response.status, 502);
    assert.deepEqual(terminalEvents(run.exchange), ['end']);
    assert.equal(failures(run).length, 1);
  });

  test('backend-failed: a failing exit after output cuts the response off instead of ending it', async () => {
    const run = start();
    run.exchange.body.end();
    run.backend.stdout.end(`${HEAD}PACK`);
    run.backend.exit(null, 'SIGSEGV');
    const result = await run.result;
    assert.equal(result.status, 502);
    assert.equal(result.exit, 'SIGSEGV');
    assert.match(result.error ?? '', /^ERR_BACKEND_EXIT: backend failed \(SIGSEGV\)/);
    assert.deepEqual(terminalEvents(run.exchange), ['abort']);
    assert.equal(run.exchange.response.body, 'PACK');
  });

  test('backend-failed: a head the parser refuses is 502 at once: group killed, streams destroyed', async () => {
    const run = start();
    run.backend.stdout.write('no colon here\r\n\r\n');
    await settle();
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
    assert.ok(run.backend.stdout.destroyed);
    assert.ok(run.backend.stdin.destroyed);
    assert.equal(run.exchange.response.status, 502);
    assert.equal(run.settled(), null, 'the result waits for the backend to be reaped');
    run.backend.exit(null, 'SIGTERM');
    const result = await run.result;
    assert.equal(result.status, 502);
    assert.equal(result.exit, 'SIGTERM');
    assert.match(result.error ?? '', /^ERR_CGI_HEADER: invalid CGI response/);
  });

  test('backend-failed: stdout failing is a 502', async () => {
    const run = start();
    run.backend.stdout.destroy(Object.assign(new Error('read EIO'), { code: 'EIO' }));
    await settle();
    run.backend.exit(null, 'SIGTERM');
    const result = await run.result;
    assert.equal(result.status, 502);
    assert.equal(result.error, 'ERR_BACKEND_EXIT: EIO: read EIO');
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
  });

  test('client-gone: group killed, the response ended without an answer, 499, nothing logged as failed', async () => {
    const run = start();
    run.backend.stdout.write(`${HEAD}PA`);
    await settle();
    run.exchange.clientGone();
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
    assert.deepEqual(terminalEvents(run.exchange), ['end']);
    run.backend.exit(null, 'SIGTERM');
    const { head, ...result } = await run.result;
    assert.equal(head?.status, 200, 'the head git had sent');
    assert.deepEqual(result, {
      status: 499,
      bytesIn: 0,
      bytesOut: 2,
      exit: 'SIGTERM',
      error: 'ERR_CLIENT_ABORT: client closed the connection',
    });
    assert.deepEqual(failures(run), []);
  });

  test('client-gone: a request body that fails means the client is gone', async () => {
    const run = start();
    run.exchange.body.destroy(new Error('ECONNRESET'));
    await settle();
    run.backend.exit(null, 'SIGTERM');
    const result = await run.result;
    assert.equal(result.status, 499);
    assert.equal(result.error, 'ERR_CLIENT_ABORT: client went away');
    assert.equal(run.exchange.response.headersSent, false);
  });

  test('client-gone: a client already gone when the relay starts', async () => {
    const exchange = fakeExchange();
    exchange.clientGone();
    const run = start({}, { exchange });
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
    run.backend.exit(null, 'SIGTERM');
    assert.equal((await run.result).status, 499);
  });

  test("aborted: the daemon's own reason (a stop out of patience) is answered with its status", async () => {
    const run = start();
    run.exchange.abortWith(new GitFcgiError('ERR_SHUTDOWN', 'server shutting down', { status: 503 }));
    run.backend.exit(null, 'SIGTERM');
    const result = await run.result;
    assert.equal(result.status, 503);
    assert.equal(run.exchange.response.status, 503);
    assert.deepEqual(failures(run), ['ERR_SHUTDOWN: server shutting down']);
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
  });

  test('idle: nothing moved for idle_timeout is 504; any byte either way starts the wait again', async (t) => {
    const tick = mockTime(t);
    const run = start();
    tick(IDLE_MS - 100);
    run.exchange.body.write('x');
    await settle();
    tick(IDLE_MS - 100);
    run.backend.stdout.write(HEAD);
    await settle();
    tick(IDLE_MS - 1);
    assert.deepEqual(run.backend.kills, [], 'not idle while bytes move');
    tick(1);
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
    assert.equal(run.exchange.response.status, 504);
    run.backend.exit(null, 'SIGTERM');
    const result = await run.result;
    assert.equal(result.status, 504);
    assert.match(result.error ?? '', /^ERR_IDLE_TIMEOUT: no data moved either way for 1s \(idle_timeout\)/);
  });

  test('truncated-body: a body short of CONTENT_LENGTH is 400, the backend killed and its stdin closed', async () => {
    const run = start({ contentLength: 10 });
    run.exchange.body.end('0123');
    await settle();
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
    assert.ok(run.backend.stdin.destroyed);
    assert.equal(run.backend.stdinEnded, false, 'git never sees an end of input that is not one');
    run.backend.exit(null, 'SIGTERM');
    const result = await run.result;
    assert.equal(result.status, 400);
    assert.equal(result.bytesIn, 4);
    assert.equal(result.error, 'ERR_BODY_TRUNCATED: request body ended after 4 of 10 bytes');
    assert.equal(run.exchange.response.status, 400);
  });

  test('truncated-body after the output began: the response is cut off', async () => {
    const run = start({ contentLength: 10 });
    run.backend.stdout.write(`${HEAD}PACK`);
    await settle();
    run.exchange.body.end('0123');
    await settle();
    assert.deepEqual(terminalEvents(run.exchange), ['abort']);
    run.backend.exit(null, 'SIGTERM');
    assert.equal((await run.result).status, 400);
  });

  test('a body longer than CONTENT_LENGTH is cut at it', async () => {
    const run = start({ contentLength: 4 });
    run.exchange.body.end('0123456789');
    run.backend.finish(`${HEAD}ok`);
    const result = await run.result;
    assert.equal(run.backend.stdinBytes, '0123');
    assert.equal(result.bytesIn, 4);
    assert.equal(result.status, 200);
  });

  test('a backend that closed its stdin answered without the rest: a short body then is no truncation', async () => {
    const run = start({ contentLength: 100 });
    run.exchange.body.write('0123');
    await settle();
    run.backend.closeStdin();
    await settle();
    run.exchange.body.end('4567');
    run.backend.finish(`${HEAD}ok`);
    const result = await run.result;
    assert.equal(result.status, 200);
    assert.equal(result.error, undefined);
    assert.equal(result.bytesIn, 4, 'what the backend did not read is not counted');
  });
});

describe('BackendRelay ends once', () => {
  test('exit and client abort in the same tick: one outcome, one end, one result', async () => {
    const run = start();
    run.exchange.body.end();
    run.backend.finish(`${HEAD}PACK`);
    run.exchange.clientGone();
    const result = await run.result;
    await settle();
    assert.equal(result.status, 499);
    assert.deepEqual(terminalEvents(run.exchange), ['end']);
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
    assert.deepEqual(failures(run), []);
  });

  test('a client abort right after the end changes nothing', async () => {
    const run = start();
    run.exchange.body.end();
    run.backend.finish(`${HEAD}PACK`);
    const result = await run.result;
    run.exchange.clientGone();
    await settle();
    assert.equal(result.status, 200);
    assert.deepEqual(terminalEvents(run.exchange), ['end']);
    assert.deepEqual(run.backend.kills, []);
  });

  test("the response's abort() aborting the signal at once (as FastCGI's does) does not re-enter", async () => {
    const run = start();
    run.exchange.response.onAbort = (reason) => run.exchange.abortWith(reason);
    run.exchange.body.end();
    run.backend.finish(`${HEAD}PACK`, 1);
    const result = await run.result;
    assert.equal(result.status, 502);
    assert.deepEqual(terminalEvents(run.exchange), ['abort']);
    assert.equal(failures(run).length, 1);
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
  });

  test('the idle timer firing after the end does nothing', async (t) => {
    const tick = mockTime(t);
    const run = start();
    run.exchange.body.end();
    run.backend.finish(`${HEAD}PACK`);
    await run.result;
    const events = run.exchange.response.events.length;
    tick(IDLE_MS * 10);
    await settle();
    assert.equal(run.exchange.response.events.length, events);
    assert.deepEqual(run.backend.kills, []);
    assert.deepEqual(failures(run), []);
  });

  test('end() called again, with another outcome: one kill, one answer, one log line, the first result', async () => {
    const run = start();
    run.relay.end({ kind: 'idle', idleTimeoutMs: IDLE_MS });
    run.relay.end({
      kind: 'backend-failed',
      error: new GitFcgiError('ERR_BACKEND_EXIT', 'later', { status: 502 }),
    });
    run.relay.end({ kind: 'done', status: 200 });
    run.backend.exit(null, 'SIGTERM');
    const result = await run.result;
    assert.equal(result.status, 504);
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
    assert.equal(failures(run).length, 1);
    assert.deepEqual(terminalEvents(run.exchange), ['end']);
    assert.equal(run.exchange.response.status, 504);
  });
});

describe('BackendRelay retry', () => {
  const prelude: { head: CgiHead; body: Buffer } = {
    head: { status: 200, headers: [['Content-Type', 'x-advertisement']], rest: Buffer.alloc(0) },
    body: Buffer.from('001e# service=git-upload-pack\n0000'),
  };

  test('a backend with a prelude failing before output: retry, nothing sent, the body left for the next run', async () => {
    const exchange = fakeExchange();
    const first = start({ prelude }, { exchange });
    exchange.body.write('ab');
    await settle();
    first.backend.stdout.end();
    first.backend.exit(128);
    const result = await first.result;
    assert.deepEqual(result, { status: 0, bytesIn: 0, bytesOut: 0, exit: 128, retry: true });
    assert.deepEqual(exchange.response.events, []);
    assert.deepEqual(first.backend.kills, [], 'an exited backend is not killed');
    assert.ok(exchange.body.isPaused(), 'the rest of the body waits for the next backend');
    assert.deepEqual(listenedEvents(exchange.body), []);
    assert.equal(abortListeners(exchange.signal), 0);

    exchange.body.end('cd');
    const second = start({}, { exchange });
    await settle();
    assert.equal(second.backend.stdinBytes, 'cd');
    assert.ok(second.backend.stdinEnded);
    second.backend.finish(`${HEAD}refs`);
    const answered = await second.result;
    assert.equal(answered.status, 200);
    assert.equal(exchange.response.body, 'refs');
  });

  test('a retry after the body ended: the next run still sees its end', async () => {
    const exchange = fakeExchange();
    exchange.body.end();
    const first = start({ prelude }, { exchange });
    first.backend.stdout.end();
    first.backend.exit(1);
    assert.equal((await first.result).retry, true);
    const second = start({}, { exchange });
    await settle();
    assert.ok(second.backend.stdinEnded);
    second.backend.finish(`${HEAD}refs`);
    assert.equal((await second.result).status, 200);
  });

  test('prelude: its head, then its bytes before the first stdout byte; tap sees every body byte', async () => {
    const tapped: string[] = [];
    const run = start({ prelude, tap: (bytes) => tapped.push(bytes.toString()) > 0 });
    run.exchange.body.end();
    run.backend.finish('0040refs');
    const result = await run.result;
    assert.equal(result.status, 200);
    assert.equal(run.exchange.response.status, 200);
    assert.equal(run.exchange.response.body, `${prelude.body.toString()}0040refs`);
    assert.equal(tapped.join(''), run.exchange.response.body);
    assert.equal(result.bytesOut, run.exchange.response.body.length);
  });

  test('prelude: a backend that succeeds without output still gets head and prelude sent', async () => {
    const run = start({ prelude });
    run.exchange.body.end();
    run.backend.finish('');
    const result = await run.result;
    assert.equal(result.status, 200);
    assert.equal(run.exchange.response.body, prelude.body.toString());
    assert.deepEqual(terminalEvents(run.exchange), ['end']);
  });

  test('prelude: a failure after output began is no retry', async () => {
    const run = start({ prelude });
    run.exchange.body.end();
    run.backend.finish('0040refs', 1);
    const result = await run.result;
    assert.equal(result.retry, undefined);
    assert.equal(result.status, 502);
    assert.deepEqual(terminalEvents(run.exchange), ['abort']);
  });
});

describe('BackendRelay backpressure', () => {
  test('stdin full pauses the request body; its drain resumes it', async () => {
    const run = start({}, { backend: new FakeBackend({ stdinHighWaterMark: 4 }) });
    const { backend, exchange } = run;
    backend.holdStdin();
    exchange.body.write('0123456789');
    await settle();
    assert.ok(exchange.body.isPaused(), 'the body waits while stdin is full');
    backend.releaseStdin();
    await settle();
    assert.ok(!exchange.body.isPaused());
    exchange.body.end('abc');
    backend.finish(`${HEAD}ok`);
    assert.equal((await run.result).bytesIn, 13);
    assert.equal(backend.stdinBytes, '0123456789abc');
  });

  test('a slow response pauses stdout; its drain resumes it', async () => {
    const run = start();
    const { backend, exchange } = run;
    exchange.response.slow();
    backend.stdout.write(`${HEAD}PACK`);
    await settle();
    assert.ok(backend.stdout.isPaused(), 'no reading while the response is full');
    exchange.response.drain();
    await settle();
    assert.ok(!backend.stdout.isPaused());
    backend.finish('more');
    exchange.body.end();
    await run.result;
    assert.equal(exchange.response.body, 'PACKmore');
  });

  test('views of one reused read buffer: reading goes on while the response takes all, waits while it holds one', async () => {
    const backend = new FakeBackend();
    const reads = backend.readIntoOneBuffer();
    let resumed = 0;
    const resume = backend.stdout.resume.bind(backend.stdout);
    backend.stdout.resume = () => {
      resumed++;
      return resume();
    };
    const run = start({}, { backend });
    const { exchange } = run;
    assert.ok(reads.sinkSet());
    assert.equal(reads.feed(HEAD.slice(0, 10)), true, 'a partial head: read on');
    assert.equal(reads.feed(`${HEAD.slice(10)}PACK`), true, 'all handed on: read on');
    exchange.response.slow();
    assert.equal(reads.feed('held'), false, 'the response holds the view: stop reading');
    assert.equal(resumed, 0);
    exchange.response.drain();
    await settle();
    assert.equal(resumed, 1, 'reading resumes once the view is flushed and the response drained');
    assert.equal(reads.feed('tail'), true);
    exchange.body.end();
    backend.stdout.end();
    backend.exit(0);
    await run.result;
    assert.equal(exchange.response.body, 'PACKheldtail', 'no view was overwritten before it was flushed');
  });
});

describe('BackendRelay leaves nothing behind', () => {
  const outcomes: ReadonlyArray<[string, (run: Run) => void | Promise<void>]> = [
    [
      'done',
      (run) => {
        run.exchange.body.end();
        run.backend.finish(`${HEAD}ok`);
      },
    ],
    [
      'retry',
      (run) => {
        run.backend.stdout.end();
        run.backend.exit(128);
      },
    ],
    [
      'backend-failed',
      (run) => {
        run.backend.stdout.write('bad head\r\n\r\n');
      },
    ],
    ['client-gone', (run) => run.exchange.clientGone()],
    ['aborted', (run) => run.exchange.abortWith(new GitFcgiError('ERR_SHUTDOWN', 'stop', { status: 503 }))],
    ['idle', () => {}],
    [
      'truncated-body',
      (run) => {
        run.exchange.body.end('01');
      },
    ],
  ];
  const prelude = { head: { status: 200, headers: [], rest: Buffer.alloc(0) }, body: Buffer.from('x') };

  for (const [name, cause] of outcomes) {
    test(`${name}: no listener, no timer, no effect of late events`, async (t) => {
      const tick = mockTime(t);
      const run = start({ contentLength: 10, ...(name === 'retry' ? { prelude } : {}) });
      await cause(run);
      await settle();
      tick(IDLE_MS);
      run.backend.exit(null, 'SIGTERM');
      await run.result;
      const { backend, exchange } = run;
      assert.deepEqual(listenedEvents(exchange.body), [], 'request body');
      assert.deepEqual(listenedEvents(backend.stdin), [], 'stdin');
      assert.deepEqual(listenedEvents(backend.stdout), [], 'stdout');
      assert.equal(abortListeners(exchange.signal), 0);
      const seen = {
        events: exchange.response.events.length,
        logs: run.log.lines.length,
        kills: backend.kills.length,
      };
      // Late events: a timer, stream errors (no listener would crash the daemon), an abort.
      tick(IDLE_MS * 10);
      for (const stream of [exchange.body, backend.stdin, backend.stdout, backend.stderr]) {
        stream.emit('error', new Error('late'));
      }
      exchange.clientGone();
      await settle();
      assert.deepEqual(
        { events: exchange.response.events.length, logs: run.log.lines.length, kills: backend.kills.length },
        seen,
      );
    });
  }
});

describe('BackendRelay output side', () => {
  /** A stand-in for a splice: no stdout stream, progress reported as activity. */
  class FakeOutput implements BackendOutput {
    readonly calls: string[] = [];
    events: BackendOutputEvents | null = null;
    head = { status: 200, headers: [], rest: Buffer.alloc(0) };
    retryable = false;
    bytesOut = 0;
    splicedBytes = 0;
    constructor(private readonly run: () => Run) {}
    settled(): Promise<void> {
      return Promise.resolve();
    }
    start(events: BackendOutputEvents): void {
      this.events = events;
      this.calls.push('start');
    }
    finish(): void {
      this.calls.push(`finish (response ended: ${this.run().exchange.response.ended})`);
    }
    stop(): void {
      this.calls.push('stop');
    }
    destroy(): void {
      this.calls.push('destroy');
    }
  }

  test('a replacement output side: its progress keeps idle away, END_REQUEST only after its finish', async (t) => {
    const tick = mockTime(t);
    const made: FakeOutput[] = [];
    const run: Run = start({ output: () => made[made.push(new FakeOutput(() => run)) - 1] as FakeOutput });
    const side = made[0];
    assert.ok(side);
    run.exchange.body.end();
    for (let i = 0; i < 5; i++) {
      tick(IDLE_MS - 1);
      side.bytesOut += 100;
      side.events?.activity();
    }
    assert.deepEqual(run.backend.kills, []);
    side.events?.ended();
    run.backend.exit(0);
    const { head, ...result } = await run.result;
    assert.equal(head, side.head, "the side's head is the result's");
    assert.deepEqual(side.calls, ['start', 'finish (response ended: false)']);
    assert.deepEqual(result, { status: 200, bytesIn: 0, bytesOut: 500, exit: 0 });
    assert.ok(run.exchange.response.ended);
  });

  test('a replacement output side that fails: destroyed, the group killed', async () => {
    const made: FakeOutput[] = [];
    const run: Run = start({ output: () => made[made.push(new FakeOutput(() => run)) - 1] as FakeOutput });
    const side = made[0];
    assert.ok(side);
    side.events?.failed(new Error('splice: EPIPE'));
    run.backend.exit(null, 'SIGTERM');
    const result = await run.result;
    assert.deepEqual(side.calls, ['start', 'destroy']);
    assert.equal(result.status, 502);
    assert.equal(result.error, 'ERR_BACKEND_EXIT: splice: EPIPE');
    assert.deepEqual(run.backend.kills, [KILL_GRACE_MS]);
  });
});
