import { reservedEnvName } from '../request/cgi-env.js';
import type { RawSection } from '../access/ini-sections.js';

export const ENV_SECTION = 'env';

/** The [env] section as the man page explains it (paragraphs). */
export const ENV_SECTION_DOC = [
  'Variables added to the environment of every backend (git and its hooks), one NAME = value a line, e.g. GNUPGHOME for signed pushes or a PATH with the tools the hooks need. Names are case-sensitive. Names git-fcgi sets for each request (CGI variables, HTTP_*, HOME, GIT_PROTOCOL, GIT_CONFIG_*, GIT_FCGI_*, ...) and those that would move git away from the repository git-fcgi located (GIT_DIR, GIT_OBJECT_DIRECTORY, ...) are errors naming the file and line.',
] as const;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The [env] section: `NAME = value` lines added to every backend's environment (GNUPGHOME for
 * signed pushes, a PATH with the hooks' tools, ...). Names git-fcgi sets itself, or that would
 * move git away from the repository it located, are errors with file and line.
 */
export function parseEnvSection(
  section: RawSection | undefined,
  where: (line: number) => string,
): Readonly<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const { key, value, line } of section?.entries ?? []) {
    if (!NAME.test(key))
      throw new Error(`${where(line)}: [env] ${JSON.stringify(key)} is not a variable name`);
    const reserved = reservedEnvName(key);
    if (reserved !== null) throw new Error(`${where(line)}: [env] ${key} cannot be set here: ${reserved}`);
    if (value.includes('\0')) throw new Error(`${where(line)}: [env] ${key}: NUL in the value`);
    env[key] = value;
  }
  return Object.freeze(env);
}
