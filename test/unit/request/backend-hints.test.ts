import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backendHint, type HintContext } from '../../../src/request/backend-hints.js';

const anonymous: HintContext = { servingUser: 'git', home: '/srv/git', remoteUser: false };
const alice: HintContext = { ...anonymous, remoteUser: true };

describe('hints after git http-backend refusals', () => {
  it('not exported: the file to create, or the setting', () => {
    const hint = backendHint("Repository not exported: '/srv/git/app.git'", anonymous);
    assert.equal(
      hint,
      "hint: git serves only repositories holding a git-daemon-export-ok file: touch '/srv/git/app.git/git-daemon-export-ok', or set export_all = true in [git]",
    );
  });

  it('a push without REMOTE_USER: the login is missing, not the service', () => {
    const hint = backendHint("Service not enabled: 'receive-pack'", anonymous);
    assert.match(hint ?? '', /^hint: git http-backend takes a push only with REMOTE_USER/);
    assert.match(hint ?? '', /git config http\.receivepack true/);
  });

  it('a service refused with a user: the repository switched it off', () => {
    assert.equal(
      backendHint("Service not enabled: 'receive-pack'", alice),
      "hint: the repository's config has http.receivepack = false",
    );
    assert.equal(
      backendHint("Service not enabled: 'upload-pack'", anonymous),
      "hint: the repository's config has http.uploadpack = false",
    );
  });

  it("dubious ownership: names the serving user and its HOME, not git's --global advice alone", () => {
    const hint = backendHint(
      "fatal: detected dubious ownership in repository at '/srv/git/app.git'",
      anonymous,
    );
    assert.match(
      hint ?? '',
      /^hint: git runs as git and git does not own the repository: chown -R git: '\/srv\/git\/app\.git'/,
    );
    assert.match(hint ?? '', /git config --system --add safe\.directory '\/srv\/git\/app\.git'/);
    assert.match(hint ?? '', /HOME=\/srv\/git\)$/);
    assert.match(
      backendHint("fatal: detected dubious ownership in repository at '/x'", { ...anonymous, home: null }) ??
        '',
      /no HOME\)$/,
    );
  });

  it('other lines get no hint', () => {
    for (const line of [
      'To add an exception for this directory, call:',
      'fatal: git upload-pack: not our ref 0000000000000000000000000000000000000000',
      "Repository not exported: ''",
      "Service not enabled: 'something-else'",
    ])
      assert.equal(backendHint(line, anonymous), null, line);
  });
});
