import { statSync } from 'node:fs';
import path from 'node:path';
import { takeSnapshot, type Dependencies } from '../advertisement/depends-on.js';
import { keyHash } from '../key-hash.js';

/**
 * Whether an environment variable can change what pack-objects writes: git's own (config
 * through GIT_CONFIG_*, GIT_PROTOCOL, object directories, ...) and where git finds itself and
 * its global config. Not the request's CGI variables, headers or address, and not git-fcgi's
 * own GIT_FCGI_* (the token differs per request).
 */
export function keyedVariable(name: string): boolean {
  if (name.startsWith('GIT_FCGI_')) return false;
  return name.startsWith('GIT_') || name === 'PATH' || name === 'HOME' || name === 'XDG_CONFIG_HOME';
}

/** Where `program` is found on `pathList` (what execvp would run), or null. */
export function findProgram(program: string, pathList: string | undefined): string | null {
  if (program.includes('/')) return path.isAbsolute(program) ? program : null;
  for (const dir of (pathList ?? '').split(':')) {
    if (!path.isAbsolute(dir)) continue;
    const candidate = path.join(dir, program);
    const s = statSync(candidate, { throwIfNoEntry: false });
    if (s !== undefined && s.isFile() && (s.mode & 0o111) !== 0) return candidate;
  }
  return null;
}

/**
 * What the repository's pack output depends on besides the request: HEAD, refs (files or
 * reftable), config (the repository's, the global and system ones), packs, alternates, the
 * shallow file; stat'ed as the ref advertisement cache does (depends-on.ts).
 */
export function packDependencies(gitDir: string, env: Readonly<Record<string, string>>): Dependencies {
  const at = (...parts: string[]): string => path.join(gitDir, ...parts);
  const home = env.HOME;
  const global =
    home === undefined || home === ''
      ? []
      : [
          path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'git', 'config'),
          path.join(home, '.gitconfig'),
        ];
  return {
    links: [],
    files: [
      gitDir,
      at('HEAD'),
      at('packed-refs'),
      at('reftable'),
      at('reftable', 'tables.list'),
      at('config'),
      '/etc/gitconfig',
      ...global,
      at('objects'),
      at('objects', 'pack'),
      at('objects', 'info', 'alternates'),
      at('shallow'),
    ],
    trees: [at('refs')],
  };
}

export interface KeyInput {
  /** The repository's real path (its object store). */
  readonly gitDir: string;
  /** The git program that runs pack-objects. */
  readonly program: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly stdin: Buffer;
}

/**
 * The cache key: sha256 of everything that decides pack-objects' output. Null when the
 * repository's state cannot be fingerprinted reliably (too many loose refs, a change too recent,
 * a filesystem whose stat() may lag): then the pack is not cached.
 */
export function cacheKey(input: KeyInput, nowMs: number = Date.now()): string | null {
  const snapshot = takeSnapshot(packDependencies(input.gitDir, input.env), input.gitDir, nowMs);
  if (snapshot === null) return null;
  const program = statSync(input.program, { throwIfNoEntry: false });
  if (program === undefined) return null;
  return keyHash([
    input.gitDir,
    `${input.program} ${program.ino} ${program.size} ${program.mtimeMs} ${program.ctimeMs}`,
    input.argv.join('\0'),
    ...Object.keys(input.env)
      .filter(keyedVariable)
      .sort()
      .map((name) => `${name}=${input.env[name]}`),
    snapshot.paths.join('\0'),
    Buffer.from(snapshot.stats.buffer, snapshot.stats.byteOffset, snapshot.stats.byteLength),
    input.stdin,
  ]);
}
