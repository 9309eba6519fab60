import { readFile } from 'node:fs/promises';

/** Peak resident set size (VmHWM) of a live process, in MB. */
export async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
  if (m?.[1] === undefined) throw new Error(`no VmHWM for pid ${pid}`);
  return Math.round(Number(m[1]) / 1024);
}

/** Current resident set size (VmRSS) of a live process, in MB. */
export async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (m?.[1] === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Math.round(Number(m[1]) / 1024);
}
