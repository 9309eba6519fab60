import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GitInstalls, isTestedRelease } from '../../../src/advertisement/git-install.js';
import { fetchKey, MAX_FETCH_BODY_BYTES, planFetch } from '../../../src/fetch-cache/fetch-key.js';
import type { Repository } from '../../../src/request/locate-repository.js';
import { suiteCleanup } from '../../helpers/cleanup.js';
import { git } from '../../helpers/repos.js';
import { BACKEND, bareRepository, fetchBody, fetchEnv, FixedInstalls, type Fixture } from './fixtures.js';

const repo = (dir: string): Repository => ({
  name: 'r',
  entered: dir,
  gitDir: dir,
  commonDir: dir,
  viaGitfile: false,
});

describe('fetch key', () => {
  const r = repo('/srv/git/r.git');
  const body = fetchBody('a'.repeat(40), ['b'.repeat(40)]);
  const env: Record<string, string> = {
    PATH: '/usr/bin:/bin',
    LC_ALL: 'C',
    REQUEST_METHOD: 'POST',
    PATH_INFO: '/r.git/git-upload-pack',
    GIT_PROJECT_ROOT: '/srv/git',
    CONTENT_TYPE: 'application/x-git-upload-pack-request',
    CONTENT_LENGTH: String(body.length),
    GIT_PROTOCOL: 'version=2',
    HTTP_GIT_PROTOCOL: 'version=2',
    REMOTE_ADDR: '192.0.2.1',
    REMOTE_PORT: '40000',
    SERVER_PORT: '80',
    GIT_FCGI_REQUEST_ID: 'abc',
    HTTP_USER_AGENT: 'git/2.39.5',
  };
  const key = fetchKey(BACKEND, r, env, body);

  test('is a sha-256 in hex, the same for the same request', () => {
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(fetchKey(BACKEND, r, { ...env }, Buffer.from(body)), key);
  });

  test('what differs from one request to the next and git does not read for a fetch is not part of it', () => {
    const perRequest: Record<string, string> = {
      REMOTE_ADDR: '198.51.100.7',
      REMOTE_PORT: '51234',
      REMOTE_HOST: 'client.example',
      REQUEST_URI: '/r.git/git-upload-pack?x',
      SERVER_NAME: 'git.example',
      SERVER_PORT: '8080',
      SERVER_ADDR: '203.0.113.1',
      SERVER_PROTOCOL: 'HTTP/2.0',
      HTTPS: 'on',
      GIT_FCGI_REQUEST_ID: 'def',
      GIT_FCGI_PACK_TOKEN: 'token-2',
      GIT_COMMITTER_NAME: 'someone',
      GIT_COMMITTER_EMAIL: 'someone@198.51.100.7',
      HTTP_USER_AGENT: 'git/2.47.3',
      HTTP_ACCEPT: 'application/x-git-upload-pack-result',
      HTTP_X_FORWARDED_FOR: '198.51.100.7',
      HTTP_ACCEPT_ENCODING: 'deflate, gzip, br',
    };
    for (const [name, value] of Object.entries(perRequest)) {
      assert.equal(fetchKey(BACKEND, r, { ...env, [name]: value }, body), key, `${name} changed`);
      const without: Record<string, string> = { ...env };
      delete without[name];
      assert.equal(fetchKey(BACKEND, r, without, body), key, `${name} absent`);
    }
    assert.equal(fetchKey(BACKEND, r, { ...env, ...perRequest }, body), key, 'all at once');
  });

  test('the order the variables come in does not matter', () => {
    const reversed = Object.fromEntries(Object.entries(env).reverse());
    assert.equal(fetchKey(BACKEND, r, reversed, body), key);
  });

  test('the body, what git reads of the environment, the repository and the backend are', () => {
    const differs: Array<[string, string]> = [
      ['another body', fetchKey(BACKEND, r, env, fetchBody('a'.repeat(40), ['c'.repeat(40)]))],
      ['no body', fetchKey(BACKEND, r, env, Buffer.alloc(0))],
      ['GIT_PROTOCOL', fetchKey(BACKEND, r, { ...env, GIT_PROTOCOL: 'version=1' }, body)],
      ['HTTP_GIT_PROTOCOL', fetchKey(BACKEND, r, { ...env, HTTP_GIT_PROTOCOL: 'version=1' }, body)],
      ['HTTP_CONTENT_ENCODING', fetchKey(BACKEND, r, { ...env, HTTP_CONTENT_ENCODING: 'gzip' }, body)],
      ['CONTENT_TYPE', fetchKey(BACKEND, r, { ...env, CONTENT_TYPE: 'text/plain' }, body)],
      ['REMOTE_USER', fetchKey(BACKEND, r, { ...env, REMOTE_USER: 'alice' }, body)],
      ['GIT_NAMESPACE', fetchKey(BACKEND, r, { ...env, GIT_NAMESPACE: 'ns' }, body)],
      ['HOME', fetchKey(BACKEND, r, { ...env, HOME: '/home/git' }, body)],
      ['PATH_INFO', fetchKey(BACKEND, r, { ...env, PATH_INFO: '/r/git-upload-pack' }, body)],
      ['QUERY_STRING', fetchKey(BACKEND, r, { ...env, QUERY_STRING: 'x=1' }, body)],
      ['a variable of [env]', fetchKey(BACKEND, r, { ...env, TZ: 'UTC' }, body)],
      ['another repository', fetchKey(BACKEND, repo('/srv/git/s.git'), env, body)],
      ['the same one entered elsewhere', fetchKey(BACKEND, { ...r, entered: '/srv/git/r' }, env, body)],
      ['another backend', fetchKey('/usr/libexec/git-core/git-http-backend', r, env, body)],
    ];
    const config = {
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'uploadpack.allowFilter',
      GIT_CONFIG_VALUE_0: 'true',
    };
    const withConfig = fetchKey(BACKEND, r, { ...env, ...config }, body);
    differs.push(
      ['a GIT_CONFIG_* entry', withConfig],
      ['its value', fetchKey(BACKEND, r, { ...env, ...config, GIT_CONFIG_VALUE_0: 'false' }, body)],
      [
        'its key',
        fetchKey(BACKEND, r, { ...env, ...config, GIT_CONFIG_KEY_0: 'uploadpack.allowSidebandAll' }, body),
      ],
    );
    const seen = new Map<string, string>([[key, 'the request']]);
    for (const [what, other] of differs) {
      assert.equal(seen.get(other), undefined, `${what}: the same key as ${seen.get(other) ?? ''}`);
      seen.set(other, what);
    }
  });

  test('an empty variable is not an absent one', () => {
    assert.notEqual(fetchKey(BACKEND, r, { ...env, REMOTE_USER: '' }, body), key);
    assert.notEqual(fetchKey(BACKEND, r, { ...env, GIT_PROTOCOL: '' }, body), key);
  });

  test('field boundaries cannot be confused: bytes moved between variables, values and the body', () => {
    const base = repo('/r');
    const cases: Array<[string, Record<string, string>, string]> = [
      ['A=b + c', { A: 'b' }, 'c'],
      ['A=bc + ""', { A: 'bc' }, ''],
      ['A= + bc', { A: '' }, 'bc'],
      ['no env + A=bc', {}, 'A=bc'],
      ['A=b, B=c + ""', { A: 'b', B: 'c' }, ''],
      ['A=bB=c + ""', { A: 'bB=c' }, ''],
      ['A=b\\0B=c + ""', { A: 'b\0B=c' }, ''],
      ['A=b, B= + c', { A: 'b', B: '' }, 'c'],
      ['AB=c + ""', { AB: 'c' }, ''],
      ['A=b + length-prefixed field', { A: 'b' }, `${'\0'.repeat(7)}\x01c`],
      ['A=b\\0...\\1B=c + ""', { A: `b${'\0'.repeat(7)}\x03B=c` }, ''],
    ];
    const keys = new Map<string, string>();
    for (const [what, vars, text] of cases) {
      const k = fetchKey(BACKEND, base, vars, Buffer.from(text, 'latin1'));
      assert.equal(keys.get(k), undefined, `${what} and ${keys.get(k) ?? ''} share a key`);
      keys.set(k, what);
    }
    assert.equal(keys.size, cases.length);
    // And the scope is a field of its own: a repository path cannot run into the variables.
    assert.notEqual(
      fetchKey(BACKEND, repo('/rA=b'), {}, Buffer.alloc(0)),
      fetchKey(BACKEND, repo('/r'), { A: 'b' }, Buffer.alloc(0)),
    );
  });
});

describe('fetch plan', () => {
  const suite = suiteCleanup(after);
  let fixture: Fixture;
  const body = fetchBody('a'.repeat(40));

  before(async () => {
    fixture = await bareRepository(suite);
  });

  const plan = (env: Record<string, string>, installs = fixture.installs, repository = fixture.repository) =>
    planFetch(installs, BACKEND, repository, env);

  test('a plain bare repository: kept, with the body length announced', () => {
    const p = plan(fetchEnv(fixture, body));
    assert.equal(p.reason, undefined);
    assert.ok(p.dependsOn !== null);
    assert.equal(p.bodyBytes, body.length);
  });

  test('not a POST, no Content-Length or not a number: not kept', () => {
    const cases: Array<[string, Record<string, string>]> = [
      ['GET', fetchEnv(fixture, body, { REQUEST_METHOD: 'GET' })],
      ['HEAD', fetchEnv(fixture, body, { REQUEST_METHOD: 'HEAD' })],
      ['post', fetchEnv(fixture, body, { REQUEST_METHOD: 'post' })],
      ['no method', (({ REQUEST_METHOD: _m, ...rest }) => rest)(fetchEnv(fixture, body))],
      ['no CONTENT_LENGTH', (({ CONTENT_LENGTH: _l, ...rest }) => rest)(fetchEnv(fixture, body))],
      ['empty CONTENT_LENGTH', fetchEnv(fixture, body, { CONTENT_LENGTH: '' })],
      ['CONTENT_LENGTH 12a', fetchEnv(fixture, body, { CONTENT_LENGTH: '12a' })],
      ['CONTENT_LENGTH -1', fetchEnv(fixture, body, { CONTENT_LENGTH: '-1' })],
      ['CONTENT_LENGTH " 12"', fetchEnv(fixture, body, { CONTENT_LENGTH: ' 12' })],
      ['CONTENT_LENGTH 1e3', fetchEnv(fixture, body, { CONTENT_LENGTH: '1e3' })],
      ['CONTENT_LENGTH 0x10', fetchEnv(fixture, body, { CONTENT_LENGTH: '0x10' })],
    ];
    for (const [what, env] of cases) {
      const p = plan(env);
      assert.equal(p.dependsOn, null, what);
      assert.equal(typeof p.reason, 'string', what);
    }
    assert.equal(plan(fetchEnv(fixture, body, { REQUEST_METHOD: 'GET' })).reason, 'not a POST');
    assert.equal(plan(fetchEnv(fixture, body, { CONTENT_LENGTH: '12a' })).reason, 'no Content-Length');
  });

  test(`a body of up to ${MAX_FETCH_BODY_BYTES} bytes is kept, one byte more is not`, () => {
    const at = plan(fetchEnv(fixture, body, { CONTENT_LENGTH: String(MAX_FETCH_BODY_BYTES) }));
    assert.equal(at.reason, undefined);
    assert.equal(at.dependsOn === null ? -1 : at.bodyBytes, MAX_FETCH_BODY_BYTES);
    const over = plan(fetchEnv(fixture, body, { CONTENT_LENGTH: String(MAX_FETCH_BODY_BYTES + 1) }));
    assert.equal(over.dependsOn, null);
    assert.match(over.reason ?? '', /over 65536 bytes/);
    assert.equal(plan(fetchEnv(fixture, body, { CONTENT_LENGTH: '99999999999999999999' })).dependsOn, null);
    assert.equal(plan(fetchEnv(fixture, body, { CONTENT_LENGTH: '0' })).reason, undefined);
  });

  test('a GIT_ variable whose effect is not known: not kept (knownDependencies)', () => {
    for (const name of ['GIT_TRACE', 'GIT_DIR', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES']) {
      const p = plan(fetchEnv(fixture, body, { [name]: '1' }));
      assert.equal(p.dependsOn, null, name);
      assert.match(p.reason ?? '', new RegExp(`${name} in the environment`), name);
    }
    for (const name of [
      'GIT_NAMESPACE',
      'GIT_CONFIG_COUNT',
      'GIT_FCGI_PACK_TOKEN',
      'GIT_HTTP_MAX_REQUEST_BUFFER',
    ]) {
      assert.equal(plan(fetchEnv(fixture, body, { [name]: '1' })).reason, undefined, name);
    }
  });

  test('a git installation not known, or not a tested release: not kept', () => {
    const env = fetchEnv(fixture, body);
    assert.equal(plan(env, new FixedInstalls(null)).dependsOn, null);
    const untested = new FixedInstalls({
      program: '/usr/lib/git-core/git',
      systemConfig: '/etc/gitconfig',
      version: '2.40.0',
    });
    assert.match(plan(env, untested).reason ?? '', /not a tested release/);
  });

  test('a repository reached through a gitfile or with a commondir: not kept', () => {
    const env = fetchEnv(fixture, body);
    assert.equal(plan(env, fixture.installs, { ...fixture.repository, viaGitfile: true }).dependsOn, null);
    assert.equal(
      plan(env, fixture.installs, { ...fixture.repository, commonDir: fixture.root }).dependsOn,
      null,
    );
  });

  test("the list: the advertisement's, plus objects/, objects/info(/commit-graphs) and each loose object directory", async () => {
    const gitDir = fixture.repository.gitDir;
    const objects = join(gitDir, 'objects');
    const blobs = ['one\n', 'two\n', 'three\n'];
    const dirs = new Set<string>();
    for (const blob of blobs) {
      const sha = (
        await git(suite, ['--git-dir', gitDir, 'hash-object', '-w', '--stdin'], { input: blob })
      ).stdout
        .toString()
        .trim();
      dirs.add(sha.slice(0, 2));
    }
    // Not object directories: what git's quarantine and other tools leave in objects/.
    await mkdir(join(objects, 'tmp_objdir-incoming-ab12'));
    await mkdir(join(objects, 'AB'));
    await mkdir(join(objects, 'abc'));
    const p = plan(fetchEnv(fixture, body));
    assert.ok(p.dependsOn !== null, p.reason);
    const { files, links, trees } = p.dependsOn;
    for (const file of [
      gitDir,
      join(gitDir, 'HEAD'),
      join(gitDir, 'packed-refs'),
      join(gitDir, 'config'),
      join(objects, 'pack'),
      join(objects, 'info', 'alternates'),
      join(gitDir, 'shallow'),
      join(fixture.home, '.gitconfig'),
      join(fixture.root, 'etc-gitconfig'),
      BACKEND,
      objects,
      join(objects, 'info'),
      join(objects, 'info', 'commit-graphs'),
    ]) {
      assert.ok(files.includes(file), file);
    }
    const loose = files.filter((file) => file.startsWith(`${objects}/`) && /\/[0-9a-f]{2}$/.test(file));
    assert.deepEqual(loose.sort(), [...dirs].map((dir) => join(objects, dir)).sort());
    const onDisk = (await readdir(objects)).filter((name) => /^[0-9a-f]{2}$/.test(name));
    assert.deepEqual(onDisk.sort(), [...dirs].sort(), 'each loose object directory, no other');
    for (const odd of ['tmp_objdir-incoming-ab12', 'AB', 'abc']) {
      assert.ok(!files.includes(join(objects, odd)), odd);
    }
    assert.deepEqual(links, [fixture.repository.entered]);
    assert.deepEqual(trees, [join(gitDir, 'refs')]);
    assert.equal(new Set(files).size, files.length, 'no path twice');
  });

  test('a repository with alternates: not kept (its objects are also elsewhere)', async () => {
    const alternates = join(fixture.repository.gitDir, 'objects', 'info', 'alternates');
    await writeFile(alternates, '/srv/git/other.git/objects\n');
    try {
      const p = plan(fetchEnv(fixture, body));
      assert.equal(p.dependsOn, null);
      assert.equal(p.reason, 'alternates');
    } finally {
      await rm(alternates);
    }
    assert.equal(plan(fetchEnv(fixture, body)).reason, undefined, 'and kept again once they are gone');
  });

  test('a repository without objects/: not kept', async () => {
    const gitDir = join(fixture.root, 's.git');
    await git(suite, ['init', '-q', '--bare', gitDir]);
    await rm(join(gitDir, 'objects'), { recursive: true });
    const p = plan(fetchEnv(fixture, body), fixture.installs, {
      name: 's',
      entered: gitDir,
      gitDir,
      commonDir: gitDir,
      viaGitfile: false,
    });
    assert.equal(p.dependsOn, null);
    assert.equal(p.reason, 'objects/ unreadable');
  });

  test('with the GitInstalls the daemon uses, once it probed the system git', async (t) => {
    const installs = new GitInstalls();
    const program = join(BACKEND, '..', 'git');
    const version = await installs.probe(program);
    if (installs.of(BACKEND) === null || !isTestedRelease(version)) {
      t.skip(`the system git (${version ?? 'version unknown'} at ${BACKEND}) is not one the plan trusts`);
      return;
    }
    const p = plan(fetchEnv(fixture, body), installs);
    assert.equal(p.reason, undefined);
    assert.ok(p.dependsOn?.files.includes(program));
  });
});
