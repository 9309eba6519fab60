import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HookMessageParser, type HookMessage } from '../../../src/pack-cache/hook-message.js';
import { isGitFcgiError } from '../../../src/errors.js';

const LIMITS = { maxHeaderBytes: 4096, maxStdinBytes: 64 };

/** A message as git-fcgi-pack-hook writes it. */
function encode(argv: string[], env: string[], stdin: Buffer, token = 'tok', cwd = '/srv/git/r.git'): Buffer {
  const header = Buffer.from(
    [token, cwd, String(argv.length), String(stdin.length), ...argv, ...env].map((s) => `${s}\0`).join(''),
  );
  const length = Buffer.alloc(4);
  length.writeUInt32BE(header.length);
  return Buffer.concat([length, header, stdin]);
}

const argv = ['git', '--shallow-file', '', 'pack-objects', '--revs', '--stdout'];
const env = ['PATH=/usr/bin', 'GIT_PROTOCOL=version=2', 'EMPTY='];
const stdin = Buffer.from('0123456789abcdef0123456789abcdef01234567\n--not\n\n');

function check(message: HookMessage | null): void {
  assert.ok(message);
  assert.equal(message.token, 'tok');
  assert.equal(message.cwd, '/srv/git/r.git');
  assert.deepEqual(message.argv, argv);
  assert.deepEqual(message.env, { PATH: '/usr/bin', GIT_PROTOCOL: 'version=2', EMPTY: '' });
  assert.deepEqual(message.stdin, stdin);
}

const protocolError = (err: unknown): boolean => isGitFcgiError(err) && err.code === 'ERR_PACK_HOOK_PROTOCOL';

describe('hook message parser', () => {
  test('whole, and split at every byte into two and into single bytes', () => {
    const bytes = encode(argv, env, stdin);
    check(new HookMessageParser(LIMITS).push(bytes));
    for (let cut = 0; cut <= bytes.length; cut++) {
      const parser = new HookMessageParser(LIMITS);
      const first = parser.push(bytes.subarray(0, cut));
      const second = parser.push(bytes.subarray(cut));
      check(first ?? second);
      assert.ok(parser.complete);
    }
    const parser = new HookMessageParser(LIMITS);
    let result: HookMessage | null = null;
    for (const byte of bytes) result = parser.push(Buffer.from([byte])) ?? result;
    check(result);
  });

  test('an empty stdin completes with the header', () => {
    const message = new HookMessageParser(LIMITS).push(encode(argv, env, Buffer.alloc(0)));
    assert.equal(message?.stdin?.length, 0);
  });

  test('a stdin over the cap is read to its end and dropped', () => {
    const big = Buffer.alloc(LIMITS.maxStdinBytes + 1, 'a');
    const parser = new HookMessageParser(LIMITS);
    const bytes = encode(argv, env, big);
    let result: HookMessage | null = null;
    for (let at = 0; at < bytes.length; at += 7) result = parser.push(bytes.subarray(at, at + 7)) ?? result;
    assert.equal(result?.stdin, null);
    assert.equal(result?.stdinBytes, big.length);
  });

  test('coded errors: oversized or empty header, malformed fields, trailing bytes', () => {
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(LIMITS.maxHeaderBytes + 1);
    assert.throws(() => new HookMessageParser(LIMITS).push(huge), protocolError);
    assert.throws(() => new HookMessageParser(LIMITS).push(Buffer.alloc(4)), protocolError);
    const malformed = (header: string): Buffer => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(Buffer.byteLength(header));
      return Buffer.concat([length, Buffer.from(header)]);
    };
    for (const header of [
      'tok\0/r\0x\x000\0git\0',
      'tok\0/r\0',
      'tok\0/r\x002\x000\0git\0',
      'tok\0/r\x001\x000\0git\0NOEQUALS\0',
      'tok\0/r\x001\x000\0git',
    ]) {
      assert.throws(
        () => new HookMessageParser(LIMITS).push(malformed(header)),
        protocolError,
        JSON.stringify(header),
      );
    }
    const parser = new HookMessageParser(LIMITS);
    assert.throws(
      () => parser.push(Buffer.concat([encode(argv, env, stdin), Buffer.from('x')])),
      protocolError,
    );
  });
});
