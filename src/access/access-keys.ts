/**
 * The keys of the access sections, documented once: the parser (access-config.ts) accepts exactly
 * these, and etc/git-fcgi.ini, the man page and the reference test read their docs and defaults.
 */
export interface AccessKeyDoc {
  /** The default as the ini file would write it; '' when unset means something the doc says. */
  readonly default: string;
  /** A value an admin might write (etc/git-fcgi.ini's examples use it). */
  readonly example: string;
  readonly doc: string;
}

export const AUTH_KEYS = {
  mode: {
    default: 'nginx',
    example: 'htpasswd',
    doc: 'Who decides who is asking. nginx (meaning the front end, whichever it is): trust REMOTE_USER as the front end passes it (nginx: fastcgi_param REMOTE_USER $remote_user) after auth_basic, auth_request or a client certificate check; nginx and HAProxy make a user out of any Authorization header, checked or not, so the front end must check every request that carries credentials, as the shipped examples do. htpasswd: git-fcgi checks the Authorization: Basic header itself against the htpasswd file and ignores REMOTE_USER from nginx; anonymous read with authenticated push then works behind a plain nginx location. htpasswd needs at least one [repo:PATTERN] section.',
  },
  htpasswd: {
    default: '',
    example: '/etc/git-fcgi/htpasswd',
    doc: 'With mode = htpasswd (where it is required): the password file (absolute path), written by `htpasswd -B` (bcrypt, recommended), `-m` (Apache MD5) or `-s` (SHA-1). Plain-text and crypt() entries are refused with a warning. Re-read when it changes.',
  },
  realm: {
    default: 'git',
    example: 'Git at example.com',
    doc: 'The realm of the WWW-Authenticate: Basic realm="..." header, shown by git\'s credential prompt and browsers. Printable ASCII without quotes or backslashes.',
  },
  max_failures: {
    default: '10',
    example: '10',
    doc: 'With mode = htpasswd: failed logins from one client address within failure_window before that address gets 429 with Retry-After; failures are logged with user and address. (With mode = nginx, nginx checks the passwords: use limit_req there.)',
  },
  failure_window: {
    default: '1m',
    example: '1m',
    doc: 'The window, a duration, in which max_failures failed logins are counted.',
  },
  credential_cache: {
    default: '1m',
    example: '1m',
    doc: 'How long a user and password that verified are trusted without hashing them again (bcrypt takes milliseconds per check; a clone makes several requests). 0: no cache.',
  },
} as const satisfies Record<string, AccessKeyDoc>;

export const REPO_KEYS = {
  read: {
    default: '',
    example: '@devs, @ci',
    doc: 'Who may clone, fetch, ls-remote, archive and use dumb HTTP: users, @groups, * (any authenticated user) and anonymous (everyone, logged in or not), comma-separated. Writers may read too. Unset: nobody but the writers.',
  },
  write: {
    default: '',
    example: '@devs',
    doc: 'Who may push (info/refs?service=git-receive-pack and git-receive-pack): the same forms as read. An anonymous push also needs `git config http.receivepack true` in the repository. Unset: nobody.',
  },
  hide: {
    default: 'false',
    example: 'true',
    doc: 'true: a logged-in user who may not read gets 404 instead of 403, as if the repository did not exist. Anonymous requests still get 401 so that git asks for a login; that 401 is the same whether the repository exists or not.',
  },
  protect: {
    default: '',
    example: 'refs/heads/main, refs/tags/*',
    doc: 'Ref globs, comma-separated, whose updates protect_push, deny_force and deny_delete restrict (same glob syntax: refs/tags/* does not match refs/tags/a/b, refs/tags/** does). Enforced by the pre-receive hook that `git-fcgi install-hooks` installs. Unset: no protected refs.',
  },
  protect_push: {
    default: '',
    example: '@leads',
    doc: 'Who may update the protected refs (same forms as read). Unset: everyone who may write.',
  },
  deny_force: {
    default: 'false',
    example: 'true',
    doc: 'true: no non-fast-forward update of a protected ref, by anyone.',
  },
  deny_delete: {
    default: 'false',
    example: 'true',
    doc: 'true: no deletion of a protected ref, by anyone.',
  },
} as const satisfies Record<string, AccessKeyDoc>;

export type AuthKey = keyof typeof AUTH_KEYS;
export type RepoKey = keyof typeof REPO_KEYS;

export function isKeyOf<T extends object>(table: T, key: string): key is Extract<keyof T, string> {
  return Object.hasOwn(table, key);
}

/** For an exhaustive switch over a key table: a key documented but not parsed fails to compile. */
export function unhandledKey(key: never): never {
  throw new Error(`internal error: documented key ${String(key)} is not parsed`);
}

/** What the access sections are for, as the man page explains them (paragraphs). */
export const ACCESS_SECTION_DOCS = {
  auth: [
    'How git-fcgi learns who is asking, for the [repo:PATTERN] rules. Without any [repo:PATTERN] section it is not used.',
  ],
  groups: [
    'Named sets of users for the rules, one NAME = members line each: users and @groups, comma-separated. Groups may nest; cycles are harmless. A rule names a group as @NAME.',
  ],
  repo: [
    'Access control is on as soon as there is one [repo:PATTERN] section: then a repository that no section matches is not served at all (404), for anyone. SIGHUP reloads the rules, the groups and [auth]; a file with errors is refused and the old rules stay.',
    "PATTERN is a glob on the repository's path under project_root, matched with and without the .git suffix ([repo:team/app] also matches team/app.git): * matches any characters except /, ? one character except /, ** any characters including / (and **/ also matches nothing: **/x.git matches x.git). Dots are literal.",
    'Exactly one section applies to a repository: the most specific one that matches. A pattern without wildcards beats any pattern with wildcards; then the pattern with more literal characters wins (team/*.git: 9 beats team/*: 5 beats **: 0); then the one with fewer **; then the section that comes first in the file. Sections do not combine: keys the winning section does not set are off.',
    'Answers: not logged in and not allowed: 401 with WWW-Authenticate, so that git asks for a login; logged in and not allowed: 403 (404 with hide = true); no matching section: 404. What a rule allows, git must still allow (http.receivepack, http.uploadpack).',
    'The branch rules (protect, protect_push, deny_force, deny_delete) are enforced by git-fcgi\'s pre-receive hook: install it once into each repository with `git-fcgi install-hooks`. A refused push shows the reason to the pusher as "remote: git-fcgi: ...". Pushes that do not come through git-fcgi (local, ssh) are not checked.',
  ],
} as const;
