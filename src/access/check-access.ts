import { readFileSync } from 'node:fs';
import type { AccessConfig } from './access-config.js';
import { parseHtpasswd } from './htpasswd.js';

/** What --check-config reports about access control beyond syntax: the htpasswd file. */
export function checkAccess(access: AccessConfig): string[] {
  const file = access.auth.htpasswdFile;
  if (!access.enabled || access.auth.mode !== 'htpasswd' || file === null) return [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return [`[auth] htpasswd: cannot read ${file}: ${(err as Error).message}`];
  }
  const parsed = parseHtpasswd(text, file);
  const problems = parsed.warnings.map((w) => `[auth] htpasswd: ${w}`);
  if (parsed.entries.size === 0) problems.push(`[auth] htpasswd: ${file} has no usable entries`);
  return problems;
}
