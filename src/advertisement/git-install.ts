import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';

/**
 * The git installation behind a backend, as far as the fast path must know it: where its
 * system config is, and which version it is. The fast path is taken only for versions whose
 * output the differential tests compare with git http-backend's in CI.
 */
export interface GitInstall {
  /** The `git` program in the exec-path directory (what git http-backend runs). */
  readonly program: string;
  /** The system config file this build reads (compiled in): /etc/gitconfig for a /usr prefix. */
  readonly systemConfig: string;
  /** `2.47.3`; null while not known yet. */
  readonly version: string | null;
}

/** Exec-path directories of git built with prefix=/usr (Debian; RHEL and most others). */
const SYSTEM_CONFIG_BY_EXEC_DIR: ReadonlyMap<string, string> = new Map([
  ['/usr/lib/git-core', '/etc/gitconfig'],
  ['/usr/libexec/git-core', '/etc/gitconfig'],
]);

/**
 * Release lines whose direct advertisement CI compares byte for byte with git http-backend's,
 * for files and reftable repositories (test/e2e/git-versions.test.ts): Debian 12 (2.39),
 * Ubuntu 24.04 and RHEL 9 (2.43), Debian 13 and RHEL 10 (2.47), the newest (2.55).
 */
export const TESTED_GIT_RELEASES: ReadonlySet<string> = new Set(['2.39', '2.43', '2.47', '2.55']);

/** `git version 2.47.3` (or `2.47.3.windows.1`, `2.39.5 (Apple Git-...)`) -> `2.47.3`. */
export function parseGitVersion(output: string): string | null {
  const m = /^git version (\d+\.\d+\.\d+)/.exec(output.trim());
  return m?.[1] ?? null;
}

export function isTestedRelease(version: string | null): boolean {
  if (version === null) return false;
  const [major, minor] = version.split('.');
  return TESTED_GIT_RELEASES.has(`${major}.${minor}`);
}

/**
 * Versions by program, each with the stat identity it was read under: a git upgraded in place
 * is asked again (in the background; until then the fast path is not taken).
 */
export class GitInstalls {
  private readonly known = new Map<string, { readonly identity: string; version: string | null }>();

  /** The installation behind `backend` when git-fcgi knows its layout; null otherwise. */
  of(backend: string): GitInstall | null {
    if (path.basename(backend) !== 'git-http-backend') return null;
    const execDir = path.dirname(backend);
    const systemConfig = SYSTEM_CONFIG_BY_EXEC_DIR.get(execDir);
    if (systemConfig === undefined) return null;
    const program = path.join(execDir, 'git');
    return { program, systemConfig, version: this.versionOf(program) };
  }

  /** Asks the version of `program` now and waits for the answer (at start and reload). */
  async probe(program: string): Promise<string | null> {
    const identity = identityOf(program);
    if (identity === null) return null;
    const version = await askVersion(program);
    this.known.set(program, { identity, version });
    return version;
  }

  private versionOf(program: string): string | null {
    const identity = identityOf(program);
    if (identity === null) return null;
    const entry = this.known.get(program);
    if (entry?.identity === identity) return entry.version;
    // Unknown or changed: ask in the background, answer "not known" meanwhile.
    this.known.set(program, { identity, version: null });
    void askVersion(program).then((version) => {
      const now = this.known.get(program);
      if (now?.identity === identity) now.version = version;
    });
    return null;
  }
}

function identityOf(program: string): string | null {
  try {
    const s = statSync(program);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  } catch {
    return null;
  }
}

function askVersion(program: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      program,
      ['version'],
      { env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' }, timeout: 10_000 },
      (err, stdout) => resolve(err === null ? parseGitVersion(stdout) : null),
    );
  });
}
