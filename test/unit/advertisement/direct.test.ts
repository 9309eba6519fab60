import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  headFor,
  isPlainGet,
  protocolVersion,
  refStorageOf,
  serviceEnabled,
  serviceLine,
} from '../../../src/advertisement/direct.js';
import { parseGitConfig } from '../../../src/advertisement/git-config.js';

describe('direct advertisement', () => {
  test('the service line is the pkt-line git http-backend writes, then a flush', () => {
    assert.equal(serviceLine('git-upload-pack').toString(), '001e# service=git-upload-pack\n0000');
    assert.equal(serviceLine('git-receive-pack').toString(), '001f# service=git-receive-pack\n0000');
  });

  test("the head is hdr_nocache() and the service's Content-Type, status 200", () => {
    const head = headFor('git-upload-pack');
    assert.equal(head.status, 200);
    assert.deepEqual(head.headers, [
      ['Expires', 'Fri, 01 Jan 1980 00:00:00 GMT'],
      ['Pragma', 'no-cache'],
      ['Cache-Control', 'no-cache, max-age=0, must-revalidate'],
      ['Content-Type', 'application/x-git-upload-pack-advertisement'],
    ]);
    assert.equal(head.rest.length, 0);
  });

  test('a plain GET: no body (CONTENT_LENGTH absent or 0, as HAProxy and Caddy send), no encoding', () => {
    assert.equal(isPlainGet({ REQUEST_METHOD: 'GET' }), true);
    assert.equal(isPlainGet({ REQUEST_METHOD: 'GET', CONTENT_LENGTH: '0' }), true);
    assert.equal(isPlainGet({ REQUEST_METHOD: 'GET', CONTENT_LENGTH: '5' }), false);
    assert.equal(isPlainGet({ REQUEST_METHOD: 'GET', CONTENT_LENGTH: '00' }), false);
    assert.equal(isPlainGet({ REQUEST_METHOD: 'GET', HTTP_CONTENT_ENCODING: 'gzip' }), false);
    assert.equal(isPlainGet({ REQUEST_METHOD: 'HEAD' }), false);
    assert.equal(isPlainGet({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: '0' }), false);
  });

  test('protocol version: the highest version= item, as determine_protocol_version_server()', () => {
    const cases: Array<[Record<string, string>, number]> = [
      [{}, 0],
      [{ GIT_PROTOCOL: 'version=2' }, 2],
      [{ GIT_PROTOCOL: 'version=1' }, 1],
      [{ GIT_PROTOCOL: 'version=2:object-format=sha1' }, 2],
      [{ GIT_PROTOCOL: 'object-format=sha1:version=2' }, 2],
      [{ GIT_PROTOCOL: 'version=2:version=1' }, 2],
      [{ GIT_PROTOCOL: 'version=3' }, 0],
      [{ GIT_PROTOCOL: 'version=22' }, 0],
      [{ GIT_PROTOCOL: 'xversion=2' }, 0],
      [{ HTTP_GIT_PROTOCOL: 'version=2' }, 2],
      [{ GIT_PROTOCOL: 'version=1', HTTP_GIT_PROTOCOL: 'version=2' }, 1],
    ];
    for (const [env, version] of cases) assert.equal(protocolVersion(env), version, JSON.stringify(env));
  });

  test('upload-pack is on unless the config turns it off', () => {
    assert.equal(serviceEnabled('git-upload-pack', [], {}), true);
    assert.equal(serviceEnabled('git-upload-pack', [{ key: 'http.uploadpack', value: 'no' }], {}), false);
  });

  test('receive-pack: REMOTE_USER by default, the last http.receivepack entry when given', () => {
    const entries = (...pairs: Array<[string, string | null]>) =>
      pairs.map(([key, value]) => ({ key, value }));
    assert.equal(serviceEnabled('git-receive-pack', [], {}), false);
    assert.equal(serviceEnabled('git-receive-pack', [], { REMOTE_USER: '' }), false);
    assert.equal(serviceEnabled('git-receive-pack', [], { REMOTE_USER: 'alice' }), true);
    assert.equal(serviceEnabled('git-receive-pack', entries(['http.receivepack', 'true']), {}), true);
    assert.equal(serviceEnabled('git-receive-pack', entries(['http.receivepack', null]), {}), true);
    assert.equal(serviceEnabled('git-receive-pack', entries(['receive.maxinputsize', '10']), {}), false);
    const both = entries(['http.receivepack', 'true'], ['http.receivepack', '0']);
    assert.equal(serviceEnabled('git-receive-pack', both, { REMOTE_USER: 'a' }), false);
    // A repository's "false" wins over a user: nothing git-fcgi adds turns it back on.
    assert.equal(
      serviceEnabled('git-receive-pack', entries(['http.receivepack', 'false']), { REMOTE_USER: 'a' }),
      false,
    );
    // Values git reads in ways not modelled here are left to git http-backend.
    assert.equal(serviceEnabled('git-receive-pack', entries(['http.receivepack', '1k']), {}), undefined);
  });

  test('ref storage: files unless a version 1 repository says reftable; anything unknown is refused', () => {
    const storage = (text: string, version = '2.47.3') => refStorageOf(parseGitConfig(text), version);
    assert.equal(storage('[core]\n\trepositoryformatversion = 0\n\tbare = true\n'), 'files');
    assert.equal(
      storage('[core]\n\trepositoryformatversion = 1\n[extensions]\n\trefStorage = reftable\n'),
      'reftable',
    );
    assert.equal(
      storage('[core]\n\trepositoryformatversion = 1\n[extensions]\n\tobjectFormat = sha256\n'),
      'files',
    );
    assert.equal(
      storage('[core]\n\trepositoryformatversion = 1\n[extensions]\n\trefStorage = files\n'),
      'files',
    );
    for (const refused of [
      '[core]\n\trepositoryformatversion = 1\n[extensions]\n\trefStorage = reftable\n',
    ]) {
      assert.equal(typeof storage(refused, '2.43.7'), 'object', 'reftable needs git 2.45');
    }
    for (const refused of [
      '[core]\n\trepositoryformatversion = 2\n',
      '[core]\n\trepositoryformatversion = 1\n[extensions]\n\tworktreeConfig = true\n',
      '[core]\n\trepositoryformatversion = 1\n[extensions]\n\tsomethingNew = 1\n',
      '[core]\n\trepositoryformatversion = 0\n[extensions]\n\trefStorage = reftable\n',
      '[core]\n\trepositoryformatversion = 1\n[extensions]\n\trefStorage = other\n',
      '[core]\n\trepositoryformatversion = x\n',
    ]) {
      assert.equal(typeof storage(refused), 'object', refused);
    }
  });
});
