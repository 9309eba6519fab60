import { readdir } from 'node:fs/promises';
import { listProcesses } from './procfs.js';
import { rssMb } from './rss.js';

/** Open file descriptors of a live process (/proc/PID/fd). */
export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** Children of `pid` that exited and were never reaped. */
export async function zombieChildren(pid: number): Promise<number[]> {
  return (await listProcesses()).filter((p) => p.ppid === pid && p.state === 'Z').map((p) => p.pid);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface Health {
  readonly fds: number;
  readonly rssMb: number;
  readonly zombies: number;
}

export async function health(pid: number): Promise<Health> {
  return { fds: await fdCount(pid), rssMb: await rssMb(pid), zombies: (await zombieChildren(pid)).length };
}

/** `fds, RSS` before -> after, for test diagnostics and the resolve note. */
export function describeHealth(before: Health, after: Health): string {
  return `fds ${before.fds} -> ${after.fds}, RSS ${before.rssMb} -> ${after.rssMb} MB, zombies ${after.zombies}`;
}
