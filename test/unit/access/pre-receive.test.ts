import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkRefUpdates, parseRefUpdates, type RefUpdate } from '../../../src/access/pre-receive.js';
import { accessFrom } from './access-from.js';

const Z = '0'.repeat(40);
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

describe('pre-receive branch rules', () => {
  const access = accessFrom(`
[groups]
leads = alice
devs = bob, @leads
[repo:team/*]
read = @devs
write = @devs
protect = refs/heads/main, refs/tags/*
protect_push = @leads
deny_force = true
deny_delete = true
[repo:loose/*]
write = @devs
protect = refs/heads/main
deny_force = true
[repo:open/*]
write = anonymous
`);
  // B is a fast-forward of A; C is not.
  const isAncestor = (oldId: string, newId: string): Promise<boolean> =>
    Promise.resolve(oldId === A && newId === B);
  const check = (repo: string, user: string | null, updates: RefUpdate[]): Promise<string[]> =>
    checkRefUpdates({ access, repo, user, isAncestor }, updates);
  const update = (ref: string, oldId: string, newId: string): RefUpdate => ({ ref, oldId, newId });

  type Row = [what: string, repo: string, user: string | null, u: RefUpdate, refused: RegExp | null];
  const rows: Row[] = [
    ['a lead fast-forwards main', 'team/a.git', 'alice', update('refs/heads/main', A, B), null],
    ['a dev pushes an unprotected branch', 'team/a.git', 'bob', update('refs/heads/x', A, C), null],
    ['a dev deletes an unprotected branch', 'team/a.git', 'bob', update('refs/heads/x', A, Z), null],
    [
      'a dev updates main',
      'team/a.git',
      'bob',
      update('refs/heads/main', A, B),
      /only @leads may update it \(not bob\)/,
    ],
    [
      'a dev creates a tag',
      'team/a.git',
      'bob',
      update('refs/tags/v1', Z, A),
      /refs\/tags\/v1 is protected: only @leads/,
    ],
    ['a lead force-pushes main', 'team/a.git', 'alice', update('refs/heads/main', A, C), /non-fast-forward/],
    [
      'a lead deletes main',
      'team/a.git',
      'alice',
      update('refs/heads/main', A, Z),
      /deleting it is not allowed/,
    ],
    ['a lead creates a tag', 'team/a.git', 'alice', update('refs/tags/v1', Z, A), null],
    [
      'without protect_push, any writer updates main',
      'loose/a.git',
      'bob',
      update('refs/heads/main', A, B),
      null,
    ],
    ['but not with a force push', 'loose/a.git', 'bob', update('refs/heads/main', A, C), /non-fast-forward/],
    ['deleting is allowed without deny_delete', 'loose/a.git', 'bob', update('refs/heads/main', A, Z), null],
    ['anonymous where anonymous may write', 'open/a.git', null, update('refs/heads/main', A, C), null],
    [
      'a user the rules do not let write',
      'team/a.git',
      'carol',
      update('refs/heads/x', A, B),
      /carol may not push/,
    ],
    [
      'a repository no section matches',
      'else/a.git',
      'alice',
      update('refs/heads/x', A, B),
      /no \[repo:…\] section/,
    ],
  ];
  for (const [what, repo, user, u, refused] of rows) {
    it(`${what}: ${refused === null ? 'accepted' : 'refused'}`, async () => {
      const reasons = await check(repo, user, [u]);
      if (refused === null) assert.deepEqual(reasons, []);
      else {
        assert.equal(reasons.length, 1, reasons.join('; '));
        assert.match(reasons[0] ?? '', refused);
      }
    });
  }

  it('reports every refused ref of a push', async () => {
    const reasons = await check('team/a.git', 'alice', [
      update('refs/heads/main', A, C),
      update('refs/heads/ok', A, C),
      update('refs/tags/v1', A, Z),
    ]);
    assert.equal(reasons.length, 2);
  });

  it('parses what git writes to pre-receive', () => {
    assert.deepEqual(parseRefUpdates(`${A} ${B} refs/heads/main\n${Z} ${C} refs/tags/v 1\n`), [
      update('refs/heads/main', A, B),
      update('refs/tags/v 1', Z, C),
    ]);
    assert.deepEqual(parseRefUpdates(''), []);
    assert.throws(() => parseRefUpdates('garbage\n'), /unexpected pre-receive input/);
  });
});
