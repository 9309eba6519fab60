// The system tools the test suite runs, and the package that provides each on Debian/Ubuntu and on
// RHEL-family distributions. One table for scripts/provision.mjs (the pretest) and for the tests that
// skip when an optional tool is missing (test/helpers/tools.ts).

/**
 * @typedef {object} Tool
 * @property {string} name what the messages call it
 * @property {readonly string[]} [files] absolute paths, any one will do: where the tests run it from
 * @property {string} [command] looked up on PATH and in the sbin directories
 * @property {string} debian the Debian/Ubuntu package
 * @property {string | null} rhel the RHEL-family package; null: the suite does not run it there (see `note`)
 * @property {boolean} [epel] the RHEL package comes from EPEL (Fedora has it in its own repositories)
 * @property {string} [tests] set for an optional tool: the tests that need it, skipped without it (never in CI)
 * @property {string} [note] why `rhel` is null
 */

/** @type {readonly Tool[]} */
export const TOOLS = [
  { name: 'git', command: 'git', debian: 'git', rhel: 'git' },
  { name: 'nginx', files: ['/usr/sbin/nginx'], debian: 'nginx', rhel: 'nginx' },
  { name: 'htpasswd', command: 'htpasswd', debian: 'apache2-utils', rhel: 'httpd-tools' },
  { name: 'curl', command: 'curl', debian: 'curl', rhel: 'curl' },
  { name: 'openssl', command: 'openssl', debian: 'openssl', rhel: 'openssl' },
  // npm's build compiles the spawn helper (src/native/spawnd.c); scripts/build-git.sh builds gits.
  { name: 'cc', command: 'cc', debian: 'gcc', rhel: 'gcc' },
  { name: 'make', command: 'make', debian: 'make', rhel: 'make' },
  { name: 'stdio.h', files: ['/usr/include/stdio.h'], debian: 'libc6-dev', rhel: 'glibc-devel' },
  { name: 'zlib.h', files: ['/usr/include/zlib.h'], debian: 'zlib1g-dev', rhel: 'zlib-devel' },
  { name: 'pgrep', command: 'pgrep', debian: 'procps', rhel: 'procps-ng' },
  { name: 'useradd', command: 'useradd', debian: 'passwd', rhel: 'shadow-utils' },
  { name: 'getent', command: 'getent', debian: 'libc-bin', rhel: 'glibc-common' },
  { name: 'mount', command: 'mount', debian: 'mount', rhel: 'util-linux' },
  { name: 'unshare', command: 'unshare', debian: 'util-linux', rhel: 'util-linux' },
  { name: 'setpriv', command: 'setpriv', debian: 'util-linux', rhel: 'util-linux' },
  { name: 'systemd-analyze', command: 'systemd-analyze', debian: 'systemd', rhel: 'systemd' },
  // test/e2e/reference.test.ts renders and lints the generated man page (dist/man/git-fcgi.8).
  { name: 'groff', command: 'groff', debian: 'groff-base', rhel: 'groff-base' },
  { name: 'systemd-socket-activate', command: 'systemd-socket-activate', debian: 'systemd', rhel: 'systemd' },
  {
    name: 'haproxy',
    files: ['/usr/sbin/haproxy'],
    debian: 'haproxy',
    rhel: 'haproxy',
    tests: 'test/e2e/haproxy.test.ts',
  },
  {
    name: 'caddy',
    files: ['/usr/bin/caddy'],
    debian: 'caddy',
    rhel: 'caddy',
    epel: true,
    tests: 'test/e2e/caddy.test.ts',
  },
  {
    name: 'fcgiwrap',
    files: ['/usr/sbin/fcgiwrap'],
    debian: 'fcgiwrap',
    rhel: 'fcgiwrap',
    epel: true,
    tests: 'the fcgiwrap reference in test/e2e/harness.test.ts',
  },
  {
    name: 'spawn-fcgi',
    command: 'spawn-fcgi',
    debian: 'spawn-fcgi',
    rhel: 'spawn-fcgi',
    epel: true,
    tests: 'the spawn-fcgi launcher in test/e2e/launchers.test.ts',
  },
  {
    name: 'cgi-fcgi',
    files: ['/usr/bin/cgi-fcgi'],
    debian: 'libfcgi-bin',
    rhel: 'fcgi',
    epel: true,
    tests: 'test/e2e/fastcgi-cgi-fcgi.test.ts',
  },
  {
    name: 'apache2',
    files: ['/usr/sbin/apache2'],
    debian: 'apache2',
    rhel: null,
    tests: 'test/e2e/apache.test.ts, test/e2e/apache-example.test.ts',
    note: "the Apache tests run Debian's apache2 layout (/usr/sbin/apache2, /usr/lib/apache2/modules, www-data)",
  },
  {
    name: 'lighttpd',
    files: ['/usr/sbin/lighttpd'],
    debian: 'lighttpd',
    rhel: null,
    tests: 'test/e2e/lighttpd.test.ts',
    note: "the lighttpd tests serve as Debian's www-data account",
  },
  {
    name: 'h2o',
    files: ['/usr/bin/h2o'],
    debian: 'h2o',
    rhel: null,
    tests: 'test/e2e/h2o.test.ts',
    note: "h2o is in neither RHEL nor EPEL, and the tests serve as Debian's debian-h2o account",
  },
];

/**
 * The tool named `name`; a name not in the table is a bug in the caller.
 * @param {string} name
 * @returns {Tool}
 */
export function toolNamed(name) {
  const tool = TOOLS.find((t) => t.name === name);
  if (tool === undefined) throw new Error(`no tool ${name} in scripts/provision/tools.mjs`);
  return tool;
}
