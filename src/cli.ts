#!/usr/bin/env node
// First, before anything allocates: caps the young generation (see heap-limits.ts).
import './heap-limits.js';
import { execFileSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { Command, Option } from 'commander';
import { formatConfig, loadConfig, type Overrides } from './config/load.js';
import { SETTINGS, type Config, type SettingName } from './config/settings.js';
import { ensureDemoRepository } from './demo.js';
import { describeError } from './errors.js';
import { createLogger } from './log.js';
import { createRequestHandler } from './request/handle-request.js';
import { Daemon } from './server/daemon.js';
import { VERSION } from './version.js';

const SHUTDOWN_TIMEOUT_MS = 30_000;

const EXAMPLES = `
Examples:
  Behind nginx (fastcgi_pass unix:/run/git-fcgi/git-fcgi.sock):
    git-fcgi --listen unix:/run/git-fcgi/git-fcgi.sock --project-root /srv/git
  With a config file, checked first like nginx -t:
    git-fcgi -c /etc/git-fcgi/git-fcgi.ini --check-config
  Try it without nginx (plain HTTP, a demo repository):
    git-fcgi --demo    then: git clone http://127.0.0.1:8080/demo.git

Without --listen, git-fcgi serves the socket it inherits on fd 0 (spawn-fcgi) or from
systemd socket activation (LISTEN_FDS). Every setting is documented in etc/git-fcgi.ini.`;

function fail(message: string): never {
  process.stderr.write(`git-fcgi: ${message}\n`);
  process.exit(1);
}

function buildProgram(): { program: Command; flagToSetting: Map<string, SettingName> } {
  const program = new Command()
    .name('git-fcgi')
    .description(
      'Serve Git repositories over HTTP behind nginx: a streaming FastCGI server for git http-backend.',
    )
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'read settings from this ini file (flags override it)')
    .option('-t, --check-config', 'check the configuration, print the effective settings, and exit')
    .option(
      '--demo [dir]',
      'create a demo repository in DIR (default: $TMPDIR/git-fcgi-demo) and serve it over --http',
    )
    .addHelpText('after', EXAMPLES)
    .showHelpAfterError('(run git-fcgi --help for usage)');
  const flagToSetting = new Map<string, SettingName>();
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const setting = SETTINGS[name];
    if (!('flag' in setting) || setting.flag === undefined) continue;
    const option = new Option(setting.flag, `${setting.doc} [${setting.section}] ${setting.key}`);
    program.addOption(option);
    flagToSetting.set(option.attributeName(), name);
  }
  return { program, flagToSetting };
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
  return problems;
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
  if (demo !== undefined) {
    overrides.projectRoot = ensureDemoRepository(typeof demo === 'string' ? demo : undefined);
    overrides.exportAll = true;
    overrides.http ??= '127.0.0.1:8080';
  }
  const configFile = typeof opts.config === 'string' ? opts.config : null;
  let config: Config;
  try {
    config = loadConfig(configFile, overrides);
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
  const backend = config.backend ?? defaultBackend();
  if (opts.checkConfig === true) {
    const problems = checkEnvironment(config, backend);
    process.stdout.write(formatConfig({ ...config, backend }));
    if (problems.length > 0) fail(`configuration check failed:\n  ${problems.join('\n  ')}`);
    process.stderr.write(`git-fcgi: configuration ${configFile ?? '(defaults and flags)'} is ok\n`);
    return;
  }
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    file: config.logFile,
    accessLog: config.accessLog,
    accessFile: config.accessFile,
  });
  process.on('uncaughtException', (err) => {
    log.error('internal error, exiting', { reason: describeError(err), stack: err.stack });
    process.exit(70);
  });
  const settings = Object.freeze({ ...config, backend, serverSoftware: `git-fcgi/${VERSION}` });
  const daemon = new Daemon({
    config,
    log,
    handler: createRequestHandler({ settings: () => settings, log }),
  });
  let listening: string[];
  try {
    listening = await daemon.start();
  } catch (err) {
    return fail(describeError(err));
  }
  for (const where of listening)
    log.info(`listening on ${where}`, { backend, project_root: config.projectRoot });
  if (demo !== undefined) {
    const http = listening.find((l) => l.startsWith('http://'));
    log.info(`demo: git clone ${http ?? ''}/demo.git`);
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn(`${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    log.info(`${signal}: stopping, waiting for ${daemon.activeRequests} request(s)`);
    void daemon.stop(SHUTDOWN_TIMEOUT_MS).then(async (aborted) => {
      if (aborted > 0) log.warn(`aborted ${aborted} request(s) still running after the shutdown timeout`);
      log.info('stopped');
      await log.close();
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
