import type { AccessConfig } from './access-config.js';
import { globMatches } from './glob.js';
import { includes } from './principals.js';
import { ruleFor } from './rules.js';

/** One line of pre-receive's stdin. */
export interface RefUpdate {
  readonly oldId: string;
  readonly newId: string;
  readonly ref: string;
}

const ZERO = /^0+$/;
const LINE = /^([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) (\S.*)$/;

export function parseRefUpdates(input: string): RefUpdate[] {
  return input
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const m = LINE.exec(line);
      if (m?.[1] === undefined || m[2] === undefined || m[3] === undefined) {
        throw new Error(`unexpected pre-receive input line ${JSON.stringify(line)}`);
      }
      return { oldId: m[1], newId: m[2], ref: m[3] };
    });
}

export interface PushContext {
  readonly access: AccessConfig;
  /** The repository path relative to the project root (GIT_FCGI_REPO). */
  readonly repo: string;
  /** null: anonymous. */
  readonly user: string | null;
  /** True when `newId` contains `oldId` (a fast-forward); any doubt must answer false. */
  readonly isAncestor: (oldId: string, newId: string) => Promise<boolean>;
}

/**
 * The branch rules of the repository's [repo:…] section applied to one push: returns why each
 * refused update is refused (empty: accept the push). git applies the push all or nothing.
 */
export async function checkRefUpdates(ctx: PushContext, updates: readonly RefUpdate[]): Promise<string[]> {
  const rule = ruleFor(ctx.access.rules, ctx.repo);
  const who = ctx.user ?? 'anonymous';
  if (rule === null) return [`no [repo:…] section matches ${ctx.repo}: push refused`];
  if (!includes(rule.write, ctx.user)) return [`${who} may not push to ${ctx.repo}`];
  const refused: string[] = [];
  for (const { oldId, newId, ref } of updates) {
    if (!rule.protect.some((glob) => globMatches(glob, ref))) continue;
    const deleting = ZERO.test(newId);
    const creating = ZERO.test(oldId);
    if (rule.protectPush !== null && !includes(rule.protectPush, ctx.user)) {
      refused.push(
        `${ref} is protected: only ${rule.protectPush.text || 'nobody'} may update it (not ${who})`,
      );
    } else if (deleting && rule.denyDelete) {
      refused.push(`${ref} is protected: deleting it is not allowed`);
    } else if (!deleting && !creating && rule.denyForce && !(await ctx.isAncestor(oldId, newId))) {
      refused.push(`${ref} is protected: non-fast-forward updates (force pushes) are not allowed`);
    }
  }
  return refused;
}
