import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Cleanup } from './cleanup.js';
import { withDeadline } from './deadline.js';
import { createBareRepo, git } from './repos.js';
import { basicAuth } from './shipped-nginx.js';
import { tmpDir } from './tmp.js';

/**
 * git-fcgi's access rules for the forged-user tests: project.git is read by everyone and written by alice,
 * secret.git is alice's alone. Identity from the front end's REMOTE_USER (`mode = nginx`), or with
 * `htpasswdFile`, checked by git-fcgi itself (`mode = htpasswd`; no limit on failed logins, the tests
 * make many). The realm tells git-fcgi's own 401 from the front end's.
 */
export function forgedUserRules(htpasswdFile?: string): string {
  const auth =
    htpasswdFile === undefined
      ? 'mode = nginx\n'
      : `mode = htpasswd\nhtpasswd = ${htpasswdFile}\nmax_failures = 1000000\n`;
  return `[auth]
${auth}realm = git-fcgi rules
[repo:project.git]
read = anonymous
write = alice
[repo:secret.git]
read = alice
write = alice
`;
}

export interface ForgedUserRepos {
  readonly root: string;
  readonly projectHead: string;
  readonly secretHead: string;
}

/** project.git and secret.git under a new root, as FORGED_USER_RULES expects them. */
export async function forgedUserRepos(t: Cleanup, root: string): Promise<ForgedUserRepos> {
  const project = await createBareRepo(t, root, 'project.git', { commits: 2 });
  const secret = await createBareRepo(t, root, 'secret.git', { commits: 3 });
  return { root, projectHead: project.head, secretHead: secret.head };
}

/** Credentials nobody verified: a user nobody knows, and alice's name with a wrong password. */
export const FORGED = [
  ['mallory', 'anything'],
  ['alice', 'wrong'],
] as const;

const REQUESTS = [
  ['GET', 'secret.git/info/refs?service=git-upload-pack'],
  ['GET', 'secret.git/HEAD'],
  ['POST', 'secret.git/git-upload-pack'],
  ['GET', 'project.git/info/refs?service=git-receive-pack'],
  ['POST', 'project.git/git-receive-pack'],
] as const;

async function statusOf(method: string, url: string, headers: Record<string, string>): Promise<number> {
  const service = url.endsWith('git-upload-pack') ? 'upload' : 'receive';
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
 * `base` (ending in `/`) serves FORGED_USER_RULES' repositories through a front end that should make forged
 * users impossible. Every forged request must get the front end's 401 (a wrong password is refused like a
 * push without one), git must not clone secret.git or push with them, and alice with her password must.
 * Returns the status table, for the report; a failure shows the whole table.
 */
export async function assertForgedUsersRefused(
  t: Cleanup,
  base: string,
  repos: ForgedUserRepos,
  password: string,
): Promise<string[]> {
  const table: string[] = [];
  for (const [user, pass] of FORGED) {
    for (const [method, path] of REQUESTS) {
      const status = await statusOf(method, `${base}${path}`, basicAuth(user, pass));
      table.push(`${user}:${pass} ${method} /${path} -> ${status}`);
    }
  }
  const expected = table.map((line) => line.replace(/-> \d+$/, '-> 401'));
  assert.deepEqual(table, expected, `forged credentials through ${base}`);

  const work = await tmpDir(t, 'forged-');
  const withCredentials = (user: string, pass: string): string =>
    base.replace('http://', `http://${user}:${pass}@`);
  for (const [user, pass] of FORGED) {
    await assert.rejects(
      git(t, ['clone', '-q', `${withCredentials(user, pass)}secret.git`, join(work, `secret-${user}`)]),
      /Authentication failed|401/,
      `${user}:${pass} clones secret.git`,
    );
  }
  await assert.rejects(
    git(t, ['clone', '-q', `${base}secret.git`, join(work, 'secret-anonymous')]),
    /Authentication failed|could not read Username|401/,
    'an anonymous clone of secret.git',
  );

  const clone = join(work, 'project');
  await git(t, ['clone', '-q', `${base}project.git`, clone]);
  await writeFile(join(clone, 'forged.txt'), 'x\n');
  await git(t, ['add', 'forged.txt'], { cwd: clone });
  await git(t, ['-c', 'user.name=m', '-c', 'user.email=m@m', 'commit', '-q', '-m', 'forged'], { cwd: clone });
  for (const [user, pass] of FORGED) {
    await assert.rejects(
      git(t, ['push', '-q', `${withCredentials(user, pass)}project.git`, `HEAD:refs/heads/${user}`], {
        cwd: clone,
      }),
      /Authentication failed|401|403/,
      `${user}:${pass} pushes`,
    );
  }
  const heads = await git(t, ['for-each-ref', '--format=%(refname)'], {
    cwd: join(repos.root, 'project.git'),
  });
  const landed = heads.stdout
    .toString()
    .split('\n')
    .filter((ref) => FORGED.some(([user]) => ref === `refs/heads/${user}`));
  assert.deepEqual(landed, [], 'no forged push landed');

  // What the rules allow alice still works: a protected read (git-fcgi challenges, git answers with her
  // password, the front end checks it) and a push.
  const secret = join(work, 'secret-alice');
  await git(t, ['clone', '-q', `${withCredentials('alice', password)}secret.git`, secret]);
  const head = (await git(t, ['rev-parse', 'HEAD'], { cwd: secret })).stdout.toString().trim();
  assert.equal(head, repos.secretHead);
  await git(
    t,
    [
      'push',
      '-q',
      `${withCredentials('alice', password)}project.git`,
      `HEAD:refs/heads/by-alice-${basename(work)}`,
    ],
    {
      cwd: clone,
    },
  );
  return table;
}
