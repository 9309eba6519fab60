import { readdir, readFile, readlink } from 'node:fs/promises';

/** One line of /proc/PID/stat, the fields the harness needs. */
export interface ProcStat {
  readonly pid: number;
  readonly comm: string;
  /** R, S, D, Z, T, ... — 'Z' is a zombie: exited, not yet reaped by its parent. */
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
}

/** Undefined when the process is gone, including when it vanishes halfway through the read. */
export async function readStat(pid: number): Promise<ProcStat | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  // comm may itself contain spaces and parentheses, so split at the last ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const rest = text.slice(close + 2).split(' ');
  const [state, ppid, pgrp] = rest;
  if (open < 0 || close < open || state === undefined || ppid === undefined || pgrp === undefined)
    return undefined;
  return { pid, comm: text.slice(open + 1, close), state, ppid: Number(ppid), pgrp: Number(pgrp) };
}

export async function listProcesses(): Promise<ProcStat[]> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  const stats = await Promise.all(pids.map(readStat));
  return stats.filter((s): s is ProcStat => s !== undefined);
}

/** Members of a process group that are still running; zombies are left out because they cannot be killed. */
export async function liveGroupMembers(pgid: number): Promise<ProcStat[]> {
  return (await listProcesses()).filter((p) => p.pgrp === pgid && p.state !== 'Z');
}

/** The working directory, without the ' (deleted)' the kernel appends once the directory is removed. */
export async function readCwd(pid: number): Promise<string | undefined> {
  const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined);
  return cwd?.replace(/ \(deleted\)$/, '');
}

export async function readEnviron(pid: number): Promise<Map<string, string>> {
  const raw = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
  const env = new Map<string, string>();
  for (const entry of raw.split('\0')) {
    const eq = entry.indexOf('=');
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/**
 * Live processes (any program: sh, sleep, git) that a backend for `root` started: they carry
 * its GIT_PROJECT_ROOT in their environment.
 */
export async function backendsOf(root: string): Promise<ProcStat[]> {
  const found: ProcStat[] = [];
  for (const p of await listProcesses()) {
    if (p.state === 'Z') continue;
    if ((await readEnviron(p.pid)).get('GIT_PROJECT_ROOT') === root) found.push(p);
  }
  return found;
}

/** USER_HZ: the unit of /proc/PID/stat's times, 100 on every Linux architecture in use. */
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time (user + system) the process has used so far, in seconds; undefined once it is gone. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  // After "pid (comm) ": state is field 3, utime and stime fields 14 and 15.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return Number.isFinite(utime + stime) ? (utime + stime) / CLOCK_TICKS_PER_SECOND : undefined;
}

/** The descriptors the process holds: fd number -> what it points to. */
export async function openDescriptors(pid: number): Promise<Map<number, string>> {
  const fds = new Map<number, string>();
  for (const name of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const target = await readlink(`/proc/${pid}/fd/${name}`).catch(() => undefined);
    if (target !== undefined) fds.set(Number(name), target);
  }
  return fds;
}
