import { parseAccessConfig, type AccessConfig } from '../../../src/access/access-config.js';
import { splitAccessSections } from '../../../src/access/ini-sections.js';

/** The access rules of an ini text, as the loader would parse them from `test.ini`. */
export function accessFrom(text: string): AccessConfig {
  const where = (line: number): string => `test.ini:${line}`;
  return parseAccessConfig(splitAccessSections(text, where).sections, where);
}
