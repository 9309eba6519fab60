import type { Command, Option } from 'commander';
import { DESCRIPTION, EXAMPLES, type Program } from '../cli-program.js';
import { CONFIG_INTRO, type KeyReference, type SectionReference } from '../config/reference.js';
import { SETTINGS, type SettingDef } from '../config/settings.js';
import { escape, example, flagSpec, paragraphs, sentences, splitSentences, wrap } from './roff.js';

/**
 * git-fcgi(8), generated from the command-line definition (cli-program.ts, cli-hooks.ts) and the
 * configuration reference (config/reference.ts): the options and keys cannot drift from what
 * the program accepts. The prose around them (signals, files, exit status) is written here.
 */
export interface ManPageInput {
  readonly main: Program;
  readonly hooks: Command;
  readonly reference: readonly SectionReference[];
  readonly version: string;
  /** YYYY-MM-DD, or '' for none. */
  readonly date: string;
}

/** Where the packages put things (and scripts/install.sh, under /usr/local). */
const FILES: ReadonlyArray<readonly [path: string, what: string]> = [
  [
    '/etc/git-fcgi/git-fcgi.ini',
    'The configuration file the systemd unit gives with -c; every key commented out with its default.',
  ],
  [
    '/etc/default/git-fcgi, /etc/sysconfig/git-fcgi',
    'OPTIONS for the unit (Debian and RHEL), extra flags that override the file.',
  ],
  [
    '/run/git-fcgi/git-fcgi.sock',
    'The FastCGI socket git-fcgi.socket creates (mode 0660, group of the web server).',
  ],
  [
    'git-fcgi.service, git-fcgi.socket',
    'The systemd units, in /lib/systemd/system (Debian) or /usr/lib/systemd/system (RHEL).',
  ],
  [
    '/var/log/git-fcgi/',
    'For [log] file and access_file; the unit creates it, /etc/logrotate.d/git-fcgi rotates it.',
  ],
  [
    '/usr/share/doc/git-fcgi/examples/',
    'The nginx snippet and examples for Apache, lighttpd, HAProxy, Caddy and h2o.',
  ],
  [
    '/srv/git',
    'Where the unit lets git write (ReadWritePaths=): put the repositories there or change it in a drop-in.',
  ],
];

const ENVIRONMENT: ReadonlyArray<readonly [name: string, what: string]> = [
  [
    'LISTEN_FDS, LISTEN_PID',
    'systemd socket activation: without listen, git-fcgi serves the socket on fd 3. Removed from the environment once used.',
  ],
  [
    'OPTIONS',
    'In the unit (from /etc/default/git-fcgi or /etc/sysconfig/git-fcgi): extra command-line flags.',
  ],
  ['TMPDIR', 'Where --demo puts its repository when no directory is given.'],
  [
    'GIT_FCGI_CONFIG, GIT_FCGI_REPO, GIT_FCGI_USER',
    'Read by `git-fcgi hook pre-receive`: the config file, the repository and the pusher, as git-fcgi passes them to the backend. Without GIT_FCGI_CONFIG (a push not made through git-fcgi) the hook checks nothing.',
  ],
  [
    'GIT_FCGI_USER, GIT_FCGI_GROUPS, GIT_FCGI_REPO, GIT_FCGI_REQUEST_ID, REMOTE_USER',
    "Set by git-fcgi for git and its hooks: the authenticated user, that user's groups (comma-separated), the repository under project_root, the request id of the logs, and the user git records for pushes. The [env] section adds more.",
  ],
];

const SIGNALS: ReadonlyArray<readonly [name: string, what: string]> = [
  [
    'SIGTERM, SIGINT',
    'Stop: refuse new connections, let running requests finish for up to shutdown_timeout, then end the backends that are left (SIGTERM to each process group, SIGKILL kill_grace later), remove the socket and the pid file, and exit 0. A second SIGTERM or SIGINT exits at once with status 1. No backend outlives git-fcgi: even when git-fcgi itself is killed, the spawn helper ends the process groups.',
  ],
  [
    'SIGHUP',
    'Reload: read the config file again and apply it whole, or refuse it whole (logged) and keep the running one; reopen the log files either way (logrotate). Keys marked "restart" keep their running value.',
  ],
];

const EXIT_STATUS: ReadonlyArray<readonly [code: string, what: string]> = [
  [
    '0',
    'Stopped by SIGTERM or SIGINT; --check-config found no problem; install-hooks installed every hook; the pre-receive hook accepted the push.',
  ],
  [
    '1',
    'A bad command line or configuration; a socket that cannot be bound, an account that does not exist, root without user or allow_root; --check-config found a problem; a second stop signal; install-hooks failed for a repository; the pre-receive hook refused the push.',
  ],
  ['70', 'An internal error (logged with its stack).'],
];

const SEE_ALSO = [
  ['git', 1],
  ['git-http-backend', 1],
  ['htpasswd', 1],
  ['spawn-fcgi', 1],
  ['githooks', 5],
  ['systemd.service', 5],
  ['systemd.socket', 5],
  ['fcgiwrap', 8],
  ['logrotate', 8],
  ['nginx', 8],
] as const;

const NGINX_EXAMPLE = [
  'location / {',
  '    include       fastcgi_params;',
  '    fastcgi_param PATH_INFO        $uri;',
  '    fastcgi_param GIT_PROTOCOL     $http_git_protocol;',
  '    fastcgi_param GIT_PROJECT_ROOT /srv/git;',
  '    fastcgi_request_buffering off;',
  '    fastcgi_buffering off;',
  '    fastcgi_pass  unix:/run/git-fcgi/git-fcgi.sock;',
  '}',
];

const sentence = (text: string): string => {
  const t = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(t) ? t : `${t}.`;
};

function tagged(tag: string, body: readonly string[]): string[] {
  return ['.TP', tag, ...body];
}

function list(items: ReadonlyArray<readonly [string, string]>, bold = true): string[] {
  return items.flatMap(([tag, what]) =>
    tagged(bold ? `\\fB${escape(tag)}\\fR` : escape(tag), sentences(what)),
  );
}

function optionEntry(option: Option, main: Program): string[] {
  const name = main.flagToSetting.get(option.attributeName());
  if (name === undefined) return tagged(flagSpec(option.flags), sentences(sentence(option.description)));
  const setting: SettingDef<unknown> = SETTINGS[name];
  const [first = ''] = splitSentences(setting.doc);
  return tagged(flagSpec(option.flags), [
    ...sentences(first),
    ...sentences(`Sets [${setting.section}] ${setting.key}: see CONFIGURATION.`),
  ]);
}

function usage(command: Command): string {
  const args = command.registeredArguments.map((a) => {
    const name = `\\fI${escape(a.name())}\\fR${a.variadic ? '...' : ''}`;
    return a.required ? name : `[${name}]`;
  });
  const options = command.options.map((o) => `[${flagSpec(o.flags)}]`);
  return [`\\fBgit\\-fcgi ${escape(command.name())}\\fR`, ...options, ...args].join(' ');
}

function keyEntry(key: KeyReference): string[] {
  const name = key.placeholder ? `\\fI${escape(key.key)}\\fR` : `\\fB${escape(key.key)}\\fR`;
  const value = key.placeholder
    ? '\\fIvalue\\fR'
    : key.default === ''
      ? '\\fIunset\\fR'
      : escape(key.default);
  const body = [...sentences(key.doc)];
  if (key.flag !== undefined) body.push(...wrap(`Flag: ${flagSpec(key.flag)}.`));
  if (key.restart) body.push('Restart to change it: a reload keeps the running value.');
  if (key.example !== undefined) {
    const note = key.example.note === undefined ? '' : `   ; ${key.example.note}`;
    // .RS without a width moves to the body of the .TP; the spaces indent the example from there.
    body.push('.br', 'Example:', '.RS', '.nf', `    ${escape(`${key.example.line}${note}`)}`, '.fi', '.RE');
  }
  return tagged(`${name} = ${value}${key.restart ? ' \\fI(restart)\\fR' : ''}`, body);
}

function configuration(reference: readonly SectionReference[]): string[] {
  return [
    '.SH CONFIGURATION',
    ...paragraphs(CONFIG_INTRO),
    ...reference.flatMap((section) => [
      `.SS [${escape(section.name)}]`,
      ...paragraphs(section.doc),
      ...section.keys.flatMap(keyEntry),
    ]),
  ];
}

export function renderManPage(input: ManPageInput): string {
  const { program } = input.main;
  const help = program.createHelp();
  const lines = [
    '.\\" Generated by scripts/build-man.mjs from the command line and the settings table: do not edit.',
    `.TH GIT\\-FCGI 8 "${input.date}" "git\\-fcgi ${escape(input.version)}" "System Administration"`,
    // No hyphenation, ragged right: paths, flags and keys stay whole and copyable.
    '.nh',
    '.ad l',
    '.SH NAME',
    ...wrap(`git\\-fcgi \\- ${escape(DESCRIPTION.charAt(0).toLowerCase() + DESCRIPTION.slice(1, -1))}`),
    '.SH SYNOPSIS',
    '\\fBgit\\-fcgi\\fR [\\fIoptions\\fR]',
    ...input.hooks.commands.flatMap((c) => ['.br', usage(c)]),
    '.SH DESCRIPTION',
    ...paragraphs([
      'git-fcgi runs git-http-backend(1) for each Git request that nginx (or Apache, lighttpd, HAProxy, Caddy, h2o) passes to it over FastCGI, and streams request and response bodies both ways as they come. It replaces fcgiwrap started by spawn-fcgi: one daemon with a limit on concurrent backends and a queue, timeouts that end hung backends with their whole process group, a graceful stop, a reload on SIGHUP, access control per repository and per branch, an access log and live status figures.',
      'It listens on a UNIX or TCP socket, on a socket it inherits (spawn-fcgi, systemd socket activation), and optionally on plain HTTP. Started as root with user set, it binds its sockets first, then drops privileges. Settings come from built-in defaults, the config file (-c) and command-line flags, in that order; see CONFIGURATION.',
    ]),
    '.SH OPTIONS',
    ...help.visibleOptions(program).flatMap((o) => optionEntry(o, input.main)),
    '.SH COMMANDS',
    ...input.hooks.commands.flatMap((c) =>
      tagged(usage(c), [
        ...sentences(sentence(c.description())),
        ...c.registeredArguments.flatMap((a) => sentences(`${a.name()}: ${a.description}.`)),
        ...c.options.flatMap((o) => sentences(`${o.flags}: ${o.description}.`)),
      ]),
    ),
    ...configuration(input.reference),
    '.SH SIGNALS',
    ...list(SIGNALS),
    '.SH EXIT STATUS',
    ...list(EXIT_STATUS),
    '.SH ENVIRONMENT',
    ...list(ENVIRONMENT),
    '.SH FILES',
    ...list(FILES),
    '.SH EXAMPLES',
    ...EXAMPLES.flatMap((e) => [...sentences(e.what), ...example(e.commands), '.PP']),
    ...sentences(
      'nginx, in a server block (the packaged snippet adds keep-alive, authentication and status):',
    ),
    ...example(NGINX_EXAMPLE),
    '.SH SEE ALSO',
    SEE_ALSO.map(([page, section]) => `.BR ${escape(page)} (${section})`).join(',\n'),
    '',
  ];
  return lines.join('\n');
}
