import { parseAbsolutePath, parseBool, parseDuration, parseEnum, parseInteger } from '../config/values.js';
import { AUTH_KEYS, REPO_KEYS, isKeyOf, unhandledKey } from './access-keys.js';
import { compileGlob, type Glob } from './glob.js';
import { REPO_PREFIX, type RawEntry, type RawSection } from './ini-sections.js';
import {
  NOBODY,
  checkName,
  expandGroups,
  parsePrincipals,
  splitList,
  union,
  type Groups,
  type Principals,
} from './principals.js';

export type AuthMode = 'nginx' | 'htpasswd';

export interface AuthSettings {
  readonly mode: AuthMode;
  readonly htpasswdFile: string | null;
  readonly realm: string;
  /** Failed logins from one address within failureWindowMs before it gets 429. */
  readonly maxFailures: number;
  readonly failureWindowMs: number;
  /** How long a verified user+password pair is trusted without hashing again. */
  readonly credentialCacheMs: number;
}

export interface RepoRule {
  readonly pattern: Glob;
  /** `file:line` of the section, for logs and messages. */
  readonly where: string;
  /** Position in the file: the tie-breaker between equally specific patterns. */
  readonly order: number;
  /** Readers, writers included (write implies read). */
  readonly read: Principals;
  readonly write: Principals;
  readonly hide: boolean;
  readonly protect: readonly Glob[];
  /** Who may update protected refs; null: everyone who may write. */
  readonly protectPush: Principals | null;
  readonly denyForce: boolean;
  readonly denyDelete: boolean;
}

export interface AccessConfig {
  /** Access control is on when the config has at least one [repo:…] section. */
  readonly enabled: boolean;
  readonly auth: AuthSettings;
  readonly groups: Groups;
  readonly rules: readonly RepoRule[];
}

export const DEFAULT_AUTH: AuthSettings = {
  mode: 'nginx',
  htpasswdFile: null,
  realm: 'git',
  maxFailures: 10,
  failureWindowMs: 60_000,
  credentialCacheMs: 60_000,
};

export const NO_ACCESS_RULES: AccessConfig = Object.freeze({
  enabled: false,
  auth: DEFAULT_AUTH,
  groups: new Map(),
  rules: [],
});

type Where = (line: number) => string;

/** Runs `parse`, turning its error into `file:line: [section] key: message`. */
function at<T>(where: Where, section: string, entry: RawEntry, parse: (raw: string) => T): T {
  try {
    return parse(entry.value);
  } catch (err) {
    throw new Error(`${where(entry.line)}: [${section}] ${entry.key}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function parseAuth(section: RawSection | undefined, where: Where): AuthSettings {
  const auth: { -readonly [K in keyof AuthSettings]: AuthSettings[K] } = { ...DEFAULT_AUTH };
  for (const entry of section?.entries ?? []) {
    const value = <T>(parse: (raw: string) => T): T => at(where, 'auth', entry, parse);
    const key = entry.key;
    if (!isKeyOf(AUTH_KEYS, key)) throw new Error(`${where(entry.line)}: unknown key "${key}" in [auth]`);
    switch (key) {
      case 'mode':
        auth.mode = value((raw) => parseEnum(raw, ['nginx', 'htpasswd'] as const));
        break;
      case 'htpasswd':
        auth.htpasswdFile = value(parseAbsolutePath);
        break;
      case 'realm':
        auth.realm = value((raw) => {
          if (!/^[\x20-\x7e]+$/.test(raw) || raw.includes('"') || raw.includes('\\'))
            throw new Error('expected printable ASCII without quotes or backslashes');
          return raw;
        });
        break;
      case 'max_failures':
        auth.maxFailures = value((raw) => parseInteger(raw, 1, 1_000_000));
        break;
      case 'failure_window':
        auth.failureWindowMs = value(parseDuration);
        break;
      case 'credential_cache':
        auth.credentialCacheMs = value(parseDuration);
        break;
      default:
        unhandledKey(key);
    }
  }
  if (auth.mode === 'htpasswd' && auth.htpasswdFile === null) {
    throw new Error(`${where(section?.line ?? 0)}: [auth] mode = htpasswd needs htpasswd = FILE`);
  }
  return auth;
}

function parseGroups(section: RawSection | undefined, where: Where): Groups {
  const definitions = new Map<string, string[]>();
  for (const entry of section?.entries ?? []) {
    const members = at(where, 'groups', entry, (raw) => {
      checkName(entry.key, 'group');
      const list = splitList(raw);
      for (const m of list)
        checkName(m.startsWith('@') ? m.slice(1) : m, m.startsWith('@') ? 'group' : 'user');
      return list;
    });
    definitions.set(entry.key, members);
  }
  try {
    return expandGroups(definitions);
  } catch (err) {
    throw new Error(`${where(section?.line ?? 0)}: [groups]: ${(err as Error).message}`, { cause: err });
  }
}

function parseRule(section: RawSection, order: number, groups: Groups, where: Where): RepoRule {
  const name = section.name;
  let pattern: Glob;
  try {
    pattern = compileGlob(name.slice(REPO_PREFIX.length));
  } catch (err) {
    throw new Error(`${where(section.line)}: [${name}]: ${(err as Error).message}`, { cause: err });
  }
  let read = NOBODY;
  let write = NOBODY;
  let protectPush: Principals | null = null;
  let protect: Glob[] = [];
  let hide = false;
  let denyForce = false;
  let denyDelete = false;
  const principals = (raw: string): Principals => parsePrincipals(raw, groups);
  for (const entry of section.entries) {
    const value = <T>(parse: (raw: string) => T): T => at(where, name, entry, parse);
    const key = entry.key;
    if (!isKeyOf(REPO_KEYS, key)) throw new Error(`${where(entry.line)}: unknown key "${key}" in [${name}]`);
    switch (key) {
      case 'read':
        read = value(principals);
        break;
      case 'write':
        write = value(principals);
        break;
      case 'hide':
        hide = value(parseBool);
        break;
      case 'protect':
        protect = value((raw) => splitList(raw).map(compileGlob));
        break;
      case 'protect_push':
        protectPush = value(principals);
        break;
      case 'deny_force':
        denyForce = value(parseBool);
        break;
      case 'deny_delete':
        denyDelete = value(parseBool);
        break;
      default:
        unhandledKey(key);
    }
  }
  return {
    pattern,
    where: where(section.line),
    order,
    read: union(read, write),
    write,
    hide,
    protect,
    protectPush,
    denyForce,
    denyDelete,
  };
}

/** [auth], [groups] and [repo:…] sections -> the access rules. Errors name file and line. */
export function parseAccessConfig(sections: readonly RawSection[], where: Where): AccessConfig {
  const auth = parseAuth(
    sections.find((s) => s.name === 'auth'),
    where,
  );
  const groups = parseGroups(
    sections.find((s) => s.name === 'groups'),
    where,
  );
  const repoSections = sections.filter((s) => s.name.startsWith(REPO_PREFIX));
  const rules = repoSections.map((s, i) => parseRule(s, i, groups, where));
  if (auth.mode === 'htpasswd' && rules.length === 0) {
    throw new Error(
      `${where(sections.find((s) => s.name === 'auth')?.line ?? 0)}: [auth] mode = htpasswd needs [repo:…] rules`,
    );
  }
  return Object.freeze({
    enabled: rules.length > 0,
    auth: Object.freeze(auth),
    groups,
    rules: Object.freeze(rules),
  });
}
