import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from './daemon.js';
import { run } from './run.js';

/** Where `npm run package` (scripts/package/build.sh) puts the .deb and the .rpm. */
export const PACKAGES_DIR = join(repoRoot, 'dist', 'packages');

/**
 * Why the package checks do not run here, or false when they do. They install the .deb on the machine
 * (and the account it creates stays, as Debian keeps system accounts), so only CI runs them: .ci/run builds
 * the packages and then runs test/e2e/package-*.test.js with GIT_FCGI_PACKAGE_CHECKS=1.
 */
export function packageChecksSkipped(): string | false {
  if (process.env.GIT_FCGI_PACKAGE_CHECKS !== '1')
    return 'package checks need npm run package and install the .deb on this machine: CI runs them (GIT_FCGI_PACKAGE_CHECKS=1)';
  if (process.getuid?.() !== 0) return 'package checks need root';
  return false;
}

/** The one package `npm run package` built with this file name ending (`.deb`, `.rpm`). */
export async function builtPackage(ending: string): Promise<string> {
  const names = (await readdir(PACKAGES_DIR)).filter((name) => name.endsWith(ending));
  assert.equal(names.length, 1, `one ${ending} in ${PACKAGES_DIR}: ${names.join(', ')}`);
  return join(PACKAGES_DIR, names[0] ?? '');
}

export async function packageVersion(): Promise<string> {
  const manifest = JSON.parse(await readFile(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

/** The values of every `key=` line of a systemd unit, in order. */
export function unitValues(unit: string, key: string): string[] {
  return [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1] ?? '');
}

/** The one `key=` value of a unit. */
export function unitValue(unit: string, key: string): string {
  const values = unitValues(unit, key);
  assert.equal(values.length, 1, `one ${key}= line: ${values.join(' | ')}`);
  return values[0] ?? '';
}

/**
 * The command line systemd runs for `ExecStart=`: `$NAME` words replaced by the words of NAME from the unit's
 * EnvironmentFile=s (a leading `-`: the file may be missing), as systemd splits an unquoted `$NAME`.
 */
export async function execStartArgv(unit: string): Promise<string[]> {
  const env: Record<string, string> = {};
  for (const entry of unitValues(unit, 'EnvironmentFile')) {
    const file = entry.replace(/^-/, '');
    // The files are shell-compatible assignments; sh reads them as systemd does.
    const shown = await run('env', ['-i', 'sh', '-c', 'set -a; . "$1"; env -0', 'sh', file], {
      timeoutMs: 5000,
    });
    if (shown.code !== 0 && entry.startsWith('-')) continue;
    assert.equal(shown.code, 0, `${file}: ${shown.stderr.toString()}`);
    for (const pair of shown.stdout.toString().split('\0')) {
      const at = pair.indexOf('=');
      if (at > 0) env[pair.slice(0, at)] = pair.slice(at + 1);
    }
  }
  return unitValue(unit, 'ExecStart')
    .split(/\s+/)
    .flatMap((word) => {
      const name = /^\$(\w+)$/.exec(word)?.[1];
      return name === undefined ? [word] : (env[name] ?? '').split(/\s+/).filter((w) => w !== '');
    });
}

/** Every path under `dirs` (directories too), for what an install left behind. */
export async function listFiles(dirs: readonly string[]): Promise<Set<string>> {
  const found = await run('find', [...dirs, '-xdev'], { timeoutMs: 60_000 });
  // find reports unreadable corners (e.g. /proc-like mounts) on stderr; the listing is what counts.
  return new Set(
    found.stdout
      .toString()
      .split('\n')
      .filter((line) => line !== ''),
  );
}

/** Paths in `after` that are not in `before`, sorted. */
export function added(before: ReadonlySet<string>, after: ReadonlySet<string>): string[] {
  return [...after].filter((path) => !before.has(path)).sort();
}
