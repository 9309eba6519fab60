import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { gitBool, parseGitConfig } from '../../../src/advertisement/git-config.js';

/** Config texts git reads, and texts it refuses: the parser must agree with `git config --list`. */
const CORPUS = [
  '',
  '[core]\n\tbare = true\n',
  '[core]\n\tbare\n',
  '[Core]\n\tBare = TRUE\n',
  '[http] receivepack = true\n',
  '[HTTP]\n  ReceivePack ; comment\n',
  '[http]\n\treceivepack # comment\n',
  '[http]\r\n\tUploadPack = false\r\n',
  '[remote "Origin"]\n\turl = x\n',
  '[remote "a\\"b\\\\c"]\n\turl = y\n',
  '[Section.SubSection]\n\tKey = v\n',
  '[a]\n\tk = "quoted ; not a comment"\n',
  '[a]\n\tk = one   two\t three   \n',
  '[a]\n\tk = esc\\t\\n\\b\\\\\\"\n',
  '[a]\n\tk = cont\\\n  inued\n',
  '[a]\n\tk = x # trailing\n\tj = "y" z\n',
  '[a]\n\tk =\n',
  '[a]\n\tk = ""\n',
  '\uFEFF[a]\n\tk = bom\n',
  '# only a comment\n; another\n',
  '[a]k=v\n',
  '[a-b]\n\tx-y = 1\n',
  '[include]\n\tpath = other\n',
  '[includeIf "gitdir:/x/"]\n\tpath = other\n',
  '[extensions]\n\trefStorage = reftable\n',
  // refused by git
  'k = v\n',
  '[a\n',
  '[a]\n\tk = "unterminated\n',
  '[a]\n\tk = bad\\escape\n',
  '[a]\n\t1k = v\n',
  '[a "sub]\n',
  '[]\n',
  '[a]\n\tk v\n',
];

describe('git config parser', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'git-fcgi-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('reads every text as `git config --list` does, and refuses what git refuses', async () => {
    const run = promisify(execFile);
    let agreed = 0;
    for (const [i, text] of CORPUS.entries()) {
      const file = path.join(dir, `c${i}`);
      await writeFile(file, text);
      let expected: string[] | null;
      try {
        const { stdout } = await run('git', ['config', '--file', file, '--list', '--null'], {
          env: { PATH: process.env.PATH, HOME: dir, GIT_CONFIG_NOSYSTEM: '1' },
        });
        expected = stdout.split('\0').filter((entry) => entry !== '');
      } catch {
        expected = null;
      }
      let actual: string[] | null;
      try {
        actual = parseGitConfig(text).map(({ key, value }) => (value === null ? key : `${key}\n${value}`));
      } catch {
        actual = null;
      }
      assert.deepEqual(actual, expected, JSON.stringify(text));
      agreed++;
    }
    assert.equal(agreed, CORPUS.length);
  });

  test('booleans as git_parse_maybe_bool() reads them; anything else is not decided here', () => {
    for (const yes of [null, 'true', 'Yes', 'ON', '1', '-1', '+2'])
      assert.equal(gitBool(yes), true, String(yes));
    for (const no of ['false', 'No', 'off', '', '0', '-0']) assert.equal(gitBool(no), false, no);
    for (const unknown of ['1k', 'maybe', ' true', '0x1']) assert.equal(gitBool(unknown), undefined, unknown);
  });
});
