import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Distro } from '../../../scripts/provision/distro.mjs';
import { planFor, rootCommands, skipFor, stopLine } from '../../../scripts/provision/plan.mjs';
import { TOOLS, toolNamed, type Tool } from '../../../scripts/provision/tools.mjs';

const DEBIAN: Distro = { family: 'debian', id: 'debian', fedora: false };
const ROCKY: Distro = { family: 'rhel', id: 'rocky', fedora: false };
const FEDORA: Distro = { family: 'rhel', id: 'fedora', fedora: true };
const ARCH: Distro = { family: null, id: 'arch', fedora: false };

const tools = (...names: string[]): Tool[] => names.map(toolNamed);
const names = (list: readonly Tool[]): string[] => list.map((t) => t.name);

describe('the tools table', () => {
  it('says where to look for each tool, and names each once', () => {
    for (const tool of TOOLS) assert.ok(tool.files !== undefined || tool.command !== undefined, tool.name);
    assert.equal(new Set(names(TOOLS)).size, TOOLS.length);
  });

  it('a tool some distribution lacks is optional (its tests skip) and says why', () => {
    for (const tool of TOOLS.filter((t) => t.rhel === null || t.epel === true)) {
      assert.ok(tool.tests !== undefined, `${tool.name} must name the tests that skip without it`);
      if (tool.rhel === null) assert.ok(tool.note !== undefined, `${tool.name} must say why RHEL lacks it`);
    }
  });
});

describe('which packages for which missing tools', () => {
  it('Debian: each package once, in table order', () => {
    const plan = planFor(tools('nginx', 'htpasswd', 'unshare', 'setpriv', 'cgi-fcgi', 'h2o'), DEBIAN, false);
    assert.deepEqual(plan.packages, ['nginx', 'apache2-utils', 'util-linux', 'libfcgi-bin', 'h2o']);
    assert.deepEqual(plan.unavailable, []);
  });

  it("RHEL names differ; EPEL's packages only where EPEL is enabled; Debian-only tests are not installed for", () => {
    const missing = tools(
      'nginx',
      'htpasswd',
      'pgrep',
      'useradd',
      'stdio.h',
      'zlib.h',
      'fcgiwrap',
      'apache2',
    );
    const plan = planFor(missing, ROCKY, false);
    assert.deepEqual(plan.packages, [
      'nginx',
      'httpd-tools',
      'procps-ng',
      'shadow-utils',
      'glibc-devel',
      'zlib-devel',
    ]);
    assert.deepEqual(
      plan.unavailable.map((u) => [u.tool.name, u.why]),
      [
        ['fcgiwrap', 'its package fcgiwrap is in EPEL, not enabled here (dnf install epel-release)'],
        ['apache2', toolNamed('apache2').note],
      ],
    );
    assert.deepEqual(planFor(tools('fcgiwrap', 'cgi-fcgi'), ROCKY, true).packages, ['fcgiwrap', 'fcgi']);
    assert.deepEqual(planFor(tools('fcgiwrap', 'caddy'), FEDORA, false).packages, ['fcgiwrap', 'caddy']);
  });

  it('a distribution of no known family: nothing to install, everything unavailable', () => {
    const plan = planFor(tools('nginx', 'h2o'), ARCH, false);
    assert.deepEqual(plan.packages, []);
    assert.deepEqual(names(plan.unavailable.map((u) => u.tool)), ['nginx', 'h2o']);
  });
});

describe('the commands and the line', () => {
  it('root: apt-get updates its lists first; dnf does not need to', () => {
    assert.deepEqual(rootCommands(DEBIAN, ['nginx', 'fcgiwrap']), [
      ['apt-get', 'update', '-q'],
      ['apt-get', 'install', '-y', '--no-install-recommends', 'nginx', 'fcgiwrap'],
    ]);
    assert.deepEqual(rootCommands(ROCKY, ['nginx', 'httpd-tools']), [
      ['dnf', 'install', '-y', 'nginx', 'httpd-tools'],
    ]);
  });

  it('not root: one line with the missing tools and the exact command', () => {
    const missing = tools('nginx', 'htpasswd', 'fcgiwrap');
    assert.equal(
      stopLine(DEBIAN, planFor(missing, DEBIAN, false), missing),
      'provision: missing nginx, htpasswd, fcgiwrap (npm test as root installs them without starting their ' +
        'services); install them with: sudo apt-get install -y --no-install-recommends nginx apache2-utils fcgiwrap',
    );
    assert.equal(
      stopLine(ROCKY, planFor(missing, ROCKY, false), missing),
      'provision: missing nginx, htpasswd (npm test as root installs them without starting their services); ' +
        'install them with: sudo dnf install -y nginx httpd-tools',
    );
    assert.equal(
      stopLine(ARCH, planFor(missing, ARCH, false), missing),
      'provision: missing nginx, htpasswd, fcgiwrap; this distribution (ID=arch) is neither Debian- nor ' +
        'RHEL-like: install them with its package manager',
    );
  });
});

describe('why a test that needs a tool is skipped', () => {
  const machine = { distro: DEBIAN, epelEnabled: false, present: false, ci: false };

  it('not skipped when the tool is there, nor ever in CI (it fails there instead)', () => {
    assert.equal(skipFor(toolNamed('fcgiwrap'), { ...machine, present: true }), false);
    assert.equal(skipFor(toolNamed('fcgiwrap'), { ...machine, ci: true }), false);
    assert.equal(skipFor(toolNamed('apache2'), { ...machine, distro: ROCKY, ci: true }), false);
  });

  it('missing: where it was looked for and how to get it', () => {
    assert.equal(
      skipFor(toolNamed('fcgiwrap'), machine),
      'fcgiwrap not found (/usr/sbin/fcgiwrap): package fcgiwrap, which npm test installs when run as root ' +
        '(its pretest says how otherwise)',
    );
    assert.equal(
      skipFor(toolNamed('spawn-fcgi'), { ...machine, distro: ROCKY }),
      'spawn-fcgi not found (spawn-fcgi on PATH): its package spawn-fcgi is in EPEL, not enabled here ' +
        '(dnf install epel-release)',
    );
  });

  it('a tool whose tests are Debian-only: skipped on RHEL even when present', () => {
    assert.equal(
      skipFor(toolNamed('lighttpd'), { ...machine, distro: ROCKY, present: true }),
      `not run on rocky: ${toolNamed('lighttpd').note ?? ''}`,
    );
  });
});
