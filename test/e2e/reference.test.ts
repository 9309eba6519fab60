import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { Command } from 'commander';
import { buildHookProgram } from '../../src/cli-hooks.js';
import { buildProgram } from '../../src/cli-program.js';
import { iniProblems } from '../../src/config/ini-reference.js';
import { REFERENCE, type SectionReference } from '../../src/config/reference.js';
import { renderManPage } from '../../src/man/man-page.js';
import { cliPath, repoRoot } from '../helpers/daemon.js';
import { run, type RunResult } from '../helpers/proc.js';
import { README_SECTION, helpProblems, manProblems, readmeProblems } from '../helpers/reference-agreement.js';
import { tmpDir } from '../helpers/tmp.js';

/**
 * --help, etc/git-fcgi.ini, the man page and the README against the command-line definition and
 * the settings reference. Each check is shown failing on a copy with one thing taken out.
 */

const manPage = join(repoRoot, 'dist/man/git-fcgi.8');
const main = buildProgram();
const never = (): Promise<number> => Promise.reject(new Error('not run'));
const hooks = buildHookProgram({ hook: never, installHooks: never });

/** A tool's result, or null when it is not installed. */
async function tryRun(cmd: string, args: readonly string[]): Promise<RunResult | null> {
  try {
    return await run(cmd, args, { timeoutMs: 30_000 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** The page as man(1) shows it, as plain text (no bold, no underline): groff's, else mandoc's. */
async function render(t: TestContext, file: string): Promise<string | null> {
  const groff = await tryRun('groff', ['-man', '-Tutf8', '-P-cbou', '-rLL=100n', file]);
  const result = groff ?? (await tryRun('mandoc', ['-Tutf8', '-Owidth=100', file]));
  if (result === null) {
    t.skip('neither groff (groff-base) nor mandoc is installed: .ci/run installs groff-base');
    return null;
  }
  assert.equal(result.code, 0, result.stderr.toString());
  // mandoc marks bold and underline by overstriking: a character, a backspace, a character.
  const backspace = String.fromCharCode(8);
  return result.stdout
    .toString()
    .split(backspace)
    .reduce((kept, next) => kept.slice(0, -1) + next);
}

const withoutKey = (section: string, key: string): SectionReference[] =>
  REFERENCE.map((s) => (s.name === section ? { ...s, keys: s.keys.filter((k) => k.key !== key) } : s));

describe('every flag, section and key, in --help, etc/git-fcgi.ini, the man page and the README', () => {
  test('git-fcgi --help lists every option and the key each setting flag sets', async () => {
    const result = await run(process.execPath, [cliPath, '--help'], { timeoutMs: 10_000 });
    assert.equal(result.code, 0, result.stderr.toString());
    const help = result.stdout.toString();
    assert.deepEqual(helpProblems(help, main), []);
    const cut = help.replace(/^.*--queue <n>.*$/m, '');
    assert.deepEqual(helpProblems(cut, main), ['--help: no --queue <n>']);
  });

  test('etc/git-fcgi.ini: every key with the table’s doc, flag and default; every rule key explained', async () => {
    const ini = await readFile(join(repoRoot, 'etc/git-fcgi.ini'), 'utf8');
    assert.deepEqual(iniProblems(ini), [], 'run `npm run build && node scripts/sync-ini.mjs`');
    const cut = ini.replace(/^;kill_grace = .*\n/m, '');
    assert.match(iniProblems(cut).join('\n'), /\[server\] kill_grace: missing/);
  });

  test('the man page lints clean with groff -ww and mandoc -Tlint', async (t) => {
    const groff = await tryRun('groff', ['-man', '-Tutf8', '-ww', '-z', manPage]);
    const mandoc = await tryRun('mandoc', ['-Tlint', manPage]);
    if (groff === null && mandoc === null) {
      return t.skip('neither groff (groff-base) nor mandoc is installed: .ci/run installs groff-base');
    }
    for (const [name, result] of [
      ['groff', groff],
      ['mandoc', mandoc],
    ] as const) {
      if (result === null) continue;
      const said = `${result.stdout.toString()}${result.stderr.toString()}`;
      assert.equal(said, '', `${name} warns`);
      assert.equal(result.code, 0, name);
    }
  });

  test('the man page (as man shows it) has every option, command, section and key with its default', async (t) => {
    const text = await render(t, manPage);
    if (text === null) return;
    assert.deepEqual(manProblems(text, main, hooks, REFERENCE), []);
    // A page made without one key or one option: the check notices.
    const dir = await tmpDir(t, 'man-');
    const page = (reference: readonly SectionReference[], program = main): string =>
      renderManPage({ main: program, hooks, reference, version: '0', date: '' });
    const noKey = join(dir, 'no-key.8');
    await writeFile(noKey, page(withoutKey('auth', 'realm')));
    const noKeyText = await render(t, noKey);
    assert.deepEqual(manProblems(noKeyText ?? '', main, hooks, REFERENCE), [
      'man: [auth] has no realm',
      'man: [auth] realm does not show its default git',
    ]);
    const fewer = new Command().name('git-fcgi');
    for (const option of main.program.options) if (option.long !== '--idle-timeout') fewer.addOption(option);
    const noFlag = join(dir, 'no-flag.8');
    await writeFile(noFlag, page(REFERENCE, { ...main, program: fewer }));
    const noFlagText = await render(t, noFlag);
    assert.deepEqual(manProblems(noFlagText ?? '', main, hooks, REFERENCE), [
      'man: OPTIONS has no --idle-timeout',
    ]);
  });

  test('scripts/build-man.mjs is reproducible: the same page twice, dated by SOURCE_DATE_EPOCH', async (t) => {
    const dir = await tmpDir(t, 'man-build-');
    const pages: string[] = [];
    for (const name of ['a.8', 'b.8']) {
      const out = join(dir, name);
      const result = await run(process.execPath, [join(repoRoot, 'scripts/build-man.mjs'), out], {
        timeoutMs: 30_000,
        env: { SOURCE_DATE_EPOCH: '1700000000' },
      });
      assert.equal(result.code, 0, result.stderr.toString());
      pages.push(await readFile(out, 'utf8'));
    }
    assert.equal(pages[0], pages[1]);
    assert.match(pages[0] ?? '', /^\.TH GIT\\-FCGI 8 "2023-11-14" "git\\-fcgi \d/m);
  });

  test('the README check: every section, key and setting flag in backticks under its heading', () => {
    const all = REFERENCE.flatMap((s) => [`\`[${s.name}]\``, ...s.keys.map((k) => `\`${k.key}\``)]);
    const flags = main.program.options.map((o) => `\`${o.long ?? ''}\``);
    const readme = `# x\n\n${README_SECTION}\n\n${[...all, ...flags].join(' ')}\n\n## Next\n`;
    assert.deepEqual(readmeProblems(readme, REFERENCE), []);
    assert.deepEqual(readmeProblems(readme.replace('`follow_symlinks`', ''), REFERENCE), [
      'README: [git] no `follow_symlinks`',
    ]);
    const elsewhere = readme.replace(/`deny_delete`/, '').replace('## Next\n', '## Next\n`deny_delete`\n');
    assert.deepEqual(readmeProblems(elsewhere, REFERENCE), ['README: [repo:PATTERN] no `deny_delete`']);
  });

  test('README.md has every section, key and setting flag in its configuration reference', async () => {
    const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
    assert.deepEqual(readmeProblems(readme, REFERENCE), []);
  });
});
