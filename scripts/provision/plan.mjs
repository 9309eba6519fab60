// What to do about missing tools on a distribution: which packages, the commands root runs, the one line
// a user who is not root gets, and why a test is skipped. Pure: no I/O (scripts/provision.mjs does it).

/**
 * @typedef {import('./tools.mjs').Tool} Tool
 * @typedef {import('./distro.mjs').Distro} Distro
 * @typedef {{ readonly package: string } | { readonly why: string }} Source
 * @typedef {object} Plan
 * @property {readonly Tool[]} installable missing tools this machine's repositories provide
 * @property {readonly string[]} packages their packages, each once, in table order
 * @property {readonly { tool: Tool, why: string }[]} unavailable missing tools it does not provide
 */

/** Where the tool is looked for, as messages say it. @param {Tool} tool */
export const whereOf = (tool) => tool.files?.join(' or ') ?? `${tool.command ?? tool.name} on PATH`;

/**
 * The package that provides `tool` on `distro`, or why there is none.
 * @param {Tool} tool
 * @param {Distro} distro
 * @param {boolean} epelEnabled the machine has EPEL's repository configured
 * @returns {Source}
 */
export function sourceOf(tool, distro, epelEnabled) {
  if (distro.family === 'debian') return { package: tool.debian };
  if (distro.family === null)
    return { why: `this distribution (ID=${distro.id}) is neither Debian- nor RHEL-like` };
  if (tool.rhel === null) return { why: tool.note ?? `not packaged for ${distro.id}` };
  if (tool.epel === true && !distro.fedora && !epelEnabled) {
    return { why: `its package ${tool.rhel} is in EPEL, not enabled here (dnf install epel-release)` };
  }
  return { package: tool.rhel };
}

/**
 * @param {readonly Tool[]} missing
 * @param {Distro} distro
 * @param {boolean} epelEnabled
 * @returns {Plan}
 */
export function planFor(missing, distro, epelEnabled) {
  /** @type {Tool[]} */
  const installable = [];
  /** @type {string[]} */
  const packages = [];
  /** @type {{ tool: Tool, why: string }[]} */
  const unavailable = [];
  for (const tool of missing) {
    const source = sourceOf(tool, distro, epelEnabled);
    if ('why' in source) {
      unavailable.push({ tool, why: source.why });
      continue;
    }
    installable.push(tool);
    if (!packages.includes(source.package)) packages.push(source.package);
  }
  return { installable, packages, unavailable };
}

/**
 * The install command, as root runs it (the user's line prefixes sudo).
 * @param {Distro} distro a Debian- or RHEL-like one
 * @param {readonly string[]} packages
 * @returns {string[]}
 */
export function installArgv(distro, packages) {
  return distro.family === 'debian'
    ? ['apt-get', 'install', '-y', '--no-install-recommends', ...packages]
    : ['dnf', 'install', '-y', ...packages];
}

/** What root runs in order: apt-get needs fresh package lists on a fresh machine. */
export function rootCommands(/** @type {Distro} */ distro, /** @type {readonly string[]} */ packages) {
  const install = installArgv(distro, packages);
  return distro.family === 'debian' ? [['apt-get', 'update', '-q'], install] : [install];
}

/**
 * The one line that stops a user who is not root: the missing tools and the exact command.
 * @param {Distro} distro
 * @param {Plan} plan
 * @param {readonly Tool[]} missing every missing tool, for a distribution the table does not know
 */
export function stopLine(distro, plan, missing) {
  if (distro.family === null) {
    const names = missing.map((t) => t.name).join(', ');
    return `provision: missing ${names}; this distribution (ID=${distro.id}) is neither Debian- nor RHEL-like: install them with its package manager`;
  }
  const names = plan.installable.map((t) => t.name).join(', ');
  const command = ['sudo', ...installArgv(distro, plan.packages)].join(' ');
  return `provision: missing ${names} (npm test as root installs them without starting their services); install them with: ${command}`;
}

/**
 * A test that needs `tool`: false to run it; otherwise why it is skipped. In CI nothing is skipped (a
 * missing tool fails its tests); a tool the suite does not run on this distribution is skipped even when
 * present.
 * @param {Tool} tool
 * @param {{ distro: Distro, epelEnabled: boolean, present: boolean, ci: boolean }} machine
 * @returns {string | false}
 */
export function skipFor(tool, { distro, epelEnabled, present, ci }) {
  if (ci) return false;
  if (distro.family === 'rhel' && tool.rhel === null) return `not run on ${distro.id}: ${tool.note ?? ''}`;
  if (present) return false;
  const source = sourceOf(tool, distro, epelEnabled);
  const how =
    'why' in source
      ? source.why
      : `package ${source.package}, which npm test installs when run as root (its pretest says how otherwise)`;
  return `${tool.name} not found (${whereOf(tool)}): ${how}`;
}
