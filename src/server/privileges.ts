import { execFileSync } from 'node:child_process';
import { userInfo } from 'node:os';
import { GitFcgiError } from '../errors.js';
import type { Owner } from '../config/values.js';

/** Who the daemon (and so every backend) runs as after binding. */
export interface Identity {
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
  /** The home directory in the password database ('' when it names none). */
  readonly home: string;
}

/** Numeric owner for chown; -1 leaves that part unchanged. */
export interface NumericOwner {
  readonly uid: number;
  readonly gid: number;
}

function privilegeError(message: string, cause?: unknown): GitFcgiError {
  return new GitFcgiError('ERR_PRIVILEGES', message, cause === undefined ? {} : { cause });
}

/**
 * One passwd or group entry through NSS (getent), so LDAP/SSSD accounts work as they do for
 * chown(1). Node has no getpwnam. `setting` names where the name came from, for the error.
 */
function getent(database: 'passwd' | 'group', name: string, setting?: string): string[] {
  let line: string;
  try {
    line = execFileSync('getent', [database, name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch (err) {
    const what = database === 'passwd' ? 'user' : 'group';
    const where = setting === undefined ? '' : `[server] ${setting}: `;
    throw privilegeError(`${where}no such ${what}: ${name}`, err);
  }
  return (line.split('\n')[0] ?? '').split(':');
}

/** The name of a uid or gid for messages; the number itself when NSS has none. */
export function accountName(database: 'passwd' | 'group', id: number): string {
  try {
    return getent(database, String(id))[0] || String(id);
  } catch {
    return String(id);
  }
}

export function lookupUser(name: string, setting?: string): Identity {
  const [user = name, , uid, gid, , home = ''] = getent('passwd', name, setting);
  return { user, uid: Number(uid), gid: Number(gid), home };
}

export function lookupGroup(name: string, setting?: string): number {
  const [, , gid] = getent('group', name, setting);
  return Number(gid);
}

/** The identity `user`/`group` ask for, or null to stay who started the daemon. */
export function resolveRunAs(user: string | null, group: string | null): Identity | null {
  if (user === null) {
    if (group !== null) throw privilegeError('group is set without user: set user as well');
    return null;
  }
  const identity = lookupUser(user, 'user');
  return group === null ? identity : { ...identity, gid: lookupGroup(group, 'group') };
}

export function resolveOwner(owner: Owner): NumericOwner {
  return {
    uid: owner.user === null ? -1 : lookupUser(owner.user, 'socket_owner').uid,
    gid: owner.group === null ? -1 : lookupGroup(owner.group, 'socket_owner'),
  };
}

/**
 * Refuses, before anything is bound, a setup where git and its hooks would run as root (as
 * php-fpm and spawn-fcgi do), and one that asks for a user without the rights to switch.
 */
export function checkRunAs(identity: Identity | null, allowRoot: boolean): void {
  const uid = process.getuid?.() ?? -1;
  if (identity !== null && uid !== 0 && uid !== identity.uid) {
    throw privilegeError(`user is ${identity.user}, but only root can switch users (running as uid ${uid})`);
  }
  const finalUid = identity?.uid ?? uid;
  if (finalUid === 0 && !allowRoot) {
    throw privilegeError(
      'refusing to run as root: set user (e.g. --user git), or allow_root = true (--allow-root) if you mean it',
    );
  }
}

/**
 * HOME for the backends: `home` as configured ('none': no HOME), else the home directory of the
 * user git-fcgi serves as, as sshd would set it; null when the password database has none.
 */
export function backendHome(home: string | null, runAs: Identity | null): string | null {
  if (home === 'none') return null;
  if (home !== null) return home;
  if (runAs !== null) return runAs.home || null;
  try {
    return userInfo().homedir || null;
  } catch {
    return null; // a uid without a passwd entry (containers): no HOME, as before
  }
}

/** The name of the user the backends run as: `runAs`, else whoever runs git-fcgi. */
export function servingUser(runAs: Identity | null): string {
  if (runAs !== null) return runAs.user;
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`; // no passwd entry (containers)
  }
}

/** Switches to `identity` for good: supplementary groups, then group, then user. */
export function dropPrivileges(identity: Identity): void {
  if (process.getuid?.() === identity.uid && process.getgid?.() === identity.gid) return;
  try {
    // initgroups(3): the user's supplementary groups (e.g. a repositories group), as login does.
    // Node has it; @types/node leaves it out.
    const { initgroups } = process as NodeJS.Process & {
      initgroups?: (user: string, extraGroup: number) => void;
    };
    if (initgroups === undefined) throw new Error('process.initgroups is not available');
    initgroups.call(process, identity.user, identity.gid);
    process.setgid?.(identity.gid);
    process.setuid?.(identity.uid);
  } catch (err) {
    throw privilegeError(`cannot switch to user ${identity.user}: ${(err as Error).message}`, err);
  }
  if (process.getuid?.() !== identity.uid || process.geteuid?.() !== identity.uid) {
    throw privilegeError(`still running as uid ${process.geteuid?.() ?? '?'} after switching users`);
  }
}
