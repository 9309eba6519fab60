import assert from 'node:assert/strict';
import { symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { suiteCleanup } from '../helpers/cleanup.js';
import { startGitFcgi, type GitFcgi } from '../helpers/daemon.js';
import { capture } from '../helpers/http-capture.js';
import { gitLocation, htpasswd, startNginx, type Nginx } from '../helpers/nginx.js';
import { assertNoGitProcesses } from '../helpers/proc.js';
import { createBareRepo, git, GIT_HTTP_BACKEND } from '../helpers/repos.js';
import { tmpDir } from '../helpers/tmp.js';

/**
 * The direct ref advertisement (git upload-pack/receive-pack without git http-backend) must be
 * indistinguishable from git http-backend's: the same requests go to a daemon running the stock
 * backend (which takes the fast path) and to one running it under another name (which cannot),
 * and every response must match byte for byte, refusals included.
 */
describe('ref advertisement: direct run vs git http-backend', () => {
  const suite = suiteCleanup(after);
  let root: string;
  let fast: GitFcgi;
  let nginx: Nginx;

  const repos: Record<string, readonly string[] | 'hidden' | 'include' | 'empty' | 'broken'> = {
    'plain.git': [],
    'hidden.git': 'hidden',
    'empty.git': 'empty',
    'upload-off.git': ['http.uploadpack', 'false'],
    'receive-on.git': ['http.receivepack', 'true'],
    'receive-off.git': ['http.receivepack', 'false'],
    'filter.git': ['uploadpack.allowFilter', 'true'],
    'include.git': 'include',
    // Passes git-fcgi's checks but not git's: the direct run fails and git http-backend answers.
    'broken.git': 'broken',
  };

  before(async () => {
    root = await tmpDir(suite, 'adv-repos-');
    const work = await tmpDir(suite, 'adv-work-');
    for (const [name, setup] of Object.entries(repos)) {
      const path = join(root, name);
      if (setup === 'empty') await git(suite, ['init', '-q', '--bare', path]);
      else await createBareRepo(suite, root, name, { commits: 2 });
      if (setup !== 'hidden') await writeFile(join(path, 'git-daemon-export-ok'), '');
      if (setup === 'broken') {
        await writeFile(join(path, 'HEAD'), 'not a ref\n');
      } else if (setup === 'include') {
        await writeFile(join(work, 'extra.config'), '[http]\n\tuploadpack = false\n');
        await git(suite, ['config', 'include.path', join(work, 'extra.config')], { cwd: path });
      } else if (Array.isArray(setup) && setup.length === 2) {
        await git(suite, ['config', ...setup], { cwd: path });
      }
    }
    await git(suite, ['tag', 'v1', 'main'], { cwd: join(root, 'plain.git') });
    const bin = await tmpDir(suite, 'adv-bin-');
    const renamed = join(bin, 'http-backend-by-another-name');
    await symlink(GIT_HTTP_BACKEND, renamed);
    const sockets = await tmpDir(suite, 'adv-sock-');
    const daemonArgs = (sock: string): string[] => [
      '--listen',
      `unix:${sock}`,
      '--project-root',
      root,
      '--log-level',
      'debug',
    ];
    fast = await startGitFcgi(suite, daemonArgs(join(sockets, 'fast.sock')));
    await startGitFcgi(suite, [...daemonArgs(join(sockets, 'plain.sock')), '--backend', renamed]);
    const users = await htpasswd(suite, work, { alice: 'secret' });
    const servers = ['fast', 'plain'].flatMap((which) => {
      const socket = join(sockets, `${which}.sock`);
      return [
        { locations: gitLocation({ socket }) },
        { locations: gitLocation({ socket, auth: { htpasswdFile: users } }) },
        { locations: gitLocation({ socket, exportAll: true }) },
      ];
    });
    nginx = await startNginx(suite, { servers });
  });

  after(async () => {
    await assertNoGitProcesses(root, { withinMs: 2000 });
  });

  test('every response matches git http-backend byte for byte', async () => {
    const auth = { Authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` };
    const protocols = [undefined, 'version=1', 'version=2', 'version=2:object-format=sha1', 'version=3'];
    let compared = 0;
    const statuses = new Set<number>();
    for (const repo of Object.keys(repos)) {
      for (const service of ['git-upload-pack', 'git-receive-pack']) {
        for (const protocol of protocols) {
          for (const server of [0, 1, 2]) {
            const headers = {
              ...(server === 1 ? auth : {}),
              ...(protocol === undefined ? {} : { 'Git-Protocol': protocol }),
            };
            const path = `${repo}/info/refs?service=${service}`;
            const direct = await capture(`${nginx.url(server)}${path}`, headers);
            const reference = await capture(`${nginx.url(server + 3)}${path}`, headers);
            const what = `${path} server ${server} protocol ${protocol ?? '-'}`;
            assert.equal(direct.status, reference.status, what);
            assert.deepEqual(direct.headers, reference.headers, what);
            assert.ok(direct.body.equals(reference.body), `${what}: bodies differ`);
            statuses.add(direct.status);
            compared++;
          }
        }
      }
    }
    assert.equal(compared, Object.keys(repos).length * 2 * protocols.length * 3);
    // The matrix covers answers and refusals alike, and the direct run did happen.
    assert.deepEqual([...statuses].sort(), [200, 403, 404]);
    assert.match(fast.logs(), /backend started .*backend=\/usr\/lib\/git-core\/git(?:\s|$)/m);
  });
});
