import * as fs from 'node:fs';
import git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { withDeadline } from './deadline.js';

export interface BasicAuth {
  readonly username: string;
  readonly password: string;
}

export interface IsoCloneOptions {
  readonly url: string;
  readonly dir: string;
  readonly auth?: BasicAuth;
  readonly ref?: string;
  readonly depth?: number;
  readonly timeoutMs?: number;
}

// isomorphic-git calls onAuth again after a 401 unless onAuthFailure says otherwise; cancelling makes wrong
// credentials fail once instead of looping.
function authCallbacks(auth: BasicAuth | undefined) {
  if (auth === undefined) return {};
  return {
    onAuth: () => ({ username: auth.username, password: auth.password }),
    onAuthFailure: () => ({ cancel: true }),
  };
}

/** Clones `url` into `dir` with isomorphic-git — a second HTTP client besides git itself. */
export async function isoClone(opts: IsoCloneOptions): Promise<void> {
  await withDeadline(
    git.clone({
      fs,
      http,
      dir: opts.dir,
      url: opts.url,
      singleBranch: true,
      ...(opts.ref === undefined ? {} : { ref: opts.ref }),
      ...(opts.depth === undefined ? {} : { depth: opts.depth }),
      ...authCallbacks(opts.auth),
    }),
    opts.timeoutMs ?? 60_000,
    `isomorphic-git clone ${opts.url}`,
  );
}

export interface IsoPushOptions {
  readonly url: string;
  readonly dir: string;
  readonly ref: string;
  readonly remoteRef?: string;
  readonly auth?: BasicAuth;
  readonly force?: boolean;
  readonly timeoutMs?: number;
}

export interface IsoPushResult {
  readonly ok: boolean;
  readonly error: string | null;
  readonly refs: Readonly<Record<string, { readonly ok: boolean; readonly error?: string }>>;
}

/** Pushes `ref` from the work tree `dir` to `url`; rejects when the server refuses it. */
export async function isoPush(opts: IsoPushOptions): Promise<IsoPushResult> {
  return withDeadline(
    git.push({
      fs,
      http,
      dir: opts.dir,
      url: opts.url,
      ref: opts.ref,
      ...(opts.remoteRef === undefined ? {} : { remoteRef: opts.remoteRef }),
      ...(opts.force === undefined ? {} : { force: opts.force }),
      ...authCallbacks(opts.auth),
    }),
    opts.timeoutMs ?? 60_000,
    `isomorphic-git push ${opts.url}`,
  );
}
