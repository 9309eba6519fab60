import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { withDeadline } from './deadline.js';
import { git } from './repos.js';
import { basicAuth } from './shipped-nginx.js';
import { tmpDir } from './tmp.js';

/**
 * Where the forged-user checks run: a front end's base URL (no trailing slash) and its repositories, with
 * git-fcgi's rules (TRUSTING_RULES of front-end-cases.ts, or the same in `mode = htpasswd`) letting only
 * alice read the secret one.
 */
export interface ForgedUserTarget {
  readonly base: string;
  readonly root: string;
  /** Read by everyone, written by alice. */
  readonly publicRepo: string;
  /** Alice's alone. */
  readonly secretRepo: string;
  readonly secretHead: string;
}

/**
 * git-fcgi's unchecked-user warning (src/access/unchecked-user-watch.ts): a shipped config that checks every
 * login it passes on, and says so with AUTH_TYPE, never raises it.
 */
export const UNCHECKED_USER_WARNING = /REMOTE_USER came on a read without AUTH_TYPE/;

/** Credentials nobody verified: a user nobody knows, and alice's name with a wrong password. */
const FORGED = [
  ['mallory', 'anything'],
  ['alice', 'wrong'],
] as const;

/** Every request a protected read or a push is made of; the last two encoded so that a condition on the raw path or query would miss them. */
const requests = ({ publicRepo, secretRepo }: ForgedUserTarget): ReadonlyArray<readonly [string, string]> => [
  ['GET', `${secretRepo}/info/refs?service=git-upload-pack`],
  ['GET', `${secretRepo}/HEAD`],
  ['POST', `${secretRepo}/git-upload-pack`],
  ['GET', `${publicRepo}/info/refs?service=git-receive-pack`],
  ['POST', `${publicRepo}/git-receive-pack`],
  ['GET', `${publicRepo}/info/refs?service=git-receive-pac%6B`],
  ['POST', `${publicRepo}/git-receive-pac%6B`],
];

async function statusOf(method: string, url: string, headers: Record<string, string>): Promise<number> {
  const service = url.includes('git-upload-pack') ? 'upload' : 'receive';
  const body = method === 'POST' ? '0000' : undefined;
  const post = body === undefined ? {} : { 'Content-Type': `application/x-git-${service}-pack-request` };
  const res = await withDeadline(
    fetch(url, { method, headers: { ...headers, ...post }, ...(body === undefined ? {} : { body }) }),
    30_000,
    `${method} ${url}`,
  );
  await res.arrayBuffer();
  return res.status;
}

/**
 * The front end at `target.base` makes forged users impossible: every request of a protected read or a push
 * that carries credentials nobody checked gets 401 (the front end's own where it checks them, git-fcgi's
 * where it does), git can neither clone the secret repository nor push with them, and alice with her
 * `password` can do both. Returns the status table, for the report; a failure shows the whole table.
 */
export async function assertForgedUsersRefused(
  t: Cleanup,
  target: ForgedUserTarget,
  password: string,
): Promise<string[]> {
  const { base, root, publicRepo, secretRepo } = target;
  const table: string[] = [];
  for (const [user, pass] of FORGED) {
    for (const [method, path] of requests(target)) {
      const status = await statusOf(method, `${base}/${path}`, basicAuth(user, pass));
      table.push(`${user}:${pass} ${method} /${path} -> ${status}`);
    }
  }
  const expected = table.map((line) => line.replace(/-> \d+$/, '-> 401'));
  assert.deepEqual(table, expected, `forged credentials through ${base}`);

  const work = await tmpDir(t, 'forged-');
  const as = (user: string, pass: string): string => base.replace('http://', `http://${user}:${pass}@`);
  for (const [user, pass] of FORGED) {
    await assert.rejects(
      git(t, ['clone', '-q', `${as(user, pass)}/${secretRepo}`, join(work, `secret-${user}`)]),
      /Authentication failed|401/,
      `${user}:${pass} clones ${secretRepo}`,
    );
  }
  await assert.rejects(
    git(t, ['clone', '-q', `${base}/${secretRepo}`, join(work, 'secret-anonymous')]),
    /Authentication failed|could not read Username|401/,
    `an anonymous clone of ${secretRepo}`,
  );

  const clone = join(work, 'public');
  await git(t, ['clone', '-q', `${base}/${publicRepo}`, clone]);
  await writeFile(join(clone, 'forged.txt'), 'x\n');
  await git(t, ['add', 'forged.txt'], { cwd: clone });
  await git(t, ['-c', 'user.name=m', '-c', 'user.email=m@m', 'commit', '-q', '-m', 'forged'], { cwd: clone });
  for (const [user, pass] of FORGED) {
    await assert.rejects(
      git(t, ['push', '-q', `${as(user, pass)}/${publicRepo}`, `HEAD:refs/heads/forged-${user}`], {
        cwd: clone,
      }),
      /Authentication failed|401|403/,
      `${user}:${pass} pushes`,
    );
  }
  const heads = await git(t, ['for-each-ref', '--format=%(refname)', 'refs/heads/forged-*'], {
    cwd: join(root, publicRepo),
  });
  assert.equal(heads.stdout.toString().trim(), '', 'no forged push landed');

  // What the rules allow alice still works: a protected read (git-fcgi challenges, git answers with her
  // password, the front end checks it) and a push.
  const secret = join(work, 'secret-alice');
  await git(t, ['clone', '-q', `${as('alice', password)}/${secretRepo}`, secret]);
  const head = (await git(t, ['rev-parse', 'HEAD'], { cwd: secret })).stdout.toString().trim();
  assert.equal(head, target.secretHead);
  await git(
    t,
    ['push', '-q', `${as('alice', password)}/${publicRepo}`, `HEAD:refs/heads/alice-${basename(work)}`],
    {
      cwd: clone,
    },
  );
  return table;
}
