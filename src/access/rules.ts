import type { AccessConfig, RepoRule } from './access-config.js';
import { globMatches } from './glob.js';
import { includes } from './principals.js';

/** The names a repository path is matched under: as requested, and with/without `.git`. */
export function repoNames(repo: string): string[] {
  return repo.endsWith('.git') ? [repo, repo.slice(0, -'.git'.length)] : [repo, `${repo}.git`];
}

/**
 * Orders two matching rules, most specific first:
 * 1. a pattern without wildcards beats any pattern with one;
 * 2. then more literal (non-wildcard) characters;
 * 3. then fewer `**`;
 * 4. then the section that comes first in the file.
 */
export function compareSpecificity(a: RepoRule, b: RepoRule): number {
  if (a.pattern.exact !== b.pattern.exact) return a.pattern.exact ? -1 : 1;
  if (a.pattern.literalChars !== b.pattern.literalChars)
    return b.pattern.literalChars - a.pattern.literalChars;
  if (a.pattern.doubleStars !== b.pattern.doubleStars) return a.pattern.doubleStars - b.pattern.doubleStars;
  return a.order - b.order;
}

/** The one rule that applies to `repo` (a path relative to the project root), or null. */
export function ruleFor(rules: readonly RepoRule[], repo: string): RepoRule | null {
  const names = repoNames(repo);
  const matching = rules.filter((rule) => names.some((name) => globMatches(rule.pattern, name)));
  return matching.sort(compareSpecificity)[0] ?? null;
}

export type Decision =
  | { readonly allowed: true; readonly rule: RepoRule }
  | { readonly allowed: false; readonly status: 401 | 403 | 404; readonly reason: string };

/**
 * May `user` (null: anonymous) do `access` on `repo`? Not allowed and not logged in: 401, so git
 * asks for credentials. Logged in: 403, or 404 when the rule hides the repository from those who
 * may not read it. No rule: 404 for everyone, since no credentials could help.
 */
export function decide(
  access: AccessConfig,
  repo: string,
  operation: 'read' | 'write',
  user: string | null,
): Decision {
  const rule = ruleFor(access.rules, repo);
  if (rule === null) return { allowed: false, status: 404, reason: `no [repo:…] section matches ${repo}` };
  const canRead = includes(rule.read, user);
  if (operation === 'read' ? canRead : includes(rule.write, user)) return { allowed: true, rule };
  const who = user ?? 'anonymous';
  const reason = `${who} may not ${operation} ${repo} ([repo:${rule.pattern.source}] at ${rule.where})`;
  if (user === null) return { allowed: false, status: 401, reason };
  return { allowed: false, status: rule.hide && !canRead ? 404 : 403, reason };
}
