#!/usr/bin/env node
// Rewrites the per-key blocks of etc/git-fcgi.ini from the settings table (run after `npm run
// build`): doc, flag, default. The prose around them stays as written. The reference test fails
// until the file agrees with the table.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { syncIni, iniProblems } = await import(join(root, 'dist/config/ini-reference.js'));
const file = join(root, 'etc/git-fcgi.ini');
const text = syncIni(readFileSync(file, 'utf8'));
writeFileSync(file, text);
const problems = iniProblems(text);
for (const problem of problems) process.stderr.write(`etc/git-fcgi.ini: ${problem}\n`);
process.exit(problems.length > 0 ? 1 : 0);
