#!/usr/bin/env node
// Builds dist/git-fcgi-spawnd (src/native/spawnd.c), the helper that starts backends without
// forking the daemon, and dist/git-fcgi-pack-hook (src/native/pack-hook.c), the pack cache's
// uploadpack.packObjectsHook, and dist/git-fcgi-splice (src/native/splice.c), which splices
// large responses into the FastCGI connection. Without a C compiler git-fcgi still works (spawn_helper = auto
// falls back to Node's own spawn, the pack cache is off), so a missing compiler is a warning; a
// compile error is a failure.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cc = process.env.CC || 'cc';
if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).error) {
  process.stderr.write(
    `git-fcgi: no C compiler (${cc}): git-fcgi-spawnd and git-fcgi-pack-hook not built; backends will be started by forking ` +
      'the daemon, which is slower, and the pack cache is off. Install gcc (or set CC) and run `npm run build` to build it.\n',
  );
  process.exit(0);
}
mkdirSync(join(root, 'dist'), { recursive: true });
for (const [source, binary] of [
  ['spawnd.c', 'git-fcgi-spawnd'],
  ['pack-hook.c', 'git-fcgi-pack-hook'],
  ['splice.c', 'git-fcgi-splice'],
]) {
  execFileSync(
    cc,
    [
      '-O2',
      '-Wall',
      '-Wextra',
      '-Werror',
      '-o',
      join(root, 'dist', binary),
      join(root, 'src/native', source),
    ],
    { stdio: 'inherit' },
  );
}
