import { ACCESS_SECTION_DOCS, AUTH_KEYS, REPO_KEYS, type AccessKeyDoc } from '../access/access-keys.js';
import { ENV_SECTION_DOC } from './env-section.js';
import { SETTINGS, defaultText, type SettingDef, type SettingName } from './settings.js';

/**
 * Every section and key the config loader accepts, with its default and documentation, in the
 * order of etc/git-fcgi.ini: what the man page's CONFIGURATION lists and the reference test
 * checks --help, the ini file and the README against.
 */
export interface KeyReference {
  /** The key, or NAME where the admin chooses the key ([groups], [env]). */
  readonly key: string;
  /** The key is a name the admin chooses, not a fixed word. */
  readonly placeholder: boolean;
  /** The command-line flag spec, for settings that have one. */
  readonly flag?: string;
  /** As the ini file writes it; '' for unset (the doc says what that means). */
  readonly default: string;
  readonly doc: string;
  /** A whole `key = value` line an admin might write, and why. */
  readonly example?: { readonly line: string; readonly note?: string };
  /** A reload (SIGHUP) keeps the running value. */
  readonly restart: boolean;
}

export interface SectionReference {
  /** As written between brackets; `repo:PATTERN` for the rule sections. */
  readonly name: string;
  /** Paragraphs. */
  readonly doc: readonly string[];
  readonly keys: readonly KeyReference[];
}

/** How the file works, before the sections (paragraphs). */
export const CONFIG_INTRO = [
  'git-fcgi reads an ini file given with -c (the systemd unit gives /etc/git-fcgi/git-fcgi.ini). Lines starting with ; or # are comments; a ; or # after whitespace starts a comment too. Precedence: built-in defaults, then the file, then command-line flags.',
  'Sizes take K, M or G (1024-based): 512, 64K, 10M. Durations take ms, s, m or h: 500ms, 30s, 10m, 1h; a bare number is seconds. Booleans: true or false, yes or no, on or off, 1 or 0.',
  'Unknown sections or keys, bad values and unreadable files are errors that name the file, line, section and key; git-fcgi then exits 1 without binding anything. `git-fcgi -c FILE --check-config` checks a file and prints the effective settings, like nginx -t.',
  'SIGHUP (systemctl reload git-fcgi) applies a changed file: a file with errors is refused and the running configuration kept. The keys marked "restart" below keep their running value until git-fcgi is restarted; the reload logs that they changed.',
] as const;

const SETTING_SECTION_DOCS: Record<SettingDef<unknown>['section'], readonly string[]> = {
  server: ['How git-fcgi listens, whom it runs as, how many backends it runs, and its limits and timeouts.'],
  git: ['Where the repositories are and how git http-backend runs.'],
  log: ['What git-fcgi logs, and where.'],
};

function settingKey(setting: SettingDef<unknown>): KeyReference {
  return {
    key: setting.key,
    placeholder: false,
    ...(setting.flag === undefined ? {} : { flag: setting.flag }),
    default: defaultText(setting),
    doc: setting.doc,
    ...(setting.example === undefined
      ? {}
      : { example: { ...setting.example, line: `${setting.key} = ${setting.example.value}` } }),
    restart: setting.restart === true,
  };
}

function settingSection(section: SettingDef<unknown>['section']): SectionReference {
  const names = (Object.keys(SETTINGS) as SettingName[]).filter((name) => SETTINGS[name].section === section);
  return {
    name: section,
    doc: SETTING_SECTION_DOCS[section],
    keys: names.map((name) => settingKey(SETTINGS[name])),
  };
}

function accessKeys(table: Readonly<Record<string, AccessKeyDoc>>): KeyReference[] {
  return Object.entries(table).map(([key, d]) => ({
    key,
    placeholder: false,
    default: d.default,
    doc: d.doc,
    ...(d.example === d.default ? {} : { example: { line: `${key} = ${d.example}` } }),
    restart: false,
  }));
}

const placeholder = (doc: string, example: { line: string; note?: string }): KeyReference => ({
  key: 'NAME',
  placeholder: true,
  default: '',
  doc,
  example,
  restart: false,
});

export const REFERENCE: readonly SectionReference[] = [
  settingSection('server'),
  settingSection('git'),
  {
    name: 'env',
    doc: ENV_SECTION_DOC,
    keys: [
      placeholder('A variable for every backend, with this value.', {
        line: 'GNUPGHOME = /etc/git-fcgi/gnupg',
        note: 'keys for signed pushes',
      }),
    ],
  },
  settingSection('log'),
  { name: 'auth', doc: ACCESS_SECTION_DOCS.auth, keys: accessKeys(AUTH_KEYS) },
  {
    name: 'groups',
    doc: ACCESS_SECTION_DOCS.groups,
    keys: [
      placeholder('The members of group NAME: users and @groups, comma-separated.', {
        line: 'devs = bob, @leads',
      }),
    ],
  },
  { name: 'repo:PATTERN', doc: ACCESS_SECTION_DOCS.repo, keys: accessKeys(REPO_KEYS) },
];
