import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isGitFcgiError, type ErrorCode } from '../../../src/errors.js';
import { RecordType } from '../../../src/fastcgi/constants.js';
import { RecordParser } from '../../../src/fastcgi/record-parser.js';
import { encodeRecord, recordHeader } from '../../../src/fastcgi/record-writer.js';

interface Parsed {
  type: number;
  requestId: number;
  content: Buffer;
}

/** Whole records: the pieces of a STDIN or DATA record joined up to the one marked last. */
function collect(): { parser: RecordParser; records: Parsed[] } {
  const records: Parsed[] = [];
  let pieces: Buffer[] = [];
  const parser = new RecordParser((type, requestId, content, last) => {
    pieces.push(Buffer.from(content));
    if (!last) return;
    records.push({ type, requestId, content: Buffer.concat(pieces) });
    pieces = [];
  });
  return { parser, records };
}

function parseChunks(chunks: Buffer[]): Parsed[] {
  const { parser, records } = collect();
  for (const chunk of chunks) parser.push(chunk);
  return records;
}

function bytes(length: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = (i * 31 + seed) & 0xff;
  return buf;
}

const eight = Buffer.from([0, 1, 1, 0, 0, 0, 0, 0]);

/** Every record type, with and without padding, empty and not. */
const STREAM = Buffer.concat([
  encodeRecord(RecordType.GET_VALUES, 0, bytes(20, 1), 4),
  encodeRecord(RecordType.BEGIN_REQUEST, 1, eight),
  encodeRecord(RecordType.PARAMS, 1, bytes(300, 2), 4),
  encodeRecord(RecordType.PARAMS, 1, bytes(1, 3), 7),
  encodeRecord(RecordType.PARAMS, 1, Buffer.alloc(0)),
  encodeRecord(RecordType.STDIN, 1, bytes(1000, 4), 255),
  encodeRecord(RecordType.DATA, 1, bytes(8, 5)),
  encodeRecord(42, 9, bytes(3, 6), 5),
  encodeRecord(RecordType.STDIN, 1, Buffer.alloc(0), 3),
  encodeRecord(RecordType.ABORT_REQUEST, 1, Buffer.alloc(0)),
  encodeRecord(RecordType.END_REQUEST, 1, bytes(8, 7)),
  encodeRecord(RecordType.UNKNOWN_TYPE, 0, bytes(8, 8)),
  encodeRecord(RecordType.STDOUT, 65535, bytes(17, 9), 1),
]);

describe('RecordParser', () => {
  const expected = parseChunks([STREAM]);

  test('parses every record type in one chunk', () => {
    assert.deepEqual(
      expected.map((r) => [r.type, r.requestId, r.content.length]),
      [
        [RecordType.GET_VALUES, 0, 20],
        [RecordType.BEGIN_REQUEST, 1, 8],
        [RecordType.PARAMS, 1, 300],
        [RecordType.PARAMS, 1, 1],
        [RecordType.PARAMS, 1, 0],
        [RecordType.STDIN, 1, 1000],
        [RecordType.DATA, 1, 8],
        [42, 9, 3],
        [RecordType.STDIN, 1, 0],
        [RecordType.ABORT_REQUEST, 1, 0],
        [RecordType.END_REQUEST, 1, 8],
        [RecordType.UNKNOWN_TYPE, 0, 8],
        [RecordType.STDOUT, 65535, 17],
      ],
    );
    assert.deepEqual(expected[5]?.content, bytes(1000, 4));
  });

  test('gives identical records when the stream is split at every byte offset', () => {
    for (let at = 0; at <= STREAM.length; at++) {
      assert.deepEqual(
        parseChunks([STREAM.subarray(0, at), STREAM.subarray(at)]),
        expected,
        `split at ${at}`,
      );
    }
  });

  test('gives identical records when split at every pair of offsets near record edges', () => {
    for (let a = 0; a <= 64; a++) {
      for (let b = a; b <= STREAM.length; b += 7) {
        const chunks = [STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)];
        assert.deepEqual(parseChunks(chunks), expected, `split at ${a}, ${b}`);
      }
    }
  });

  test('gives identical records in 1-byte chunks', () => {
    const chunks = Array.from({ length: STREAM.length }, (_, i) => STREAM.subarray(i, i + 1));
    assert.deepEqual(parseChunks(chunks), expected);
  });

  test('handles the largest record (65535 bytes, 255 padding) whole, split and byte by byte', () => {
    const content = bytes(65535, 11);
    const stream = Buffer.concat([
      encodeRecord(RecordType.STDIN, 3, content, 255),
      encodeRecord(RecordType.STDIN, 3, Buffer.alloc(0)),
    ]);
    const want = [
      { type: RecordType.STDIN, requestId: 3, content },
      { type: RecordType.STDIN, requestId: 3, content: Buffer.alloc(0) },
    ];
    assert.deepEqual(parseChunks([stream]), want);
    for (const at of [1, 7, 8, 9, 4096, 65542, 65543, 65544, 65797, 65798, 65799]) {
      assert.deepEqual(parseChunks([stream.subarray(0, at), stream.subarray(at)]), want, `split at ${at}`);
    }
    const { parser, records } = collect();
    for (let i = 0; i < stream.length; i++) parser.push(stream.subarray(i, i + 1));
    assert.deepEqual(records, want);
  });

  test('delivers a zero-copy view when the content lies inside one chunk', () => {
    const chunk = Buffer.concat([
      encodeRecord(RecordType.STDIN, 1, bytes(100, 1), 4),
      encodeRecord(RecordType.STDIN, 1, bytes(50, 2)),
    ]);
    const views: Buffer[] = [];
    new RecordParser((_type, _id, content) => views.push(content)).push(chunk);
    assert.equal(views.length, 2);
    assert.equal(views[0]?.buffer, chunk.buffer);
    assert.equal(views[0]?.byteOffset, chunk.byteOffset + 8);
    assert.equal(views[1]?.buffer, chunk.buffer);
    assert.equal(views[1]?.byteOffset, chunk.byteOffset + 8 + 100 + 4 + 8);
  });

  test('copies content that spans chunks, whole', () => {
    const record = encodeRecord(RecordType.PARAMS, 1, bytes(100, 1));
    const views: Buffer[] = [];
    const parser = new RecordParser((_type, _id, content) => views.push(content));
    parser.push(record.subarray(0, 50));
    parser.push(record.subarray(50));
    record.fill(0);
    assert.equal(views.length, 1);
    assert.deepEqual(views[0], bytes(100, 1));
  });

  test('hands STDIN content that spans chunks on in pieces, each a view of its chunk, the last marked', () => {
    const record = encodeRecord(RecordType.STDIN, 1, bytes(100, 1), 3);
    const chunks = [
      record.subarray(0, 30),
      record.subarray(30, 31),
      record.subarray(31, 100),
      record.subarray(100),
    ];
    const pieces: Array<{ view: Buffer; last: boolean }> = [];
    const parser = new RecordParser((_type, _id, content, last) => pieces.push({ view: content, last }));
    for (const chunk of chunks) parser.push(chunk);
    assert.deepEqual(
      pieces.map((p) => [p.view.length, p.last]),
      [
        [22, false],
        [1, false],
        [69, false],
        [8, true],
      ],
    );
    pieces.forEach((p, i) => assert.equal(p.view.buffer, chunks[i]?.buffer, `piece ${i} is a view`));
    assert.deepEqual(Buffer.concat(pieces.map((p) => p.view)), bytes(100, 1));
  });

  test('a header split across chunks still yields a view of the chunk holding the content', () => {
    const record = encodeRecord(RecordType.STDIN, 1, bytes(100, 1));
    const rest = record.subarray(5);
    const views: Buffer[] = [];
    const parser = new RecordParser((_type, _id, content) => views.push(content));
    parser.push(record.subarray(0, 5));
    parser.push(rest);
    assert.equal(views[0]?.buffer, rest.buffer);
  });
});

describe('RecordParser errors', () => {
  const cases: Array<[string, Buffer, ErrorCode]> = [
    ['version 0', Buffer.from([0, 1, 0, 1, 0, 8, 0, 0]), 'ERR_FCGI_VERSION'],
    ['version 2', Buffer.from([2, 5, 0, 1, 0, 0, 0, 0]), 'ERR_FCGI_VERSION'],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'ERR_FCGI_VERSION'],
    ['BEGIN_REQUEST of 7 bytes', recordHeader(RecordType.BEGIN_REQUEST, 1, 7), 'ERR_FCGI_RECORD'],
    ['BEGIN_REQUEST of 0 bytes', recordHeader(RecordType.BEGIN_REQUEST, 1, 0), 'ERR_FCGI_RECORD'],
    ['ABORT_REQUEST of 1 byte', recordHeader(RecordType.ABORT_REQUEST, 1, 1), 'ERR_FCGI_RECORD'],
    ['END_REQUEST of 9 bytes', recordHeader(RecordType.END_REQUEST, 1, 9), 'ERR_FCGI_RECORD'],
    ['UNKNOWN_TYPE of 0 bytes', recordHeader(RecordType.UNKNOWN_TYPE, 0, 0), 'ERR_FCGI_RECORD'],
    ['BEGIN_REQUEST with id 0', recordHeader(RecordType.BEGIN_REQUEST, 0, 8), 'ERR_FCGI_RECORD'],
    ['ABORT_REQUEST with id 0', recordHeader(RecordType.ABORT_REQUEST, 0, 0), 'ERR_FCGI_RECORD'],
    ['PARAMS with id 0', recordHeader(RecordType.PARAMS, 0, 0), 'ERR_FCGI_RECORD'],
    ['STDIN with id 0', recordHeader(RecordType.STDIN, 0, 10), 'ERR_FCGI_RECORD'],
    ['STDOUT with id 0', recordHeader(RecordType.STDOUT, 0, 10), 'ERR_FCGI_RECORD'],
    ['DATA with id 0', recordHeader(RecordType.DATA, 0, 10), 'ERR_FCGI_RECORD'],
    ['GET_VALUES with id 1', recordHeader(RecordType.GET_VALUES, 1, 0), 'ERR_FCGI_RECORD'],
    ['GET_VALUES_RESULT with id 2', recordHeader(RecordType.GET_VALUES_RESULT, 2, 0), 'ERR_FCGI_RECORD'],
    ['UNKNOWN_TYPE with id 3', recordHeader(RecordType.UNKNOWN_TYPE, 3, 8), 'ERR_FCGI_RECORD'],
  ];

  for (const [name, input, code] of cases) {
    test(`${name} -> ${code}, whole and byte by byte`, () => {
      const isCode = (err: unknown): boolean => isGitFcgiError(err) && err.code === code;
      assert.throws(() => new RecordParser(() => undefined).push(input), isCode);
      const parser = new RecordParser(() => undefined);
      assert.throws(() => {
        for (let i = 0; i < input.length; i++) parser.push(input.subarray(i, i + 1));
      }, isCode);
    });
  }

  test('records before the bad one are delivered; then the parser is dead and throws the same error', () => {
    const { parser, records } = collect();
    const good = encodeRecord(RecordType.BEGIN_REQUEST, 1, eight);
    let first: unknown;
    try {
      parser.push(Buffer.concat([good, Buffer.from([9, 9, 9, 9, 9, 9, 9, 9])]));
    } catch (err) {
      first = err;
    }
    assert.ok(isGitFcgiError(first) && first.code === 'ERR_FCGI_VERSION');
    assert.equal(records.length, 1);
    assert.throws(
      () => parser.push(good),
      (err: unknown) => err === first,
    );
    assert.equal(records.length, 1);
  });

  test('accepts unknown record types with any request id', () => {
    const records = parseChunks([encodeRecord(0, 0, bytes(5, 1)), encodeRecord(255, 7, bytes(300, 1))]);
    assert.deepEqual(
      records.map((r) => [r.type, r.requestId, r.content.length]),
      [
        [0, 0, 5],
        [255, 7, 300],
      ],
    );
  });

  test('an exception from the callback propagates and kills the parser', () => {
    const boom = new Error('boom');
    const parser = new RecordParser(() => {
      throw boom;
    });
    assert.throws(
      () => parser.push(encodeRecord(RecordType.BEGIN_REQUEST, 1, eight)),
      (err: unknown) => err === boom,
    );
    assert.throws(
      () => parser.push(Buffer.alloc(0)),
      (err: unknown) => err === boom,
    );
  });
});
