import { Command, Option } from 'commander';
import { SETTINGS, type SettingName } from './config/settings.js';
import { VERSION } from './version.js';

/**
 * git-fcgi's command line, defined once: cli.ts parses with it, the man page is generated from
 * it (scripts/build-man.mjs). Building it reads no argv, env or file.
 */

export const DESCRIPTION =
  'Serve Git repositories over HTTP behind nginx: a streaming FastCGI server for git http-backend.';

/** What --help and the man page's EXAMPLES show: a sentence, then the commands. */
export const EXAMPLES: ReadonlyArray<{ readonly what: string; readonly commands: readonly string[] }> = [
  {
    what: 'Try it without nginx (plain HTTP, a demo repository), then clone from another terminal:',
    commands: ['git-fcgi --demo', 'git clone http://127.0.0.1:8080/demo.git'],
  },
  {
    what: 'Behind nginx (fastcgi_pass unix:/run/git-fcgi/git-fcgi.sock):',
    commands: [
      'git-fcgi --listen unix:/run/git-fcgi/git-fcgi.sock --socket-owner git:nginx --user git --project-root /srv/git',
    ],
  },
  {
    what: 'With a config file, checked first like nginx -t:',
    commands: ['git-fcgi -c /etc/git-fcgi/git-fcgi.ini --check-config'],
  },
  {
    what: 'Branch rules ([repo:...] protect, deny_force, ...): install the pre-receive hook once per repository:',
    commands: ['git-fcgi install-hooks /srv/git/*.git /srv/git/*/*.git'],
  },
];

/** After the examples in --help: what the man page has sections for. */
export const HELP_FOOTER = `Without --listen, git-fcgi serves the socket it inherits on fd 0 (spawn-fcgi) or from
systemd socket activation (LISTEN_FDS). Signals: TERM/INT stop gracefully (shutdown_timeout);
HUP reloads the configuration and reopens log files. Every setting: man git-fcgi, etc/git-fcgi.ini.`;

function helpText(): string {
  const examples = EXAMPLES.map((e) => [`  ${e.what}`, ...e.commands.map((c) => `    ${c}`)].join('\n'));
  return `\nExamples:\n${examples.join('\n')}\n\n${HELP_FOOTER}`;
}

export interface Program {
  readonly program: Command;
  /** commander's attribute name of each setting's flag -> the setting. */
  readonly flagToSetting: ReadonlyMap<string, SettingName>;
}

export function buildProgram(): Program {
  const program = new Command()
    .name('git-fcgi')
    .description(DESCRIPTION)
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'read settings from this ini file (flags override it)')
    .option('-t, --check-config', 'check the configuration, print the effective settings, and exit')
    .option(
      '--demo [dir]',
      'create a demo repository in DIR (default: $TMPDIR/git-fcgi-demo) and serve it over --http: ' +
        'anyone may clone, a demo user whose password is printed may push',
    )
    .addHelpText('after', helpText())
    .showHelpAfterError('(run git-fcgi --help for usage)');
  const flagToSetting = new Map<string, SettingName>();
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const setting = SETTINGS[name];
    if (!('flag' in setting) || setting.flag === undefined) continue;
    const option = new Option(setting.flag, `${setting.doc} [${setting.section}] ${setting.key}`);
    program.addOption(option);
    flagToSetting.set(option.attributeName(), name);
  }
  return { program, flagToSetting };
}
