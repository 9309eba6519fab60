import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { distroOf, parseOsRelease } from '../../../scripts/provision/distro.mjs';

/** The ID lines of these distributions' /etc/os-release files. */
const OS_RELEASE: Record<string, string> = {
  debian:
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
  ubuntu: 'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n',
  mint: 'NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n',
  rhel: 'NAME="Red Hat Enterprise Linux"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\n',
  rocky: 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n',
  alma: 'NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\n',
  stream: 'NAME="CentOS Stream"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="9"\n',
  fedora: 'NAME="Fedora Linux"\nVERSION_ID=40\nID=fedora\n',
  arch: 'NAME="Arch Linux"\nID=arch\n',
};

describe('distribution from /etc/os-release', () => {
  it('reads KEY=value lines, quoted or not, skipping comments and blanks', () => {
    const fields = parseOsRelease(
      '# comment\n\nID="rocky"\nID_LIKE=\'rhel fedora\'\nVERSION_ID=9\nnot a line\n',
    );
    assert.deepEqual(
      [...fields],
      [
        ['ID', 'rocky'],
        ['ID_LIKE', 'rhel fedora'],
        ['VERSION_ID', '9'],
      ],
    );
  });

  it('Debian and its derivatives are debian; ID_LIKE decides for the others', () => {
    for (const name of ['debian', 'ubuntu', 'mint'])
      assert.equal(distroOf(OS_RELEASE[name] ?? '').family, 'debian', name);
    assert.equal(distroOf(OS_RELEASE['mint'] ?? '').id, 'linuxmint');
  });

  it('RHEL, Rocky, Alma, CentOS Stream and Fedora are rhel; only Fedora has no need of EPEL', () => {
    const seen = ['rhel', 'rocky', 'alma', 'stream', 'fedora'].map((name) =>
      distroOf(OS_RELEASE[name] ?? ''),
    );
    assert.deepEqual(
      seen.map((d) => [d.family, d.id, d.fedora]),
      [
        ['rhel', 'rhel', false],
        ['rhel', 'rocky', false],
        ['rhel', 'almalinux', false],
        ['rhel', 'centos', false],
        ['rhel', 'fedora', true],
      ],
    );
  });

  it('anything else, or no os-release at all, is of no known family', () => {
    assert.deepEqual(distroOf(OS_RELEASE['arch'] ?? ''), { family: null, id: 'arch', fedora: false });
    assert.deepEqual(distroOf(''), { family: null, id: 'unknown', fedora: false });
  });
});
