import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GitFcgiError } from '../../../src/errors.js';
import { checkRpcContentType } from '../../../src/request/content-type.js';
import { parseGitTarget } from '../../../src/request/repo-path.js';

const rpc = (service: string) => parseGitTarget(`/r.git/${service}`, '', 'POST');

test('a smart RPC needs exactly its own request content type, as git http-backend does', () => {
  for (const service of ['git-upload-pack', 'git-receive-pack', 'git-upload-archive']) {
    checkRpcContentType(rpc(service), `application/x-${service}-request`);
    for (const bad of [
      undefined,
      '',
      'text/plain',
      `application/x-${service}-request; charset=utf-8`,
      `Application/X-${service}-Request`,
      `application/x-${service === 'git-upload-pack' ? 'git-receive-pack' : 'git-upload-pack'}-request`,
    ]) {
      assert.throws(
        () => checkRpcContentType(rpc(service), bad),
        (err: unknown) =>
          err instanceof GitFcgiError && err.code === 'ERR_CONTENT_TYPE' && err.status === 415,
        `${service} with ${String(bad)}`,
      );
    }
  }
});

test('requests other than smart RPCs are not checked', () => {
  checkRpcContentType(parseGitTarget('/r.git/info/refs', 'service=git-upload-pack', 'GET'), 'text/html');
  checkRpcContentType(parseGitTarget('/r.git/HEAD', '', 'GET'), undefined);
});
