import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup, type Cleanup } from '../helpers/cleanup.js';
import { cliPath, startGitFcgi } from '../helpers/daemon.js';
import { waitFor } from '../helpers/deadline.js';
import { gitLocation, startNginx } from '../helpers/nginx.js';
import { assertNoGitProcesses, run } from '../helpers/proc.js';
import { createBareRepo, git, gitEnv } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

/**
 * Access control through real nginx and the git CLI, in both identity modes: who may clone,
 * fetch, push, update a protected branch, force-push and delete, per repository. One daemon and
 * one nginx per mode; every row is one git command whose outcome is read from git's own output.
 */

type Mode = 'htpasswd' | 'nginx';
type Outcome = 'ok' | 401 | 403 | 404 | 'hook';
type Op = 'clone' | 'fetch' | 'push' | 'delete' | 'push main' | 'force main' | 'delete main';

const PASSWORDS = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw' } as const;
// One user per hash scheme, as `htpasswd -B/-m/-s` writes them.
const SCHEMES = { alice: 'B', bob: 'm', carol: 's' } as const;
type User = keyof typeof PASSWORDS;
type Identity = 'anonymous' | User | 'wrong password' | 'unknown user';

export const RULES = `
[groups]
leads = alice
devs = bob, @leads

[repo:public/*]
read = anonymous
write = @devs

[repo:team/*.git]
read = carol
write = @devs
protect = refs/heads/main, refs/tags/*
protect_push = @leads
deny_force = true
deny_delete = true

[repo:secret/*]
read = alice
hide = true

[repo:docs.example/*]
read = *
write = carol

[repo:sandbox/*]
write = anonymous
`;

const REPOS = [
  'public/site.git',
  'team/app.git',
  'secret/vault.git',
  'docs.example/wiki.git',
  'sandbox/play.git',
  'orphan/x.git',
] as const;
type Repo = (typeof REPOS)[number];

/** What each identity may do: 'w' read and write, 'r' read only, else the status for both. */
const ACCESS: Record<Repo, Record<'anonymous' | User, 'w' | 'r' | 401 | 404>> = {
  'public/site.git': { anonymous: 'r', alice: 'w', bob: 'w', carol: 'r' },
  'team/app.git': { anonymous: 401, alice: 'w', bob: 'w', carol: 'r' },
  'secret/vault.git': { anonymous: 401, alice: 'r', bob: 404, carol: 404 },
  'docs.example/wiki.git': { anonymous: 401, alice: 'r', bob: 'r', carol: 'w' },
  'sandbox/play.git': { anonymous: 'w', alice: 'w', bob: 'w', carol: 'w' },
  'orphan/x.git': { anonymous: 404, alice: 404, bob: 404, carol: 404 },
};

function expected(mode: Mode, who: Identity, repo: Repo, op: Op): Outcome {
  if (who === 'wrong password' || who === 'unknown user') {
    // nginx checks every request of its authenticated server. git-fcgi sees curl's first,
    // credential-less request, so what anonymous may do works, and the rest fails the login.
    if (mode === 'nginx') return 401;
    const anonymous = expected(mode, 'anonymous', repo, op);
    return anonymous === 403 ? 401 : anonymous;
  }
  const access = ACCESS[repo][who];
  if (typeof access === 'number') return access;
  const writing = op !== 'clone' && op !== 'fetch';
  if (writing && access === 'r') return who === 'anonymous' ? 401 : 403;
  if (repo === 'team/app.git') {
    // protect = refs/heads/main, protect_push = @leads, deny_force, deny_delete
    if (op === 'push main') return who === 'alice' ? 'ok' : 'hook';
    if (op === 'force main' || op === 'delete main') return 'hook';
  }
  return 'ok';
}

function outcomeOf(code: number | null, stderr: string): Outcome | string {
  if (code === 0) return 'ok';
  if (/pre-receive hook declined/.test(stderr)) return 'hook';
  if (/could not read Username|Authentication failed/.test(stderr)) return 401;
  if (/returned error: 403/.test(stderr)) return 403;
  if (/not found|returned error: 404/.test(stderr)) return 404;
  return `unexpected: ${stderr.trim()}`;
}

async function writeHtpasswd(t: Cleanup, dir: string): Promise<string> {
  const file = join(dir, 'htpasswd');
  await writeFile(file, '');
  for (const user of Object.keys(PASSWORDS) as User[]) {
    const result = await run('htpasswd', ['-i', `-${SCHEMES[user]}`, file, user], {
      input: PASSWORDS[user],
      timeoutMs: 10_000,
    });
    assert.equal(result.code, 0, result.stderr.toString());
  }
  void t;
  return file;
}

interface Fixture {
  root: string;
  work: string;
  /** Base URL for an identity, credentials included. */
  url(who: Identity, repo: Repo): string;
  /** A new commit on top of `parent`, in the local work repository. */
  commit(parent: string, message: string): Promise<string>;
  head: string;
  first: string;
  daemonLogs(): string;
}

async function setUp(suite: Cleanup, mode: Mode): Promise<Fixture> {
  const root = await tmpDir(suite, `acl-${mode}-`);
  const work = await tmpDir(suite, `acl-work-${mode}-`);
  let head = '';
  for (const repo of REPOS) head = (await createBareRepo(suite, root, repo, { commits: 2 })).head;
  // The rules only restrict what git allows: an anonymous push also needs git's own yes.
  await git(suite, ['config', 'http.receivepack', 'true'], { cwd: join(root, 'sandbox/play.git') });
  const first = (await git(suite, ['rev-parse', `${head}^`], { cwd: join(root, REPOS[0]) })).stdout
    .toString()
    .trim();
  const users = await writeHtpasswd(suite, work);
  const auth = mode === 'htpasswd' ? `[auth]\nmode = htpasswd\nhtpasswd = ${users}\nrealm = acl test\n` : '';
  // The matrix fails logins on purpose; the limit has its own test.
  const limits = mode === 'htpasswd' ? 'max_failures = 100000\n' : '';
  const config = join(work, 'git-fcgi.ini');
  await writeFile(config, `[git]\nproject_root = ${root}\nexport_all = true\n${auth}${limits}${RULES}`);
  const installed = await run(
    process.execPath,
    [cliPath, 'install-hooks', ...REPOS.map((r) => join(root, r))],
    {
      timeoutMs: 10_000,
    },
  );
  assert.equal(installed.code, 0, installed.stderr.toString());
  const sock = join(await tmpDir(suite, 'acl-sock-'), 'git-fcgi.sock');
  const daemon = await startGitFcgi(suite, ['-c', config, '--listen', `unix:${sock}`]);
  // nginx mode: server 0 is anonymous (REMOTE_USER forced empty: nginx would pass the name of
  // unverified credentials), server 1 authenticates every request with auth_basic.
  const nginx = await startNginx(suite, {
    servers: [
      { locations: gitLocation({ socket: sock, extra: 'fastcgi_param REMOTE_USER "";' }) },
      { locations: gitLocation({ socket: sock, auth: { htpasswdFile: users } }) },
    ],
  });
  await git(suite, ['init', '-q', '--bare', work + '/local.git']);
  await git(suite, ['fetch', '-q', join(root, REPOS[0]), 'refs/heads/main'], { cwd: `${work}/local.git` });
  let n = 0;
  return {
    root,
    work,
    head,
    first,
    daemonLogs: () => daemon.logs(),
    url: (who, repo) => {
      const server = mode === 'nginx' && who !== 'anonymous' ? 1 : 0;
      const base = nginx.url(server, `/${repo}`);
      const credentials =
        who === 'anonymous'
          ? ''
          : who === 'wrong password'
            ? 'alice:nope@'
            : who === 'unknown user'
              ? 'mallory:alice-pw@'
              : `${who}:${PASSWORDS[who]}@`;
      return base.replace('http://', `http://${credentials}`);
    },
    commit: async (parent, message) => {
      const tree = `${parent}^{tree}`;
      const env = {
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@t',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@t',
      };
      const result = await git(suite, ['commit-tree', tree, '-p', parent, '-m', `${message} ${n++}`], {
        cwd: `${work}/local.git`,
        env,
      });
      return result.stdout.toString().trim();
    },
  };
}

async function attempt(
  suite: Cleanup,
  f: Fixture,
  who: Identity,
  repo: Repo,
  op: Op,
): Promise<Outcome | string> {
  const url = f.url(who, repo);
  const cwd = `${f.work}/local.git`;
  const env = await gitEnv(suite);
  const gitRun = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
    run('git', args, { cwd, env, timeoutMs: 30_000 }).then((r) => ({
      code: r.code,
      stderr: r.stderr.toString(),
    }));
  const tag = `${who.replace(/ /g, '-')}-${repo.replace(/[/.]/g, '-')}-${op.replace(/ /g, '-')}`;
  const remoteMain = async (): Promise<string> =>
    (await git(suite, ['rev-parse', 'refs/heads/main'], { cwd: join(f.root, repo) })).stdout
      .toString()
      .trim();
  let result: { code: number | null; stderr: string };
  switch (op) {
    case 'clone':
      result = await gitRun(['clone', '-q', '--bare', url, join(f.work, tag)]);
      break;
    case 'fetch':
      result = await gitRun(['fetch', '-q', url, `refs/heads/main:refs/fetched/${tag}`]);
      break;
    case 'push':
      result = await gitRun(['push', '-q', url, `${await f.commit(f.head, tag)}:refs/heads/${tag}`]);
      break;
    case 'delete': {
      // Create the branch directly in the repository, then delete it over HTTP.
      await git(suite, ['update-ref', `refs/heads/${tag}`, f.head], { cwd: join(f.root, repo) });
      result = await gitRun(['push', '-q', url, `:refs/heads/${tag}`]);
      break;
    }
    case 'push main':
      result = await gitRun([
        'push',
        '-q',
        url,
        `${await f.commit(await remoteMain(), tag)}:refs/heads/main`,
      ]);
      break;
    case 'force main':
      result = await gitRun(['push', '-q', url, `+${await f.commit(f.first, tag)}:refs/heads/main`]);
      break;
    case 'delete main':
      result = await gitRun(['push', '-q', url, ':refs/heads/main']);
      break;
  }
  const outcome = outcomeOf(result.code, result.stderr);
  if (outcome === 'hook') assert.match(result.stderr, /remote: git-fcgi: refs\/heads\/main is protected/);
  return outcome;
}

const IDENTITIES: readonly Identity[] = [
  'anonymous',
  'alice',
  'bob',
  'carol',
  'wrong password',
  'unknown user',
];

for (const mode of ['htpasswd', 'nginx'] as const) {
  describe(`access matrix, ${mode} mode`, () => {
    const suite = suiteCleanup(after);
    let f: Fixture;

    before(async () => {
      f = await setUp(suite, mode);
    });

    after(async () => {
      await assertNoGitProcesses(f.root, { withinMs: 3000 });
    });

    test('hooks learn who pushed; an existing pre-receive hook keeps working', async () => {
      await hookIdentity(suite, f);
    });

    if (mode === 'htpasswd') {
      test("git's credential prompt is reached on 401 (GIT_ASKPASS answers it)", async () => {
        const prompts = join(f.work, 'prompts');
        const askpass = join(f.work, 'askpass.sh');
        await writeFile(
          askpass,
          `#!/bin/sh\necho "$1" >> ${prompts}\ncase "$1" in Username*) echo alice ;; *) echo alice-pw ;; esac\n`,
        );
        await chmod(askpass, 0o755);
        const url = f.url('anonymous', 'team/app.git');
        await git(suite, ['clone', '-q', '--bare', url, join(f.work, 'prompted')], {
          env: { GIT_ASKPASS: askpass },
        });
        const port = new URL(url).port;
        assert.deepEqual(
          (await readFile(prompts, 'utf8'))
            .trim()
            .split('\n')
            .map((l) => l.trimEnd()),
          [`Username for 'http://127.0.0.1:${port}':`, `Password for 'http://alice@127.0.0.1:${port}':`],
        );
      });
    }

    // Rows that touch only their own refs run side by side.
    describe('clone, fetch, push and delete a branch', { concurrency: 4 }, () => {
      for (const repo of REPOS) {
        for (const who of IDENTITIES) {
          const bad = who === 'wrong password' || who === 'unknown user';
          const ops: Op[] = bad ? ['clone', 'push'] : ['clone', 'fetch', 'push', 'delete'];
          for (const op of ops) {
            const want = expected(mode, who, repo, op);
            test(`${who}: ${op} ${repo} -> ${want}`, async () => {
              assert.equal(await attempt(suite, f, who, repo, op), want);
            });
          }
        }
      }
    });

    // Rows that move main run one after the other.
    describe('update, force-push and delete main', () => {
      for (const repo of ['team/app.git', 'sandbox/play.git', 'public/site.git'] as const) {
        for (const who of ['anonymous', 'alice', 'bob', 'carol'] as const) {
          for (const op of ['push main', 'force main', 'delete main'] as const) {
            // Deleting an unprotected main would leave nothing for the next rows.
            if (op === 'delete main' && repo !== 'team/app.git') continue;
            const want = expected(mode, who, repo, op);
            test(`${who}: ${op} of ${repo} -> ${want}`, async () => {
              assert.equal(await attempt(suite, f, who, repo, op), want);
            });
          }
        }
      }
    });
  });
}

/**
 * A post-receive hook records what it is told; the pre-receive hook that was there before
 * install-hooks still runs, after git-fcgi's checks, with the same input.
 */
async function hookIdentity(suite: Cleanup, f: Fixture): Promise<void> {
  const repo = join(f.root, 'team/app.git');
  const seen = join(f.work, 'seen');
  const chained = join(f.work, 'chained');
  // The pre-receive hook that was there before install-hooks: install-hooks ran in setUp,
  // so put one in place and install again, as an admin adding git-fcgi to a server would.
  await writeFile(join(repo, 'hooks/pre-receive'), `#!/bin/sh\ncat >> ${chained}\n`);
  await chmod(join(repo, 'hooks/pre-receive'), 0o755);
  const again = await run(process.execPath, [cliPath, 'install-hooks', repo], { timeoutMs: 10_000 });
  assert.equal(again.code, 0, again.stderr.toString());
  assert.match(again.stdout.toString(), /the existing hook now runs from .*pre-receive\.before-git-fcgi/);
  const vars = ['GIT_FCGI_USER', 'GIT_FCGI_GROUPS', 'GIT_FCGI_REPO', 'GIT_FCGI_REQUEST_ID', 'REMOTE_USER'];
  await writeFile(
    join(repo, 'hooks/post-receive'),
    `#!/bin/sh\n${vars.map((v) => `echo "${v}=$${v}" >> ${seen}`).join('\n')}\n`,
  );
  await chmod(join(repo, 'hooks/post-receive'), 0o755);
  const sha = await f.commit(f.head, 'hook identity');
  await git(suite, ['push', '-q', f.url('alice', 'team/app.git'), `${sha}:refs/heads/identity`], {
    cwd: `${f.work}/local.git`,
  });
  const env = Object.fromEntries(
    (await readFile(seen, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
  assert.equal(env.GIT_FCGI_USER, 'alice');
  assert.equal(env.GIT_FCGI_GROUPS, 'devs,leads');
  assert.equal(env.GIT_FCGI_REPO, 'team/app.git');
  assert.equal(env.REMOTE_USER, 'alice');
  assert.match(env.GIT_FCGI_REQUEST_ID ?? '', /^[\w.-]+$/);
  // The access line is written when the response has ended, which may be after git is done.
  const line = new RegExp(`req=${env.GIT_FCGI_REQUEST_ID ?? '?'} .*user=alice`);
  await waitFor(() => line.test(f.daemonLogs()), { timeoutMs: 5000, what: 'the access log line' });
  assert.match(await readFile(chained, 'utf8'), new RegExp(`^0{40} ${sha} refs/heads/identity$`, 'm'));
  // A push the branch rules refuse never reaches the chained hook.
  const before = await readFile(chained, 'utf8');
  const refused = await run('git', ['push', '-q', f.url('bob', 'team/app.git'), ':refs/heads/main'], {
    cwd: `${f.work}/local.git`,
    env: await gitEnv(suite),
    timeoutMs: 30_000,
  });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr.toString(), /remote: git-fcgi: refs\/heads\/main is protected/);
  assert.equal(await readFile(chained, 'utf8'), before);
}
