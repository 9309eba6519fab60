/**
 * Who a rule names: users, `@group`s (expanded when the config is loaded), `*` (any
 * authenticated user) and `anonymous` (everyone, logged in or not).
 */
export interface Principals {
  readonly anonymous: boolean;
  readonly authenticated: boolean;
  readonly users: ReadonlySet<string>;
  /** As written in the config, for messages. */
  readonly text: string;
}

/** Group name -> every user in it, nested groups included. */
export type Groups = ReadonlyMap<string, ReadonlySet<string>>;

export const NOBODY: Principals = { anonymous: false, authenticated: false, users: new Set(), text: '' };

const NAME = /^[^\s,@*][^\s,]*$/;

export function splitList(raw: string): string[] {
  return raw
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

export function checkName(name: string, what: string): void {
  if (!NAME.test(name) || name === 'anonymous') throw new Error(`invalid ${what} name "${name}"`);
}

/**
 * Expands `[groups]` (name -> members as written): every group to the set of its users. A group
 * may include itself through others; each group is visited once, so a cycle just unites them.
 */
export function expandGroups(definitions: ReadonlyMap<string, readonly string[]>): Groups {
  const expanded = new Map<string, ReadonlySet<string>>();
  for (const name of definitions.keys()) {
    const users = new Set<string>();
    const seen = new Set<string>([name]);
    const queue = [name];
    for (let group = queue.pop(); group !== undefined; group = queue.pop()) {
      for (const member of definitions.get(group) ?? []) {
        if (!member.startsWith('@')) {
          users.add(member);
          continue;
        }
        const nested = member.slice(1);
        if (!definitions.has(nested)) throw new Error(`group @${group}: unknown group @${nested}`);
        if (!seen.has(nested)) {
          seen.add(nested);
          queue.push(nested);
        }
      }
    }
    expanded.set(name, users);
  }
  return expanded;
}

/** `alice, @devs, *, anonymous` -> Principals; unknown groups are errors. */
export function parsePrincipals(raw: string, groups: Groups): Principals {
  let anonymous = false;
  let authenticated = false;
  const users = new Set<string>();
  for (const item of splitList(raw)) {
    if (item === 'anonymous') anonymous = true;
    else if (item === '*') authenticated = true;
    else if (item.startsWith('@')) {
      const members = groups.get(item.slice(1));
      if (members === undefined) throw new Error(`unknown group ${item}`);
      for (const user of members) users.add(user);
    } else {
      checkName(item, 'user');
      users.add(item);
    }
  }
  return { anonymous, authenticated, users, text: splitList(raw).join(', ') };
}

/** Write implies read: the readers of a rule are its `read` and its `write` principals. */
export function union(a: Principals, b: Principals): Principals {
  return {
    anonymous: a.anonymous || b.anonymous,
    authenticated: a.authenticated || b.authenticated,
    users: new Set([...a.users, ...b.users]),
    text: [a.text, b.text].filter((t) => t !== '').join(', '),
  };
}

/** `user` null is an anonymous request. */
export function includes(principals: Principals, user: string | null): boolean {
  if (principals.anonymous) return true;
  if (user === null) return false;
  return principals.authenticated || principals.users.has(user);
}

/** The groups `user` belongs to, directly or through nested groups, sorted. */
export function groupsOf(groups: Groups, user: string | null): string[] {
  if (user === null) return [];
  return [...groups]
    .filter(([, users]) => users.has(user))
    .map(([name]) => name)
    .sort();
}
