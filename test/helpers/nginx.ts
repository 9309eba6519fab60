import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defer, type Cleanup } from './cleanup.js';
import { DeadlineError, waitFor } from './deadline.js';
import { errorLogPath, pidPath, renderConf, type NginxConfig } from './nginx-conf.js';
import { freePort, run, startProcess, type StartedProcess } from './proc.js';
import { acceptsTcp } from './net-probe.js';
import { liveGroupMembers } from './procfs.js';
import { tmpDir } from './tmp.js';

export { gitLocation, type GitLocationOptions, type NginxConfig, type NginxServer } from './nginx-conf.js';

const NGINX = '/usr/sbin/nginx';

export interface Nginx {
  /** One per server, in the order given. */
  readonly ports: readonly number[];
  readonly prefix: string;
  /** The master process, also its process group. */
  readonly pid: number;
  /** `http://127.0.0.1:PORT` of server `index` plus `path`. */
  url(index?: number, path?: string): string;
  errorLog(): Promise<string>;
  /**
   * SIGHUP, optionally with new servers (same count, same ports). Resolves once new workers have started and,
   * unless `drain` is false, the old ones have exited: until then a kept-alive connection may still be served
   * by an old worker with the old config. Pass `drain: false` when a request is meant to outlive the reload.
   */
  reload(config?: NginxConfig, opts?: { readonly drain?: boolean }): Promise<void>;
  stop(): Promise<void>;
}

export interface StartNginxOptions extends NginxConfig {
  readonly readyTimeoutMs?: number;
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

class NginxExited extends Error {}

// -e sends the errors nginx logs before it has read the config into the prefix, not /var/log/nginx.
const nginxArgs = (prefix: string, confFile: string): string[] => [
  '-p',
  `${prefix}/`,
  '-c',
  confFile,
  '-e',
  errorLogPath(prefix),
];

/** Starts nginx in a temp prefix with one `listen 127.0.0.1:PORT` per server; `t` stops it and removes the prefix. */
export async function startNginx(t: Cleanup, opts: StartNginxOptions): Promise<Nginx> {
  const prefix = await tmpDir(t, 'nginx-');
  if (opts.user !== undefined) await chmod(prefix, 0o755);
  const confFile = join(prefix, 'nginx.conf');
  const errorLog = (): Promise<string> => readFile(errorLogPath(prefix), 'utf8').catch(() => '');
  // Ports from freePort() can be taken by someone else before nginx binds them; then try fresh ones.
  for (let attempt = 1; ; attempt++) {
    const ports = await distinctFreePorts(opts.servers.length);
    await writeFile(confFile, renderConf(prefix, ports, opts));
    await rm(pidPath(prefix), { force: true });
    const proc = await startProcess(t, NGINX, nginxArgs(prefix, confFile));
    try {
      await waitUntilServing(proc, prefix, ports, opts.readyTimeoutMs ?? 10_000);
      return handle(t, proc, prefix, ports, confFile, errorLog);
    } catch (error) {
      await proc.stop();
      const log = await errorLog();
      if (error instanceof NginxExited && /Address already in use/.test(log + proc.stderr()) && attempt < 5)
        continue;
      const conf = await readFile(confFile, 'utf8');
      const why = error instanceof Error ? error.message : String(error);
      const details = `${proc.output()}\n--- error.log ---\n${log}\n--- conf ---\n${conf}`;
      throw new Error(`nginx did not start: ${why}\n${details}`, { cause: error });
    }
  }
}

async function waitUntilServing(
  proc: StartedProcess,
  prefix: string,
  ports: readonly number[],
  timeoutMs: number,
) {
  // The pid file is written after the listening sockets are bound, so it tells our nginx from a stranger
  // that happens to accept on the same port.
  await waitFor(
    async () => {
      const status = proc.exitStatus();
      if (status !== undefined) throw new NginxExited(`nginx exited (${status.signal ?? status.code})`);
      const pid = (await readFile(pidPath(prefix), 'utf8').catch(() => '')).trim();
      return (
        pid === String(proc.pid) && (await Promise.all(ports.map((port) => acceptsTcp(port)))).every(Boolean)
      );
    },
    { timeoutMs, what: `nginx to serve on ${ports.join(', ')}` },
  );
}

function handle(
  t: Cleanup,
  proc: StartedProcess,
  prefix: string,
  ports: readonly number[],
  confFile: string,
  errorLog: () => Promise<string>,
): Nginx {
  const nginx: Nginx = {
    ports,
    prefix,
    pid: proc.pid,
    url: (index = 0, path = '/') => {
      const port = ports[index];
      if (port === undefined) throw new RangeError(`no server ${index}; there are ${ports.length}`);
      return `http://127.0.0.1:${port}${path}`;
    },
    errorLog,
    reload: async (config, { drain = true } = {}) => {
      if (config !== undefined) {
        if (config.servers.length !== ports.length) throw new Error('reload must keep the number of servers');
        await writeFile(confFile, renderConf(prefix, ports, config));
        // Fail here, with nginx's own message, rather than have the master silently keep the old config.
        const test = await run(NGINX, ['-t', ...nginxArgs(prefix, confFile)], { timeoutMs: 10_000 });
        if (test.code !== 0)
          throw new Error(`nginx -t rejects the new config:\n${test.stderr.toString('utf8')}`);
      }
      const before = (await errorLog()).length;
      const oldWorkers = (await liveGroupMembers(proc.pid))
        .filter((p) => p.pid !== proc.pid)
        .map((p) => p.pid);
      proc.signal('SIGHUP');
      await waitFor(
        async () => /reconfiguring[\s\S]*start worker process/.test((await errorLog()).slice(before)),
        {
          timeoutMs: 10_000,
          what: 'nginx to start new workers after SIGHUP',
        },
      ).catch(async (error: unknown) => {
        if (!(error instanceof DeadlineError)) throw error;
        throw new Error(`${error.message}\n--- error.log ---\n${(await errorLog()).slice(before)}`, {
          cause: error,
        });
      });
      if (!drain) return;
      await waitFor(
        async () => {
          const live = new Set((await liveGroupMembers(proc.pid)).map((p) => p.pid));
          return oldWorkers.every((pid) => !live.has(pid));
        },
        { timeoutMs: 10_000, what: `old nginx workers ${oldWorkers.join(', ')} to exit after reload` },
      );
    },
    stop: async () => {
      await proc.stop();
    },
  };
  defer(t, () => nginx.stop());
  return nginx;
}

/** An htpasswd file `dir/htpasswd` made by the htpasswd binary: B = bcrypt, m = APR1-MD5, s = SHA-1. */
export async function htpasswd(
  t: Cleanup,
  dir: string,
  users: Readonly<Record<string, string>>,
  scheme: 'B' | 'm' | 's' = 'B',
): Promise<string> {
  const file = join(dir, 'htpasswd');
  await writeFile(file, '');
  defer(t, () => rm(file, { force: true }));
  for (const [user, password] of Object.entries(users)) {
    // -i reads the password from stdin, so it never appears in a process listing or needs shell quoting.
    const result = await run('htpasswd', ['-i', `-${scheme}`, file, user], {
      input: password,
      timeoutMs: 10_000,
    });
    if (result.code !== 0) throw new Error(`htpasswd failed for ${user}: ${result.stderr.toString('utf8')}`);
  }
  return file;
}
