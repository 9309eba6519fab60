import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expandGroups, groupsOf, includes, parsePrincipals, union } from '../../../src/access/principals.js';

const defs = (o: Record<string, string[]>): Map<string, string[]> => new Map(Object.entries(o));
const members = (groups: ReturnType<typeof expandGroups>, name: string): string[] =>
  [...(groups.get(name) ?? [])].sort();

describe('expandGroups', () => {
  it('expands nested groups', () => {
    const groups = expandGroups(defs({ devs: ['bob', '@leads'], leads: ['alice'], all: ['@devs', 'carol'] }));
    assert.deepEqual(members(groups, 'leads'), ['alice']);
    assert.deepEqual(members(groups, 'devs'), ['alice', 'bob']);
    assert.deepEqual(members(groups, 'all'), ['alice', 'bob', 'carol']);
    assert.deepEqual(groupsOf(groups, 'alice'), ['all', 'devs', 'leads']);
    assert.deepEqual(groupsOf(groups, 'carol'), ['all']);
    assert.deepEqual(groupsOf(groups, null), []);
  });

  it('terminates on cycles, uniting the groups in the cycle', () => {
    const groups = expandGroups(
      defs({ a: ['x', '@b'], b: ['y', '@c'], c: ['z', '@a'], self: ['s', '@self'] }),
    );
    for (const name of ['a', 'b', 'c']) assert.deepEqual(members(groups, name), ['x', 'y', 'z']);
    assert.deepEqual(members(groups, 'self'), ['s']);
  });

  it('refuses an unknown nested group', () => {
    assert.throws(() => expandGroups(defs({ a: ['@nope'] })), /unknown group @nope/);
  });
});

describe('principals', () => {
  const groups = expandGroups(defs({ devs: ['bob', 'alice'] }));

  it('users, groups, * and anonymous', () => {
    const p = parsePrincipals('carol, @devs', groups);
    assert.deepEqual([...p.users].sort(), ['alice', 'bob', 'carol']);
    assert.equal(includes(p, 'bob'), true);
    assert.equal(includes(p, 'dave'), false);
    assert.equal(includes(p, null), false);
    const any = parsePrincipals('*', groups);
    assert.equal(includes(any, 'dave'), true);
    assert.equal(includes(any, null), false);
    const everyone = parsePrincipals('anonymous', groups);
    assert.equal(includes(everyone, null), true);
    assert.equal(includes(everyone, 'dave'), true, 'anonymous means everyone, logged in or not');
  });

  it('keeps the text as written and unites read with write', () => {
    const read = parsePrincipals(' carol ,, ', groups);
    const write = parsePrincipals('@devs', groups);
    const both = union(read, write);
    assert.equal(both.text, 'carol, @devs');
    assert.equal(includes(both, 'alice'), true);
  });

  it('refuses unknown groups and odd names', () => {
    assert.throws(() => parsePrincipals('@nope', groups), /unknown group @nope/);
    assert.throws(() => parsePrincipals('a b', groups), /invalid user/);
    assert.throws(() => parsePrincipals('*x', groups), /invalid user/);
  });
});
