/**
 * What the fetch cache's unit tests share: a git installation the plan trusts whatever git this
 * machine has, a real bare repository located as git-fcgi locates it, an exchange made of
 * in-memory streams, and waits that always have a deadline.
 */
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { GitInstalls, type GitInstall } from '../../../src/advertisement/git-install.js';
import type { Exchange, ResponseSink } from '../../../src/exchange.js';
import type { Logger } from '../../../src/log.js';
import type { CgiHead } from '../../../src/request/cgi-headers.js';
import { locateRepository, type Repository } from '../../../src/request/locate-repository.js';
import type { Cleanup } from '../../helpers/cleanup.js';
import { withDeadline } from '../../helpers/deadline.js';
import { git, GIT_HTTP_BACKEND } from '../../helpers/repos.js';
import { tmpDir } from '../../helpers/tmp.js';

/** Longer than the racy window of a filesystem with sub-second timestamps (100 ms). */
export const SETTLE_MS = 150;

/** Every wait in these tests ends by then. */
export const DEADLINE_MS = 5_000;

export const BACKEND = GIT_HTTP_BACKEND;

/**
 * GitInstalls as it answers once the version of the git behind `backend` is known: this one
 * always answers `install`, so that the plan does not depend on which git this machine has.
 */
export class FixedInstalls extends GitInstalls {
  constructor(private readonly install: GitInstall | null) {
    super();
  }

  override of(backend: string): GitInstall | null {
    return backend === BACKEND ? this.install : null;
  }
}

/** The system git, as a tested release (2.39) whose system config is `systemConfig`. */
export function testedInstall(systemConfig: string): GitInstall {
  return { program: join(dirname(BACKEND), 'git'), systemConfig, version: '2.39.5' };
}

export interface Fixture {
  readonly root: string;
  readonly home: string;
  readonly repository: Repository;
  readonly installs: GitInstalls;
}

/**
 * A bare repository `r.git` under a fresh project root, with a HOME and a system config file
 * (both empty) of its own; ready to be snapshotted (its files are older than the racy window).
 */
export async function bareRepository(t: Cleanup): Promise<Fixture> {
  const root = await tmpDir(t, 'fetch-cache-');
  const home = join(root, 'home');
  await mkdir(home);
  await git(t, ['init', '-q', '--bare', '--initial-branch=main', join(root, 'r.git')]);
  await sleep(SETTLE_MS);
  return {
    root,
    home,
    repository: locateRepository(root, 'r.git', { followSymlinks: false }),
    installs: new FixedInstalls(testedInstall(join(root, 'etc-gitconfig'))),
  };
}

/** The environment git http-backend would get for `POST /r.git/git-upload-pack` with `body`. */
export function fetchEnv(
  fixture: Fixture,
  body: Buffer,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    PATH: '/usr/bin:/bin',
    LC_ALL: 'C',
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: 'git-fcgi/test',
    PATH_INFO: '/r.git/git-upload-pack',
    GIT_PROJECT_ROOT: fixture.root,
    GIT_FCGI_REQUEST_ID: 'req-1',
    HOME: fixture.home,
    REQUEST_METHOD: 'POST',
    CONTENT_TYPE: 'application/x-git-upload-pack-request',
    CONTENT_LENGTH: String(body.length),
    REMOTE_ADDR: '192.0.2.1',
    REMOTE_PORT: '40000',
    GIT_HTTP_EXPORT_ALL: '1',
    GIT_PROTOCOL: 'version=2',
    ...extra,
  };
}

/** A protocol v2 fetch of `want` as `git fetch` asks for it. */
export function fetchBody(want: string, haves: readonly string[] = []): Buffer {
  const pkt = (line: string): string => `${(line.length + 4).toString(16).padStart(4, '0')}${line}`;
  let body = `${pkt('command=fetch\n')}${pkt('agent=git/test\n')}0001${pkt('no-progress\n')}${pkt(`want ${want}\n`)}`;
  for (const have of haves) body += pkt(`have ${have}\n`);
  return Buffer.from(`${body}${pkt('done\n')}0000`);
}

/** A head as the relay hands it over: `rest` is a view into its read buffer. */
export function okHead(rest: Buffer = Buffer.alloc(0)): CgiHead {
  return {
    status: 200,
    headers: [
      ['Content-Type', 'application/x-git-upload-pack-result'],
      ['Cache-Control', 'no-cache, max-age=0, must-revalidate'],
    ],
    rest,
  };
}

/** A response the fetch cache must never touch: every call fails the test. */
const untouchable: ResponseSink = {
  writeHead: () => {
    throw new Error('the fetch cache wrote a head');
  },
  write: () => {
    throw new Error('the fetch cache wrote a body');
  },
  get pending(): number {
    throw new Error('the fetch cache looked at the response');
  },
  onceDrain: () => {
    throw new Error('the fetch cache waited for the response');
  },
  end: () => {
    throw new Error('the fetch cache ended the response');
  },
  abort: () => {
    throw new Error('the fetch cache aborted the response');
  },
  get headersSent(): boolean {
    throw new Error('the fetch cache looked at the response');
  },
};

export function exchangeOf(body: Readable, signal: AbortSignal = new AbortController().signal): Exchange {
  return { params: new Map(), body, response: untouchable, signal, transport: 'fastcgi' };
}

/** A request body arriving in `parts`, each in a turn of its own, then its end. */
export function bodyIn(parts: readonly Buffer[]): PassThrough {
  const body = new PassThrough();
  void (async () => {
    for (const part of parts) {
      body.write(part);
      await new Promise((resolve) => setImmediate(resolve));
    }
    body.end();
  })();
  return body;
}

/** Everything `stream` gives until its end. */
export function readAll(stream: Readable, what = 'the replayed body'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  return withDeadline(
    once(stream, 'end').then(() => Buffer.concat(chunks)),
    DEADLINE_MS,
    what,
  );
}

/** Whether `promise` is still pending once everything ready to run has run (a few turns). */
export async function isPending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await sleep(20);
  return !settled;
}

export const quietLog: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  child: () => quietLog,
  access: () => undefined,
  isDebug: () => false,
};
