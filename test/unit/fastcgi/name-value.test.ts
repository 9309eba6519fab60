import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isGitFcgiError } from '../../../src/errors.js';
import { decodeParams, encodeParams } from '../../../src/fastcgi/name-value.js';

const isParamsError = (err: unknown): boolean => isGitFcgiError(err) && err.code === 'ERR_FCGI_PARAMS';

describe('name-value pairs', () => {
  test('round-trips short, boundary-length, unicode, empty and 64 KiB names and values', () => {
    const pairs: Array<[string, string]> = [
      ['REQUEST_METHOD', 'POST'],
      ['EMPTY', ''],
      ['', 'empty name'],
      ['N'.repeat(127), 'v'.repeat(127)],
      ['N'.repeat(128), 'v'.repeat(128)],
      ['M'.repeat(300), 'x'],
      ['HTTP_X_UNICODE', 'h\u00e9llo \u{1f600} \u4e16\u754c'],
      ['BIG', 'b'.repeat(64 * 1024)],
      ['BIGGER', 'c'.repeat(1024 * 1024)],
    ];
    assert.deepEqual(decodeParams(encodeParams(pairs)), new Map(pairs));
  });

  test('uses 1-byte lengths below 128 bytes and 4-byte lengths (high bit set) from 128', () => {
    assert.deepEqual(encodeParams([['A', 'bc']]), Buffer.from([1, 2, 0x41, 0x62, 0x63]));
    const long = encodeParams([['A', 'x'.repeat(128)]]);
    assert.deepEqual(long.subarray(0, 6), Buffer.from([1, 0x80, 0, 0, 128, 0x41]));
    assert.equal(long.length, 6 + 128);
    // Lengths count UTF-8 bytes, not UTF-16 units.
    assert.deepEqual(encodeParams([['\u00e9', '']]).subarray(0, 2), Buffer.from([2, 0]));
  });

  test('accepts a 4-byte length for a short item', () => {
    const buf = Buffer.from([0x80, 0, 0, 1, 0x80, 0, 0, 2, 0x41, 0x62, 0x63]);
    assert.deepEqual(decodeParams(buf), new Map([['A', 'bc']]));
  });

  test('decodes an empty stream to an empty map', () => {
    assert.deepEqual(decodeParams(Buffer.alloc(0)), new Map());
  });

  test('a later duplicate name overrides an earlier one', () => {
    const params = decodeParams(
      encodeParams([
        ['A', '1'],
        ['B', '2'],
        ['A', '3'],
      ]),
    );
    assert.deepEqual(
      [...params],
      [
        ['A', '3'],
        ['B', '2'],
      ],
    );
  });

  test('invalid UTF-8 becomes U+FFFD', () => {
    const buf = Buffer.from([2, 3, 0xff, 0x41, 0x62, 0xc3, 0x28]);
    assert.deepEqual(decodeParams(buf), new Map([['\ufffdA', 'b\ufffd(']]));
  });

  test('a stream split into pieces decodes once reassembled', () => {
    const pairs: Array<[string, string]> = [
      ['A'.repeat(200), 'B'.repeat(70000)],
      ['C', 'D'],
    ];
    const whole = encodeParams(pairs);
    for (const at of [1, 2, 4, 5, 204, 70000]) {
      assert.deepEqual(
        decodeParams(Buffer.concat([whole.subarray(0, at), whole.subarray(at)])),
        new Map(pairs),
      );
    }
  });

  const truncated: Array<[string, number[]]> = [
    ['missing value length', [1]],
    ['truncated 4-byte name length', [0x80, 0, 0]],
    ['truncated 4-byte value length', [1, 0x80, 0, 0]],
    ['name longer than the stream', [5, 0, 0x41]],
    ['value longer than the stream', [1, 3, 0x41, 0x42]],
    ['impossible 4-byte length', [0xff, 0xff, 0xff, 0xff, 0, 0x41]],
    ['good pair, then a truncated one', [1, 1, 0x41, 0x42, 2]],
  ];
  for (const [name, input] of truncated) {
    test(`${name} -> ERR_FCGI_PARAMS`, () => {
      assert.throws(() => decodeParams(Buffer.from(input)), isParamsError);
    });
  }

  test('every proper prefix of a valid stream ending inside a pair is rejected', () => {
    const whole = encodeParams([
      ['NAME', 'v'.repeat(200)],
      ['X', 'y'],
    ]);
    const pairEnds = new Set([0, 1 + 4 + 4 + 200, whole.length]);
    for (let at = 1; at < whole.length; at++) {
      if (pairEnds.has(at)) continue;
      assert.throws(() => decodeParams(whole.subarray(0, at)), isParamsError, `prefix of ${at}`);
    }
  });
});
