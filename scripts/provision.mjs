#!/usr/bin/env node
// npm test's pretest: makes sure this machine has what the suite runs (scripts/provision/tools.mjs) and
// the git builds it tests against (scripts/build-git.sh, cached in ~/.cache/git-fcgi).
//
//   node scripts/provision.mjs [--dry-run]
//
// - Everything present: one line, in a few tens of milliseconds.
// - Tools missing, run as root: installs them with apt-get (Debian, Ubuntu) or dnf (RHEL, Rocky, Alma,
//   CentOS Stream, Fedora), without starting their services (apt: a policy-rc.d that says no, as long
//   as the install runs; dnf starts none).
// - Tools missing, not root: one line with the exact install command, exit 2.
// - An optional tool this distribution does not provide (e.g. EPEL not enabled): a note; its tests skip.
// - --dry-run: says what root would run, changes nothing.
// For its own tests: GIT_FCGI_SYSROOT (a directory standing for /) and GIT_FCGI_OS_RELEASE (a file read
// instead of /etc/os-release); tools given as commands are looked up on PATH and in SYSROOT/usr/sbin etc.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planFor, rootCommands, stopLine } from './provision/plan.mjs';
import { isPresent, readMachine } from './provision/probe.mjs';
import { TOOLS } from './provision/tools.mjs';

const started = Date.now();
const elapsed = () => {
  const ms = Date.now() - started;
  return ms < 10_000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
};
const say = (/** @type {string} */ line) => process.stdout.write(`${line}\n`);
const dryRun = process.argv.includes('--dry-run');
const machine = readMachine(process.env);
const { distro } = machine;
const missingNow = () => TOOLS.filter((tool) => !isPresent(tool, machine));

const missing = missingNow();
const plan = planFor(missing, distro, machine.epelEnabled);
const requiredUnavailable = plan.unavailable.filter((u) => u.tool.tests === undefined);
if (requiredUnavailable.length > 0 || (plan.packages.length > 0 && process.getuid?.() !== 0)) {
  process.stderr.write(`${stopLine(distro, plan, missing)}\n`);
  process.exit(2);
}
if (plan.packages.length > 0) {
  const commands = rootCommands(distro, plan.packages);
  if (dryRun) say(`provision: would run: ${commands.map((c) => c.join(' ')).join(' && ')}`);
  else install(commands);
}
for (const { tool, why } of plan.unavailable) {
  say(`provision: no ${tool.name} on ${distro.id} (${why}): ${tool.tests ?? ''} skipped`);
}
buildGits();
say(
  `provision: ${TOOLS.length - plan.unavailable.length} of ${TOOLS.length} tools present, git builds ready (${elapsed()})`,
);

/**
 * Runs the install commands as root, then checks that the tools came.
 * @param {string[][]} commands
 */
function install(commands) {
  say(`provision: installing ${plan.packages.join(' ')} with ${commands.at(-1)?.[0]} (services not started)`);
  const failed = withoutServices(() => commands.map(runQuietly).find((output) => output !== null));
  const still = missingNow().filter((tool) => plan.installable.includes(tool));
  if (still.length > 0) {
    process.stderr.write(`${failed ?? ''}provision: still missing ${still.map((t) => t.name).join(', ')}\n`);
    process.exit(1);
  }
  say(`provision: installed in ${elapsed()}`);
}

/**
 * @param {string[]} argv
 * @returns {string | null} the end of its output when it failed
 */
function runQuietly([cmd = '', ...args]) {
  const result = spawnSync(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status === 0) return null;
  const output = `${result.stdout?.toString() ?? ''}${result.stderr?.toString() ?? result.error?.message ?? ''}`;
  return `${[cmd, ...args].join(' ')} failed:\n${output.split('\n').slice(-20).join('\n')}\n`;
}

/**
 * Debian's packages start their services on install (nginx, apache2, lighttpd, h2o, haproxy and caddy on
 * port 80, where they would also fail each other's install); a policy-rc.d that exits 101 stops that.
 * Only on Debian-likes, and only one this script made is removed.
 * @template T
 * @param {() => T} body
 */
function withoutServices(body) {
  const policy = '/usr/sbin/policy-rc.d';
  const made = distro.family === 'debian' && !existsSync(policy);
  if (made) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    return body();
  } finally {
    if (made) rmSync(policy, { force: true });
  }
}

/** The gits test/e2e/git-versions.test.ts runs against; scripts/build-git.sh knows which and where. */
function buildGits() {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'build-git.sh');
  if (spawnSync('bash', [script, '--check'], { stdio: 'ignore' }).status === 0) return;
  if (dryRun) return say(`provision: would run: bash ${script}`);
  const buildStarted = Date.now();
  say('provision: building the git versions the suite tests against (a few minutes each, cached)');
  const result = spawnSync('bash', [script], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) {
    process.stderr.write(`provision: scripts/build-git.sh failed (exit ${result.status})\n`);
    process.exit(1);
  }
  say(`provision: git builds ready in ${Math.round((Date.now() - buildStarted) / 1000)} s`);
}
