// Which distribution this is, from /etc/os-release (ID and ID_LIKE), as the package manager sees it.

/**
 * @typedef {object} Distro
 * @property {'debian' | 'rhel' | null} family null: neither Debian-like nor RHEL-like
 * @property {string} id ID from os-release, e.g. debian, ubuntu, rocky, almalinux, centos, fedora
 * @property {boolean} fedora Fedora itself: what RHEL takes from EPEL is in Fedora's own repositories
 */

/**
 * The KEY=value lines of an os-release file (values may be quoted, comments and blank lines skipped).
 * @param {string} text
 * @returns {Map<string, string>}
 */
export function parseOsRelease(text) {
  const fields = new Map();
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] === undefined || match[2] === undefined) continue;
    fields.set(match[1], match[2].replace(/^(["'])(.*)\1$/, '$2'));
  }
  return fields;
}

/**
 * @param {string} osRelease the text of /etc/os-release
 * @returns {Distro}
 */
export function distroOf(osRelease) {
  const fields = parseOsRelease(osRelease);
  const id = (fields.get('ID') ?? '').toLowerCase();
  const like = [id, ...(fields.get('ID_LIKE') ?? '').toLowerCase().split(/\s+/)];
  /** @type {Distro['family']} */
  let family = null;
  if (like.some((name) => name === 'debian' || name === 'ubuntu')) family = 'debian';
  else if (like.some((name) => name === 'rhel' || name === 'fedora' || name === 'centos')) family = 'rhel';
  return { family, id: id === '' ? 'unknown' : id, fedora: id === 'fedora' };
}
