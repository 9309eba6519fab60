import { join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { startGitFcgi, type GitFcgi, type StartGitFcgiOptions } from './daemon.js';
import { gitLocation, startNginx, type GitLocationOptions, type Nginx } from './nginx.js';
import { tmpDir } from './tmp.js';

export interface GitStack {
  readonly sock: string;
  readonly daemon: GitFcgi;
  readonly nginx: Nginx;
}

export interface GitStackOptions {
  /** More git-fcgi arguments after `--listen unix:SOCK --project-root ROOT`. */
  readonly args?: readonly string[];
  readonly daemon?: StartGitFcgiOptions;
  /** More of the documented location block (auth, extra directives). */
  readonly location?: Omit<GitLocationOptions, 'socket'>;
}

/**
 * What most end-to-end tests stand on: git-fcgi on a fresh UNIX socket serving `root`, and
 * one nginx server with the documented location in front of it. Everything is ended in `t`'s
 * cleanup.
 */
export async function startGitStack(t: Cleanup, root: string, opts: GitStackOptions = {}): Promise<GitStack> {
  const sock = join(await tmpDir(t, 'sock-'), 'g.sock');
  const daemon = await startGitFcgi(
    t,
    ['--listen', `unix:${sock}`, '--project-root', root, ...(opts.args ?? [])],
    opts.daemon ?? {},
  );
  const nginx = await startNginx(t, {
    servers: [{ locations: gitLocation({ socket: sock, ...opts.location }) }],
  });
  return { sock, daemon, nginx };
}
