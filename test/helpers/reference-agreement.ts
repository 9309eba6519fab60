import type { Command } from 'commander';
import type { Program } from '../../src/cli-program.js';
import type { SectionReference } from '../../src/config/reference.js';
import { SETTINGS, type SettingDef, type SettingName } from '../../src/config/settings.js';

/**
 * Where --help, the man page and the README fall short of the command line and the config
 * reference: one line per missing flag, section or key. Empty: they agree.
 */

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function settingFlags(): Array<{ long: string; setting: SettingDef<unknown> }> {
  return (Object.keys(SETTINGS) as SettingName[]).flatMap((name) => {
    const setting: SettingDef<unknown> = SETTINGS[name];
    const long = setting.flag?.split(' ')[0];
    return long === undefined ? [] : [{ long, setting }];
  });
}

/** `git-fcgi --help`: every option's flags as defined, and the config key each setting flag sets. */
export function helpProblems(text: string, main: Program): string[] {
  // commander wraps descriptions: `[server]` and `pid_file` may be on two lines.
  const help = text.replace(/\s+/g, ' ');
  const problems: string[] = [];
  for (const option of main.program.createHelp().visibleOptions(main.program)) {
    if (!help.includes(option.flags)) problems.push(`--help: no ${option.flags}`);
  }
  for (const { long, setting } of settingFlags()) {
    if (!help.includes(`[${setting.section}] ${setting.key}`))
      problems.push(`--help: ${long} does not name [${setting.section}] ${setting.key}`);
  }
  return problems;
}

/** The part of `text` from the line `start` matches to the next line `end` matches. */
function part(text: string, start: RegExp, end: RegExp): string | null {
  const lines = text.split('\n');
  const from = lines.findIndex((l) => start.test(l));
  if (from < 0) return null;
  const to = lines.findIndex((l, i) => i > from && end.test(l));
  return lines.slice(from + 1, to < 0 ? undefined : to).join('\n');
}

/**
 * The man page as man(1) shows it (plain text): every option of the program and of its
 * commands, and every section with every key, each as the tag of its own entry.
 */
export function manProblems(
  text: string,
  main: Program,
  hooks: Command,
  reference: readonly SectionReference[],
): string[] {
  // groff may print hyphens and minus signs as Unicode ones.
  const page = text.replace(/[\u2010\u2011\u2212]/g, '-');
  const problems: string[] = [];
  const options = part(page, /^OPTIONS$/, /^\S/) ?? '';
  for (const option of main.program.createHelp().visibleOptions(main.program)) {
    const flag = option.long ?? option.short ?? option.flags;
    if (!new RegExp(`^ +(?:-\\w, )?${escapeRegExp(flag)}\\b`, 'm').test(options))
      problems.push(`man: OPTIONS has no ${flag}`);
  }
  const commands = part(page, /^COMMANDS$/, /^\S/) ?? '';
  for (const command of hooks.commands) {
    if (!new RegExp(`^ +git-fcgi ${escapeRegExp(command.name())}\\b`, 'm').test(commands))
      problems.push(`man: COMMANDS has no ${command.name()}`);
    for (const option of command.options) {
      if (!commands.includes(option.long ?? option.flags))
        problems.push(`man: ${command.name()} has no ${option.flags}`);
    }
  }
  const configuration = part(page, /^CONFIGURATION$/, /^\S/) ?? '';
  for (const section of reference) {
    const body = part(configuration, new RegExp(`^ {3}\\[${escapeRegExp(section.name)}\\]$`), /^ {3}\S/);
    if (body === null) {
      problems.push(`man: CONFIGURATION has no [${section.name}]`);
      continue;
    }
    for (const key of section.keys) {
      if (!new RegExp(`^ +${escapeRegExp(key.key)} = `, 'm').test(body))
        problems.push(`man: [${section.name}] has no ${key.key}`);
      if (!key.placeholder && key.default !== '' && !body.includes(`${key.key} = ${key.default}`))
        problems.push(`man: [${section.name}] ${key.key} does not show its default ${key.default}`);
    }
  }
  return problems;
}

/** The README section this check reads. */
export const README_SECTION = '## Configuration reference';

/**
 * README.md's "## Configuration reference" (up to the next `## ` heading) names, each inside
 * backticks: every section as `[name]` (`[repo:PATTERN]` for the rule sections), every key that
 * is not a placeholder as `key`, and every setting's flag as `--flag`.
 */
export function readmeProblems(readme: string, reference: readonly SectionReference[]): string[] {
  const body = part(readme, new RegExp(`^${escapeRegExp(README_SECTION)}\\s*$`), /^## /);
  if (body === null) return [`README: no "${README_SECTION}" section`];
  const problems: string[] = [];
  const quoted = (word: string): boolean => body.includes(`\`${word}\``);
  for (const section of reference) {
    if (!quoted(`[${section.name}]`)) problems.push(`README: no \`[${section.name}]\``);
    for (const key of section.keys) {
      if (!key.placeholder && !quoted(key.key)) problems.push(`README: [${section.name}] no \`${key.key}\``);
    }
  }
  for (const { long } of settingFlags()) if (!quoted(long)) problems.push(`README: no \`${long}\``);
  return problems;
}
