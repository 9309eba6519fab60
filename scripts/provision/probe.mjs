// What this machine has: its distribution, EPEL, and which tools of the table are present.

import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { distroOf } from './distro.mjs';

/**
 * @typedef {import('./tools.mjs').Tool} Tool
 * @typedef {object} Machine
 * @property {import('./distro.mjs').Distro} distro
 * @property {boolean} epelEnabled
 * @property {string} path the PATH commands are looked up on
 * @property {string} sysroot prefixed to every absolute path checked ('' but in the provisioning's own tests)
 */

/** Root's PATH has these; a user's often does not, and useradd and friends live there. */
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** @param {string} file @param {number} mode */
function accessible(file, mode) {
  try {
    accessSync(file, mode);
    return true;
  } catch {
    return false;
  }
}

/**
 * The machine as the environment describes it: GIT_FCGI_SYSROOT (a directory standing for /) and
 * GIT_FCGI_OS_RELEASE (an os-release file) exist for the provisioning's tests.
 * @param {NodeJS.ProcessEnv} env
 * @returns {Machine}
 */
export function readMachine(env) {
  const sysroot = env['GIT_FCGI_SYSROOT'] ?? '';
  let osRelease = '';
  try {
    osRelease = readFileSync(env['GIT_FCGI_OS_RELEASE'] ?? `${sysroot}/etc/os-release`, 'utf8');
  } catch {
    // No os-release: an unknown distribution, which distroOf reports as such.
  }
  return {
    distro: distroOf(osRelease),
    epelEnabled: accessible(`${sysroot}/etc/yum.repos.d/epel.repo`, constants.F_OK),
    path: env['PATH'] ?? '',
    sysroot,
  };
}

/**
 * @param {Tool} tool
 * @param {Machine} machine
 */
export function isPresent(tool, { path, sysroot }) {
  if (tool.files !== undefined) return tool.files.some((file) => accessible(sysroot + file, constants.F_OK));
  const command = tool.command ?? tool.name;
  const dirs = [...path.split(delimiter).filter((dir) => dir !== ''), ...SBIN.map((dir) => sysroot + dir)];
  return dirs.some((dir) => accessible(join(dir, command), constants.X_OK));
}
