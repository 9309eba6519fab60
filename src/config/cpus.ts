import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * The CPUs git gets: the affinity mask (availableParallelism) capped by a cgroup CPU quota
 * (`docker --cpus`, systemd's CPUQuota=, a Kubernetes limit), which Node and git both ignore.
 * A quota of 1.5 CPUs counts as 2: the fraction still runs git.
 */
export function cpusForGit(read: (file: string) => string | null = readOrNull): number {
  const quota = cgroupQuota(read);
  const cpus = availableParallelism();
  return quota === null ? cpus : Math.max(1, Math.min(cpus, Math.ceil(quota)));
}

/** The smallest CPU quota of this process's cgroup and its ancestors, in CPUs; null: none. */
export function cgroupQuota(read: (file: string) => string | null): number | null {
  const self = read('/proc/self/cgroup') ?? '';
  const quotas: number[] = [];
  for (const line of self.split('\n')) {
    // "0::/system.slice/git-fcgi.service" (v2) or "4:cpu,cpuacct:/docker/ID" (v1).
    const match = /^\d+:([^:]*):(\/.*)$/.exec(line);
    if (match?.[1] === undefined || match[2] === undefined) continue;
    const controllers = match[1].split(',');
    if (match[1] === '') quotas.push(...walk('/sys/fs/cgroup', match[2], (dir) => v2Quota(read, dir)));
    else if (controllers.includes('cpu')) {
      const mount = `/sys/fs/cgroup/${match[1]}`;
      const base = read(join(mount, 'cpu.cfs_quota_us')) === null ? '/sys/fs/cgroup/cpu' : mount;
      quotas.push(...walk(base, match[2], (dir) => v1Quota(read, dir)));
    }
  }
  return quotas.length === 0 ? null : Math.min(...quotas);
}

/**
 * Quotas from the cgroup's directory up to the mount's root. Inside a container the process's
 * path may not exist under the mount (the container sees its own cgroup as the root): the
 * root's own quota still counts.
 */
function walk(mount: string, path: string, quota: (dir: string) => number | null): number[] {
  const found: number[] = [];
  for (let dir = join(mount, path).replace(/\/+$/, ''); ; dir = dirname(dir)) {
    const q = quota(dir);
    if (q !== null) found.push(q);
    if (!dir.startsWith(`${mount}/`)) return found;
  }
}

/** cgroup v2 cpu.max: "max 100000" (no limit) or "QUOTA PERIOD" in microseconds. */
export function parseCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  return ratio(quota, period);
}

function v2Quota(read: (file: string) => string | null, dir: string): number | null {
  const text = read(join(dir, 'cpu.max'));
  return text === null ? null : parseCpuMax(text);
}

function v1Quota(read: (file: string) => string | null, dir: string): number | null {
  return ratio(read(join(dir, 'cpu.cfs_quota_us'))?.trim(), read(join(dir, 'cpu.cfs_period_us'))?.trim());
}

function ratio(quota: string | undefined, period: string | undefined): number | null {
  const q = Number(quota);
  const p = Number(period);
  // v1 writes -1 for no limit, v2 "max".
  return Number.isFinite(q) && Number.isFinite(p) && q > 0 && p > 0 ? q / p : null;
}

function readOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}
