import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide, repoNames, ruleFor } from '../../../src/access/rules.js';
import { accessFrom } from './access-from.js';

describe('most specific section wins', () => {
  const access = accessFrom(`
[repo:**]
read = everyone
[repo:**/*.git]
read = anygit
[repo:team/*]
read = team
[repo:team/*.git]
read = teamgit
[repo:team/app]
read = exact
[repo:team/a?p.git]
read = question
[repo:*/secret*]
read = secret
[repo:a/**/z.git]
read = deep
[repo:a/*/z.git]
read = shallow
`);
  const winner = (repo: string): string => [...(ruleFor(access.rules, repo)?.read.users ?? [])].join();

  const cases: Array<[repo: string, winner: string]> = [
    ['other.git', 'anygit'], // '**/*.git' (4 literals) beats '**' (0)
    ['other', 'anygit'], // matched as other.git
    ['team/app.git', 'exact'], // no wildcard beats everything; matches without .git
    ['team/app', 'exact'],
    ['team/amp.git', 'question'], // 'team/a?p.git' has 11 literals, 'team/*.git' 9
    ['team/web.git', 'teamgit'],
    ['team/web', 'teamgit'], // matched as team/web.git
    ['team/secret-x.git', 'teamgit'], // 9 literals against '*/secret*' with 7
    ['ops/secret.git', 'secret'],
    ['a/m/z.git', 'shallow'], // 'a/*/z.git' has 8 literals; in 'a/**/z.git' the '**/' takes its slash: 7
    ['a/m/n/z.git', 'deep'],
    ['a/m/n/z', 'deep'], // matched as a/m/n/z.git
  ];
  for (const [repo, expected] of cases) {
    it(`${repo} -> [repo:…] with read = ${expected}`, () => assert.equal(winner(repo), expected));
  }

  it('prefers fewer ** between patterns with as many literals', () => {
    const two = accessFrom('[repo:x/**]\nread = double\n[repo:x/*]\nread = single\n');
    assert.equal([...(ruleFor(two.rules, 'x/y')?.read.users ?? [])].join(), 'single');
    assert.equal([...(ruleFor(two.rules, 'x/y/z')?.read.users ?? [])].join(), 'double');
  });

  it('breaks a tie with the order in the file', () => {
    const tie = accessFrom('[repo:x/*]\nread = first\n[repo:*/y]\nread = second\n');
    assert.equal([...(ruleFor(tie.rules, 'x/y')?.read.users ?? [])].join(), 'first');
  });

  it('names a repository with and without .git', () => {
    assert.deepEqual(repoNames('a/b.git'), ['a/b.git', 'a/b']);
    assert.deepEqual(repoNames('a/b'), ['a/b', 'a/b.git']);
  });
});

describe('decide', () => {
  const access = accessFrom(`
[groups]
devs = bob, @leads
leads = alice
[repo:public/*]
read = anonymous
write = @devs
[repo:team/*]
read = carol
write = @devs
[repo:secret/*]
read = alice
hide = true
[repo:open/*]
read = anonymous
write = anonymous
[repo:members/*]
read = *
`);
  type Row = [repo: string, op: 'read' | 'write', user: string | null, expected: true | 401 | 403 | 404];
  const rows: Row[] = [
    ['public/a.git', 'read', null, true],
    ['public/a.git', 'write', null, 401],
    ['public/a.git', 'write', 'carol', 403],
    ['public/a.git', 'write', 'bob', true],
    ['public/a.git', 'write', 'alice', true], // through @leads in @devs
    ['team/a.git', 'read', null, 401],
    ['team/a.git', 'read', 'carol', true],
    ['team/a.git', 'read', 'bob', true], // write implies read
    ['team/a.git', 'write', 'carol', 403],
    ['team/a.git', 'read', 'dave', 403],
    ['secret/a.git', 'read', 'alice', true],
    ['secret/a.git', 'write', 'alice', 403], // may read: hiding would be pointless
    ['secret/a.git', 'read', 'bob', 404],
    ['secret/a.git', 'write', 'bob', 404],
    ['secret/a.git', 'read', null, 401], // anonymous must still be able to log in
    ['open/a.git', 'write', null, true],
    ['members/a.git', 'read', 'dave', true],
    ['members/a.git', 'read', null, 401],
    ['nowhere/a.git', 'read', 'alice', 404],
    ['nowhere/a.git', 'read', null, 404],
  ];
  for (const [repo, op, user, expected] of rows) {
    it(`${user ?? 'anonymous'} ${op} ${repo} -> ${expected === true ? 'allowed' : expected}`, () => {
      const d = decide(access, repo, op, user);
      assert.equal(d.allowed ? true : d.status, expected, d.allowed ? '' : d.reason);
    });
  }
});
