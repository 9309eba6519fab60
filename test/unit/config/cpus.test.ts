import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, test } from 'node:test';
import { cgroupQuota, cpusForGit, parseCpuMax } from '../../../src/config/cpus.js';
import { defaultMaxChildren } from '../../../src/config/settings.js';

const files =
  (entries: Record<string, string>) =>
  (file: string): string | null =>
    entries[file] ?? null;

describe('the CPUs git gets', () => {
  test('cgroup v2 cpu.max: quota / period, or no limit', () => {
    assert.equal(parseCpuMax('200000 100000\n'), 2);
    assert.equal(parseCpuMax('150000 100000'), 1.5);
    assert.equal(parseCpuMax('max 100000\n'), null);
    assert.equal(parseCpuMax(''), null);
  });

  test("v2: the smallest quota of the process's cgroup and its ancestors (systemd CPUQuota= on a slice)", () => {
    const read = files({
      '/proc/self/cgroup': '0::/system.slice/git-fcgi.service\n',
      '/sys/fs/cgroup/system.slice/git-fcgi.service/cpu.max': 'max 100000\n',
      '/sys/fs/cgroup/system.slice/cpu.max': '300000 100000\n',
    });
    assert.equal(cgroupQuota(read), 3);
  });

  test('v2 in a container: its cgroup is the root of the mount', () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '50000 100000\n' });
    assert.equal(cgroupQuota(read), 0.5);
    assert.equal(cpusForGit(read), 1, 'half a CPU still runs git');
  });

  test('v1 (cpu,cpuacct), the path not visible inside the container: the mount root counts', () => {
    const read = files({
      '/proc/self/cgroup': '12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '100000\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    assert.equal(cgroupQuota(read), 1);
  });

  test('v1 without a limit (-1), or no cgroup files at all: the affinity mask alone', () => {
    const read = files({
      '/proc/self/cgroup': '3:cpu:/\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
    });
    assert.equal(cgroupQuota(read), null);
    assert.equal(cpusForGit(read), availableParallelism());
    assert.equal(cpusForGit(files({})), availableParallelism());
  });

  test('a quota above the affinity mask does not raise the count', () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '100000000 100000\n' });
    assert.equal(cpusForGit(read), availableParallelism());
  });
});

describe('max_children default', () => {
  test('one per CPU for pack-objects, two for requests waiting on the network, at least 4', () => {
    assert.equal(defaultMaxChildren(1), 4);
    assert.equal(defaultMaxChildren(2), 4);
    assert.equal(defaultMaxChildren(8), 10);
    assert.equal(defaultMaxChildren(64), 66);
  });
});
