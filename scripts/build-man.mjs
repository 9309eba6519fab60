#!/usr/bin/env node
// Generates dist/man/git-fcgi.8 from the built modules (run after tsc): the options from the
// command-line definition, the configuration keys from the settings and access tables.
// Reproducible: the date is SOURCE_DATE_EPOCH's when set, else the last commit's, never today's.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const { buildProgram } = await import(join(dist, 'cli-program.js'));
const { buildHookProgram } = await import(join(dist, 'cli-hooks.js'));
const { REFERENCE } = await import(join(dist, 'config/reference.js'));
const { renderManPage } = await import(join(dist, 'man/man-page.js'));
const { VERSION } = await import(join(dist, 'version.js'));

function pageDate() {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch !== undefined && epoch !== '') {
    if (!/^\d+$/.test(epoch)) throw new Error(`SOURCE_DATE_EPOCH is not a number of seconds: ${epoch}`);
    return new Date(Number(epoch) * 1000).toISOString().slice(0, 10);
  }
  const git = spawnSync('git', ['log', '-1', '--format=%cd', '--date=format-local:%Y-%m-%d'], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, TZ: 'UTC' },
  });
  return git.status === 0 ? git.stdout.trim() : '';
}

const never = () => Promise.reject(new Error('not run: the man page only reads the definition'));
const page = renderManPage({
  main: buildProgram(),
  hooks: buildHookProgram({ hook: never, installHooks: never }),
  reference: REFERENCE,
  version: VERSION,
  date: pageDate(),
});
// An output path as the one argument (the tests' reproducibility check); else the packaged one.
const out = process.argv[2] ?? join(dist, 'man', 'git-fcgi.8');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, page);
