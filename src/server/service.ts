import { reloadConfig } from '../config/reload.js';
import { effectiveQueue, type Config } from '../config/settings.js';
import { GitFcgiError, describeError } from '../errors.js';
import type { ClosableLogger, LogOptions, Logger } from '../log.js';
import { spawnBackend, type Spawner } from '../request/backend-process.js';
import { RefAdvertisementCache } from '../advertisement/cache.js';
import { FetchResponseCache } from '../fetch-cache/fetch-cache.js';
import { GitInstalls } from '../advertisement/git-install.js';
import { createRequestHandler, type HandlerSettings } from '../request/handle-request.js';
import { SPAWN_HELPER_PATH, SpawnHelper } from '../request/spawn-helper.js';
import { Daemon } from './daemon.js';
import { closeInheritedDescriptors } from './inherited-fds.js';
import { Limiter } from './limiter.js';
import { writePidFile } from './pid-file.js';
import {
  backendHome,
  checkRunAs,
  dropPrivileges,
  resolveOwner,
  resolveRunAs,
  servingUser,
  type Identity,
  type NumericOwner,
} from './privileges.js';
import { ServerStats } from './status.js';
import { startPackCache } from '../pack-cache/start.js';
import { SPLICE_HELPER_PATH, SpliceHelper, spliceRoute } from '../request/splice-helper.js';
import type { PackCache } from '../pack-cache/pack-cache.js';

export interface ServiceOptions {
  readonly config: Config;
  readonly log: ClosableLogger;
  /** The backend to run for a configuration (its own, or git's default one). */
  readonly backendFor: (config: Config) => string;
  readonly serverSoftware: string;
  /** For SIGHUP: reads the configuration again, and finds what would fail at the first request. */
  readonly load: () => Config;
  readonly check: (config: Config) => string[];
}

/** Accounts resolved and the root rule checked: everything that can fail before binding. */
export interface Preflight {
  readonly runAs: Identity | null;
  readonly socketOwner: NumericOwner | null;
}

export function preflight(config: Config): Preflight {
  const runAs = resolveRunAs(config.user, config.group);
  const socketOwner = config.socketOwner === null ? null : resolveOwner(config.socketOwner);
  checkRunAs(runAs, config.allowRoot);
  return { runAs, socketOwner };
}

const limits = (c: Config) => ({
  maxChildren: c.maxChildren,
  queue: effectiveQueue(c),
  queueTimeoutMs: c.queueTimeoutMs,
});

export const logOptions = (c: Config): LogOptions => ({
  level: c.logLevel,
  format: c.logFormat,
  file: c.logFile,
  accessLog: c.accessLog,
  accessFile: c.accessFile,
});

/**
 * One running git-fcgi: binds, writes the pid file, drops privileges, then serves until
 * stop(); reload() swaps in a new configuration. Composes the pieces, decides nothing itself.
 */
export class Service {
  private config: Config;
  private handlerSettings: HandlerSettings;
  private readonly limiter: Limiter;
  private readonly stats = new ServerStats();
  private readonly daemon: Daemon;
  private removePidFile: () => string | null = () => null;
  private helper: SpawnHelper | null = null;
  private splicer: SpliceHelper | null = null;
  private refCache: RefAdvertisementCache | null;
  private fetchCache: FetchResponseCache | null;
  private packCache: { readonly cache: PackCache; readonly stop: () => Promise<void> } | null = null;
  private readonly gitInstalls = new GitInstalls();

  private constructor(
    private readonly options: ServiceOptions,
    private readonly checked: Preflight,
  ) {
    this.config = options.config;
    this.handlerSettings = this.settingsFor(options.config);
    this.limiter = new Limiter(limits(options.config));
    this.refCache = refCacheFor(options.config);
    this.fetchCache = fetchCacheFor(options.config);
    const { log } = options;
    this.daemon = new Daemon({
      config: options.config,
      log,
      socketOwner: checked.socketOwner,
      status: () =>
        this.stats.snapshot({
          active: this.limiter.active,
          queued: this.limiter.queued,
          maxActiveReached: this.limiter.maxActiveReached,
          maxChildren: this.config.maxChildren,
          queue: effectiveQueue(this.config),
          pack: this.packCache?.cache.figures() ?? null,
          fetch: this.fetchCache?.figures() ?? null,
        }),
      handler: createRequestHandler({
        settings: () => this.handlerSettings,
        log,
        acquireSlot: (signal) => this.limiter.acquire(signal),
        spawn: this.spawn,
        events: this.stats,
        refCache: () => this.refCache,
        fetchCache: () => this.fetchCache,
        gitInstalls: this.gitInstalls,
        packCache: () => this.packCache?.cache ?? null,
        splice: () => (this.splicer?.available === true ? spliceRoute(this.splicer) : null),
      }),
    });
  }

  /** Returns the running service and what it listens on; throws (having bound nothing left over) on failure. */
  static async start(options: ServiceOptions): Promise<{ service: Service; listening: string[] }> {
    const checked = preflight(options.config);
    const service = new Service(options, checked);
    let listening: string[];
    try {
      listening = await service.daemon.start();
      for (const fd of closeInheritedDescriptors()) {
        options.log.info(`closed descriptor ${fd}, inherited without close-on-exec: backends get none`);
      }
      const { pidFile } = options.config;
      if (pidFile !== null) service.removePidFile = writePidFile(pidFile);
      if (checked.runAs !== null) dropPrivileges(checked.runAs);
      // After the privilege drop: the helper, and so every backend, runs as the configured user.
      service.helper = await startSpawnHelper(options.config.spawnHelper, options.log);
      service.splicer = await startSpliceHelper(options.config, service.helper !== null, options.log);
      service.packCache = await startPackCache(options.config, { spawn: service.spawn, log: options.log });
      await service.probeGit(options.config);
      service.daemon.open();
    } catch (err) {
      await service.daemon.stop(0);
      await service.packCache?.stop();
      service.helper?.close();
      service.splicer?.close();
      service.removePidFile();
      throw err;
    }
    return { service, listening };
  }

  private readonly spawn: Spawner = (...how) =>
    this.helper?.available === true ? this.helper.spawn(...how) : spawnBackend(...how);

  get activeRequests(): number {
    return this.daemon.activeRequests;
  }

  get shutdownTimeoutMs(): number {
    return this.config.shutdownTimeoutMs;
  }

  async reload(): Promise<void> {
    const { log } = this.options;
    this.config = await reloadConfig(this.config, {
      load: this.options.load,
      check: this.options.check,
      log,
      reopenLogs: () => log.reconfigure(logOptions(this.config)),
      apply: async (next) => {
        await log.reconfigure(logOptions(next));
        this.handlerSettings = this.settingsFor(next);
        this.limiter.update(limits(next));
        // A reload also empties the ref cache: how an admin makes git-fcgi forget what it kept.
        this.refCache = refCacheFor(next);
        this.fetchCache = fetchCacheFor(next);
        await this.probeGit(next);
        this.daemon.reconfigure(next);
      },
    });
  }

  /** Learns the version of the git behind the backend before the first request needs it. */
  private async probeGit(config: Config): Promise<void> {
    const install = this.gitInstalls.of(this.options.backendFor(config));
    if (install === null) return;
    const version = await this.gitInstalls.probe(install.program);
    this.options.log.debug('git behind the backend', {
      program: install.program,
      version: version ?? 'unknown',
    });
  }

  /** Stops accepting, waits up to shutdown_timeout, removes socket and pid file. Returns how many requests were aborted. */
  async stop(): Promise<number> {
    const aborted = await this.daemon.stop(this.config.shutdownTimeoutMs);
    await this.packCache?.stop();
    this.helper?.close();
    this.splicer?.close();
    const problem = this.removePidFile();
    if (problem !== null) this.options.log.warn(problem);
    return aborted;
  }

  private settingsFor(config: Config): HandlerSettings {
    return Object.freeze({
      ...config,
      backend: this.options.backendFor(config),
      serverSoftware: this.options.serverSoftware,
      home: backendHome(config.home, this.checked.runAs),
      servingUser: servingUser(this.checked.runAs),
    });
  }
}

function fetchCacheFor(config: Config): FetchResponseCache | null {
  return config.fetchCacheBytes > 0 ? new FetchResponseCache(config.fetchCacheBytes) : null;
}

function refCacheFor(config: Config): RefAdvertisementCache | null {
  return config.refCacheBytes > 0 ? new RefAdvertisementCache(config.refCacheBytes) : null;
}

/**
 * The splice helper as `splice` says; null: every byte through Node. It needs the spawn
 * helper, whose sockets are the backends' stdout (Node's own pipes keep bytes it has read).
 */
async function startSpliceHelper(
  config: Config,
  spawnHelper: boolean,
  log: Logger,
): Promise<SpliceHelper | null> {
  if (config.splice === 'off' || !spawnHelper) return null;
  try {
    return await SpliceHelper.start(SPLICE_HELPER_PATH, log);
  } catch (err) {
    log.warn(`splice helper unavailable, large responses go through the daemon: ${describeError(err)}`);
    return null;
  }
}

/** The spawn helper as `spawn_helper` says: null means Node's own spawn. */
async function startSpawnHelper(mode: Config['spawnHelper'], log: Logger): Promise<SpawnHelper | null> {
  if (mode === 'off') return null;
  try {
    return await SpawnHelper.start(SPAWN_HELPER_PATH, log);
  } catch (err) {
    if (mode === 'on')
      throw new GitFcgiError('ERR_CONFIG', `[server] spawn_helper = on: ${describeError(err)}`);
    log.warn(
      `spawn helper unavailable, backends are started by forking the daemon (slower): ${describeError(err)}`,
    );
    return null;
  }
}
