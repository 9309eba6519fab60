import { describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { SETTINGS, type Config, type SettingName } from './settings.js';

/** Settings fixed at startup: sockets are bound and privileges dropped only once. */
const RESTART_ONLY: readonly SettingName[] = (Object.keys(SETTINGS) as SettingName[]).filter(
  (name) => SETTINGS[name].restart === true,
);

/** `[section] key` of each restart-only setting whose value differs. */
export function changesNeedingRestart(current: Config, next: Config): string[] {
  return RESTART_ONLY.filter((name) => JSON.stringify(current[name]) !== JSON.stringify(next[name])).map(
    (name) => `[${SETTINGS[name].section}] ${SETTINGS[name].key}`,
  );
}

export interface ReloadSteps {
  /** Reads and validates the configuration again (file + the same command-line flags). */
  readonly load: () => Config;
  /** Problems that would make the new configuration fail at the first request. */
  readonly check: (config: Config) => string[];
  /** Puts the new configuration to use (limits, handler settings, logs). */
  readonly apply: (config: Config) => Promise<void>;
  /** Reopens the log files with the settings in use (for logrotate) when the new ones are refused. */
  readonly reopenLogs: () => Promise<void>;
  readonly log: Logger;
}

/**
 * SIGHUP: a new configuration replaces the old one only whole and valid; otherwise the old one
 * stays and the reason is logged. Log files are reopened either way (logrotate's postrotate).
 * Returns the configuration in use afterwards.
 */
export async function reloadConfig(current: Config, steps: ReloadSteps): Promise<Config> {
  let next: Config;
  try {
    next = steps.load();
    const problems = steps.check(next);
    if (problems.length > 0) throw new Error(problems.join('; '));
  } catch (err) {
    await steps.reopenLogs();
    steps.log.error('reload refused, keeping the running configuration', { reason: describeError(err) });
    return current;
  }
  const restart = changesNeedingRestart(current, next);
  // What is bound stays bound: keep describing it, so the warning repeats until a restart.
  const kept = Object.fromEntries(RESTART_ONLY.map((name) => [name, current[name]]));
  const applied = Object.freeze({ ...next, ...kept }) as Config;
  await steps.apply(applied);
  if (restart.length > 0) {
    steps.log.warn(`reload: ${restart.join(', ')} changed; restart git-fcgi to apply`);
  }
  steps.log.info('configuration reloaded');
  return applied;
}
