#!/usr/bin/env node
// First, before anything allocates: caps the young generation (see heap-limits.ts).
import './heap-limits.js';
import { execFileSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { checkAccess } from './access/check-access.js';
import { runHookCommand } from './cli-hooks.js';
import { buildProgram } from './cli-program.js';
import { formatConfig, loadConfig, type Overrides } from './config/load.js';
import type { Config } from './config/settings.js';
import { DEMO_USER, ensureDemoRepository, prepareDemo } from './demo.js';
import { describeError } from './errors.js';
import { createLogger, logFileProblems } from './log.js';
import { SPAWN_HELPER_PATH } from './request/spawn-helper.js';
import { checkPackCache } from './pack-cache/start.js';
import { resolveRunAs } from './server/privileges.js';
import { Service, logOptions, preflight } from './server/service.js';
import { VERSION } from './version.js';

function fail(message: string): never {
  process.stderr.write(`git-fcgi: ${message}\n`);
  process.exit(1);
}

function defaultBackend(): string {
  try {
    const execPath = execFileSync('git', ['--exec-path'], { encoding: 'utf8' }).trim();
    return `${execPath}/git-http-backend`;
  } catch (err) {
    return fail(`cannot find git http-backend (is git installed?): ${describeError(err)}; set [git] backend`);
  }
}

/** What --check-config verifies beyond syntax: the things that would fail at the first request. */
function checkEnvironment(config: Config, backend: string): string[] {
  const problems: string[] = [];
  try {
    accessSync(backend, constants.X_OK);
  } catch {
    problems.push(`[git] backend: ${backend} is not an executable file`);
  }
  if (config.projectRoot !== null) {
    try {
      if (!statSync(config.projectRoot).isDirectory()) throw new Error();
    } catch {
      problems.push(`[git] project_root: ${config.projectRoot} is not a directory`);
    }
  }
  if (config.spawnHelper === 'on') {
    try {
      accessSync(SPAWN_HELPER_PATH, constants.X_OK);
    } catch {
      problems.push(
        `[server] spawn_helper = on: ${SPAWN_HELPER_PATH} is missing (built by npm ci with a C compiler)`,
      );
    }
  }
  problems.push(...checkAccess(config.access));
  problems.push(...checkPackCache(config, servingUid(config)));
  return problems;
}

/** The uid backends (and the pack cache) run as: the configured user's, else this process's. */
function servingUid(config: Config): number {
  try {
    return resolveRunAs(config.user, config.group)?.uid ?? process.getuid?.() ?? 0;
  } catch {
    return process.getuid?.() ?? 0;
  }
}

async function main(): Promise<void> {
  const { program, flagToSetting } = buildProgram();
  program.parse();
  const opts: Record<string, unknown> = program.opts();
  const overrides: Overrides = {};
  for (const [attribute, name] of flagToSetting) {
    const value = opts[attribute];
    if (typeof value === 'string' || typeof value === 'boolean') overrides[name] = value;
  }
  const demo = opts.demo;
  let configFile = typeof opts.config === 'string' ? opts.config : null;
  // With -c FILE, the demo serves under that file's rules; otherwise under its own, with a demo user.
  const demoAccess =
    demo !== undefined && configFile === null
      ? prepareDemo(typeof demo === 'string' ? demo : undefined)
      : undefined;
  if (demo !== undefined) {
    overrides.projectRoot =
      demoAccess?.root ?? ensureDemoRepository(typeof demo === 'string' ? demo : undefined);
    overrides.exportAll = true;
    overrides.http ??= '127.0.0.1:8080';
    // The demo serves a throwaway repository on localhost: whoever starts it may run it.
    overrides.allowRoot ??= true;
    configFile ??= demoAccess?.configFile ?? null;
  }
  // Root: a configured service (-c FILE) must say `user = …` or `allow_root = true`. Started
  // from flags alone (the documented one-liner, scripts, other tools), it serves and warns.
  const rootByDefault =
    configFile === null && overrides.allowRoot === undefined && overrides.user === undefined;
  if (rootByDefault) overrides.allowRoot = true;
  let config: Config;
  try {
    config = loadConfig(configFile, overrides);
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
  const gitBackend = config.backend ?? defaultBackend();
  const backendFor = (c: Config): string => c.backend ?? gitBackend;
  const check = (c: Config): string[] => [
    ...checkEnvironment(c, backendFor(c)),
    ...logFileProblems(logOptions(c)),
  ];
  if (opts.checkConfig === true) {
    const problems = check(config);
    // `sudo git-fcgi -t`, as `nginx -t`: the configuration is checked, not who runs the check. A
    // file without `user` is meant for a service manager that starts git-fcgi as its user (the
    // units: User=git); started as root it would refuse, which is said, not failed.
    const rootCheck = process.getuid?.() === 0 && config.user === null && !config.allowRoot;
    try {
      preflight(rootCheck ? { ...config, allowRoot: true } : config);
    } catch (err) {
      problems.push(describeError(err));
    }
    if (rootCheck)
      process.stderr.write(
        'git-fcgi: note: no [server] user: started as root, git-fcgi would refuse to serve (set user, ' +
          'or run it as its user, as the systemd units do with User=git)\n',
      );
    process.stdout.write(formatConfig({ ...config, backend: gitBackend }));
    if (problems.length > 0) fail(`configuration check failed:\n  ${problems.join('\n  ')}`);
    process.stderr.write(`git-fcgi: configuration ${configFile ?? '(defaults and flags)'} is ok\n`);
    return;
  }
  const logProblems = logFileProblems(logOptions(config));
  if (logProblems.length > 0) return fail(logProblems.join('\n'));
  const log = createLogger(logOptions(config));
  process.on('uncaughtException', (err) => {
    log.error('internal error, exiting', { reason: describeError(err), stack: err.stack });
    process.exit(70);
  });
  // Until the service has started, a signal's default action would kill git-fcgi with the
  // connections it has already accepted (systemctl stop or reload just after a start): note
  // it, and act on it once started.
  const early: NodeJS.Signals[] = [];
  const noteEarly = (signal: NodeJS.Signals): number => early.push(signal);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, noteEarly);
  let started: Awaited<ReturnType<typeof Service.start>>;
  try {
    started = await Service.start({
      config,
      log,
      backendFor,
      serverSoftware: `git-fcgi/${VERSION}`,
      load: () => loadConfig(configFile, overrides),
      check,
    });
  } catch (err) {
    await log.close();
    return fail(describeError(err));
  }
  const { service, listening } = started;
  for (const where of listening)
    log.info(`listening on ${where}`, {
      backend: gitBackend,
      project_root: config.projectRoot,
      uid: process.getuid?.(),
    });
  if (rootByDefault && demo === undefined && process.getuid?.() === 0) {
    log.warn(
      'running as root: git and its hooks run as root; use --user git (or a config file with user = git)',
    );
  }
  if (demo !== undefined) {
    const http = listening.find((l) => l.startsWith('http://')) ?? '';
    log.info(`demo: git clone ${http}/demo.git`);
    if (demoAccess !== undefined) {
      const withUser = http.replace('http://', `http://${DEMO_USER}:${demoAccess.password}@`);
      log.info(
        `demo: push as ${DEMO_USER} (a new password at every start): git push ${withUser}/demo.git main`,
      );
      log.info(`demo: anonymous pushes are asked for credentials (401); the rules: ${demoAccess.configFile}`);
    }
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    log.info(
      `${signal}: stopping, waiting up to ${service.shutdownTimeoutMs} ms for ${service.activeRequests} request(s)`,
    );
    void service.stop().then(async (aborted) => {
      if (aborted > 0) log.warn(`aborted ${aborted} request(s) still running after the shutdown timeout`);
      log.info('stopped');
      await log.close();
      process.exit(0);
    });
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.removeListener(signal, noteEarly);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Reloads run one at a time; a HUP during one is applied after it.
  let reloading: Promise<void> = Promise.resolve();
  const reload = (): void => {
    if (stopping) return;
    log.info('SIGHUP: reloading the configuration and reopening log files');
    reloading = reloading.then(() => service.reload());
  };
  process.on('SIGHUP', reload);
  if (early.includes('SIGHUP')) reload();
  const stopSignal = early.find((signal) => signal !== 'SIGHUP');
  if (stopSignal !== undefined) stop(stopSignal);
}

const subcommand = process.argv[2];
if (subcommand === 'hook' || subcommand === 'install-hooks') {
  void runHookCommand(process.argv.slice(2)).then((code) => process.exit(code));
} else void main();
