import { closeSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** O_CLOEXEC in /proc/PID/fdinfo's octal `flags:` (its value on every architecture Node.js runs on). */
const O_CLOEXEC = 0o2000000;

/**
 * Closes the descriptors above stderr that this process inherited without close-on-exec (a
 * launching shell's `exec 251<file`, a supervisor's leftovers), and returns them, described,
 * for the log. Call it once the listeners are bound.
 *
 * Why: they would reach every backend Node's own spawn starts (spawn_helper = off, or the
 * helper missing), and Node cannot keep them from it: it has no fcntl to set close-on-exec,
 * and libuv closes nothing in the child. Why these are safe to close: Node opens everything
 * with close-on-exec, and libuv sets it on a socket it adopts (systemd's fd 3, once bound), so
 * what lacks it is no one's here. daemon(7) has a daemon close such descriptors at start.
 */
export function closeInheritedDescriptors(): string[] {
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return []; // no /proc: nothing to go by
  }
  const closed: string[] = [];
  for (const fd of names.map(Number).filter((n) => n > 2)) {
    let flags: number;
    let target: string;
    try {
      const fdinfo = readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
      flags = parseInt(/^flags:\s*([0-7]+)/m.exec(fdinfo)?.[1] ?? '', 8);
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the descriptor readdirSync itself used, closed by now
    }
    if (Number.isNaN(flags) || (flags & O_CLOEXEC) !== 0) continue;
    closeSync(fd);
    closed.push(`${fd} (${target})`);
  }
  return closed;
}
