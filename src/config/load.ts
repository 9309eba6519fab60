import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import ini from 'ini';
import { NO_ACCESS_RULES, parseAccessConfig, type AccessConfig } from '../access/access-config.js';
import { splitAccessSections } from '../access/ini-sections.js';
import { ENV_SECTION, parseEnvSection } from './env-section.js';
import { GitFcgiError } from '../errors.js';
import { SETTINGS, formatValue, type Config, type SettingDef, type SettingName } from './settings.js';

/** Raw values from the command line, by setting name: strings, or `true` for boolean flags. */
export type Overrides = Partial<Record<SettingName, string | boolean>>;

const NAMES = Object.keys(SETTINGS) as SettingName[];
const BY_LOCATION = new Map(NAMES.map((name) => [`${SETTINGS[name].section}.${SETTINGS[name].key}`, name]));
const SECTIONS = new Set(NAMES.map((name) => SETTINGS[name].section));

/** Line numbers of sections and keys, for error messages: the ini package does not keep them. */
function locate(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  let section = '';
  text.split('\n').forEach((line, i) => {
    const s = /^\s*\[([^\]]*)\]/.exec(line);
    if (s?.[1] !== undefined) {
      section = s[1].trim();
      if (!lines.has(section)) lines.set(section, i + 1);
      return;
    }
    const k = /^\s*([^=;#\s][^=]*?)\s*=/.exec(line);
    if (k?.[1] !== undefined) lines.set(`${section}.${k[1]}`, i + 1);
  });
  return lines;
}

function configError(where: string, message: string): GitFcgiError {
  return new GitFcgiError('ERR_CONFIG', `${where}: ${message}`);
}

/**
 * Reads an ini file into raw values and the access rules; unknown sections and keys are errors,
 * not warnings.
 */
export function readConfigFile(file: string): {
  values: Map<SettingName, { raw: string; where: string }>;
  access: AccessConfig;
  env: Readonly<Record<string, string>>;
} {
  let whole: string;
  try {
    whole = readFileSync(file, 'utf8');
  } catch (err) {
    throw configError(file, `cannot read: ${(err as Error).message}`);
  }
  let text: string;
  let access: AccessConfig;
  let env: Readonly<Record<string, string>>;
  try {
    const where = (line: number): string => `${file}:${line}`;
    const split = splitAccessSections(whole, where);
    text = split.rest;
    access = parseAccessConfig(
      split.sections.filter((s) => s.name !== ENV_SECTION),
      where,
    );
    env = parseEnvSection(
      split.sections.find((s) => s.name === ENV_SECTION),
      where,
    );
  } catch (err) {
    throw new GitFcgiError('ERR_CONFIG', (err as Error).message, { cause: err });
  }
  const lines = locate(text);
  const parsed = ini.parse(text);
  const values = new Map<SettingName, { raw: string; where: string }>();
  for (const [section, body] of Object.entries(parsed)) {
    const sectionLine = lines.get(section);
    if (typeof body !== 'object' || body === null) {
      throw configError(
        `${file}:${lines.get(`.${section}`) ?? '?'}`,
        `"${section}" must be inside a section`,
      );
    }
    if (!SECTIONS.has(section as SettingDef<unknown>['section'])) {
      throw configError(`${file}:${sectionLine ?? '?'}`, `unknown section [${section}]`);
    }
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      const line = lines.get(`${section}.${key}`) ?? '?';
      const name = BY_LOCATION.get(`${section}.${key}`);
      if (name === undefined) throw configError(`${file}:${line}`, `unknown key "${key}" in [${section}]`);
      values.set(name, { raw: String(value), where: `${file}:${line}: [${section}] ${key}` });
    }
  }
  return { values, access, env };
}

/** Built-in defaults < config file < command-line flags, validated, frozen. */
export function loadConfig(file: string | null, overrides: Overrides): Config {
  const read = file === null ? null : readConfigFile(file);
  const fromFile = read?.values ?? new Map<SettingName, { raw: string; where: string }>();
  const config: Record<string, unknown> = {
    access: read?.access ?? NO_ACCESS_RULES,
    env: read?.env ?? Object.freeze({}),
    configFile: file === null ? null : resolve(file),
  };
  for (const name of NAMES) {
    const setting: SettingDef<unknown> = SETTINGS[name];
    const flag = overrides[name];
    const source =
      flag !== undefined
        ? { raw: String(flag), where: `command line: ${setting.flag?.split(' ')[0] ?? name}` }
        : fromFile.get(name);
    if (source === undefined) {
      config[name] = setting.default;
      continue;
    }
    try {
      config[name] = setting.parse(source.raw);
    } catch (err) {
      throw configError(source.where, (err as Error).message);
    }
  }
  return Object.freeze(config) as unknown as Config;
}

/** The effective configuration as an ini file, for --check-config. */
export function formatConfig(config: Config): string {
  const out: string[] = [];
  let section = '';
  for (const name of NAMES) {
    const setting: SettingDef<unknown> = SETTINGS[name];
    if (setting.section !== section) {
      section = setting.section;
      out.push(`${out.length > 0 ? '\n' : ''}[${section}]`);
    }
    const value: unknown = config[name];
    const shown = (setting.show ?? setting.format ?? formatValue)(value);
    out.push(`${setting.key} = ${shown}`);
  }
  const env = Object.entries(config.env);
  if (env.length > 0) out.push(`\n[${ENV_SECTION}]`, ...env.map(([name, value]) => `${name} = ${value}`));
  return out.join('\n') + '\n';
}
