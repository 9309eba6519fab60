import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  configMentions,
  headFor,
  protocolVersion,
  serviceCertainlyEnabled,
  serviceLine,
} from '../../../src/request/advertise-refs.js';

describe('advertise-refs', () => {
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

  test('upload-pack is on unless the environment turns it off', () => {
    assert.equal(serviceCertainlyEnabled('git-upload-pack', {}), true);
    const off = { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.uploadPack', GIT_CONFIG_VALUE_0: 'no' };
    assert.equal(serviceCertainlyEnabled('git-upload-pack', off), false);
  });

  test('receive-pack: REMOTE_USER by default, the last http.receivepack entry when given', () => {
    assert.equal(serviceCertainlyEnabled('git-receive-pack', {}), false);
    assert.equal(serviceCertainlyEnabled('git-receive-pack', { REMOTE_USER: '' }), false);
    assert.equal(serviceCertainlyEnabled('git-receive-pack', { REMOTE_USER: 'alice' }), true);
    const config = (...entries: Array<[string, string]>): Record<string, string> => {
      const env: Record<string, string> = { GIT_CONFIG_COUNT: String(entries.length) };
      entries.forEach(([key, value], i) => {
        env[`GIT_CONFIG_KEY_${i}`] = key;
        env[`GIT_CONFIG_VALUE_${i}`] = value;
      });
      return env;
    };
    assert.equal(serviceCertainlyEnabled('git-receive-pack', config(['http.receivepack', 'true'])), true);
    assert.equal(serviceCertainlyEnabled('git-receive-pack', config(['receive.maxInputSize', '10'])), false);
    const both = config(['http.receivepack', 'true'], ['http.receivepack', '0']);
    assert.equal(serviceCertainlyEnabled('git-receive-pack', { ...both, REMOTE_USER: 'a' }), false);
    assert.equal(serviceCertainlyEnabled('git-receive-pack', config(['HTTP.ReceivePack', 'on'])), true);
    // Values git reads in ways not modelled here, and includes, are left to git http-backend.
    assert.equal(serviceCertainlyEnabled('git-receive-pack', config(['http.receivepack', '1k'])), false);
    const include = config(['include.path', '/x'], ['http.receivepack', 'true']);
    assert.equal(serviceCertainlyEnabled('git-receive-pack', include), false);
  });

  test('config mentions: any variable named uploadpack/receivepack, and includes', () => {
    const none = { include: false, uploadpack: false, receivepack: false };
    const cases: Array<[string, Partial<typeof none>]> = [
      ['', {}],
      ['[core]\n\tbare = true\n', {}],
      ['[uploadpack]\n\tallowFilter = true\n', {}],
      ['[uploadpack "x"]\n\thideRefs = refs/x\n', {}],
      ['[receive]\n\tdenyNonFastForwards = true\n', {}],
      ['[credential "https://example.com"]\n\thelper = store\n', {}],
      ['[http]\n\treceivepack = true\n', { receivepack: true }],
      ['[http]\n\tuploadpack=false\n', { uploadpack: true }],
      ['[http]\r\n\tUploadPack\r\n', { uploadpack: true }],
      ['[http] receivepack = true\n', { receivepack: true }],
      ['[HTTP]\n  ReceivePack ; comment\n', { receivepack: true }],
      ['[http]\n\treceivepack # comment\n', { receivepack: true }],
      ['[include]\n\tpath = other\n', { include: true }],
      ['[includeIf "gitdir:/x/"]\n\tpath = other\n', { include: true }],
      ['[core]\n\tdescription = uploadpack\n', { uploadpack: true }],
    ];
    for (const [text, expected] of cases) {
      assert.deepEqual(configMentions(text), { ...none, ...expected }, JSON.stringify(text));
    }
  });
});
