import { readFileSync } from 'node:fs';

/** The package version, read once from package.json next to dist/. */
export const VERSION: string = (() => {
  try {
    const pkg: unknown = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    return typeof pkg === 'object' && pkg !== null && 'version' in pkg ? String(pkg.version) : 'unknown';
  } catch {
    return 'unknown';
  }
})();
