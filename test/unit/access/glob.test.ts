import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileGlob, globMatches } from '../../../src/access/glob.js';

describe('compileGlob', () => {
  const cases: Array<[pattern: string, name: string, matches: boolean]> = [
    ['public/*', 'public/site.git', true],
    ['public/*', 'public/a/b.git', false],
    ['public/**', 'public/a/b.git', true],
    ['**', 'x.git', true],
    ['**', 'a/b/c.git', true],
    ['**/x.git', 'x.git', true],
    ['**/x.git', 'a/b/x.git', true],
    ['**/x.git', 'a/b/y.git', false],
    ['team/*.git', 'team/app.git', true],
    ['team/*.git', 'team/app', false],
    ['docs.example/*', 'docs.example/guide.git', true],
    ['docs.example/*', 'docsXexample/guide.git', false],
    ['a?c', 'abc', true],
    ['a?c', 'a/c', false],
    ['/team/app.git', 'team/app.git', true],
    ['refs/heads/main', 'refs/heads/main', true],
    ['refs/heads/main', 'refs/heads/main2', false],
    ['refs/tags/*', 'refs/tags/v1', true],
    ['refs/tags/*', 'refs/tags/v1/rc', false],
    ['refs/tags/**', 'refs/tags/v1/rc', true],
    ['a+b(c)|d$^', 'a+b(c)|d$^', true],
  ];
  for (const [pattern, name, matches] of cases) {
    it(`${pattern} ${matches ? 'matches' : 'does not match'} ${name}`, () => {
      assert.equal(globMatches(compileGlob(pattern), name), matches);
    });
  }

  it('counts literal characters and double stars, and knows exact patterns', () => {
    assert.deepEqual(pick(compileGlob('team/*.git')), { exact: false, literalChars: 9, doubleStars: 0 });
    assert.deepEqual(pick(compileGlob('**')), { exact: false, literalChars: 0, doubleStars: 1 });
    assert.deepEqual(pick(compileGlob('a/**/b')), { exact: false, literalChars: 3, doubleStars: 1 });
    assert.deepEqual(pick(compileGlob('team/app.git')), { exact: true, literalChars: 12, doubleStars: 0 });
  });

  for (const bad of ['', '  ', '/', 'a[bc]', 'a{b,c}', 'a\\b']) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => compileGlob(bad));
    });
  }
});

function pick(g: ReturnType<typeof compileGlob>): object {
  return { exact: g.exact, literalChars: g.literalChars, doubleStars: g.doubleStars };
}
