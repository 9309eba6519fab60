import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { ProtocolStatus, RecordType } from '../../../src/fastcgi/constants.js';
import { decodeParams } from '../../../src/fastcgi/name-value.js';
import { RecordParser } from '../../../src/fastcgi/record-parser.js';
import {
  endRequestRecord,
  getValuesResult,
  recordHeader,
  unknownTypeRecord,
  writeStreamRecords,
} from '../../../src/fastcgi/record-writer.js';

/** A Writable that keeps every chunk as written (no copy) and reports each writev batch. */
class Capture extends Writable {
  readonly chunks: Buffer[] = [];
  readonly batches: number[] = [];
  constructor(highWaterMark: number) {
    super({ highWaterMark });
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: () => void): void {
    this.batches.push(chunks.length);
    for (const { chunk } of chunks) this.chunks.push(chunk);
    cb();
  }
  override _write(chunk: Buffer, _encoding: string, cb: () => void): void {
    this.batches.push(1);
    this.chunks.push(chunk);
    cb();
  }
}

describe('record writer', () => {
  test('recordHeader encodes version, type, id, lengths', () => {
    assert.deepEqual(
      recordHeader(RecordType.STDOUT, 0x1234, 0xfffe, 7),
      Buffer.from([1, 6, 0x12, 0x34, 0xff, 0xfe, 7, 0]),
    );
    assert.throws(() => recordHeader(RecordType.STDOUT, 1, 65536), RangeError);
    assert.throws(() => recordHeader(RecordType.STDOUT, 65536, 0), RangeError);
    assert.throws(() => recordHeader(RecordType.STDOUT, 1, 0, 256), RangeError);
  });

  test('END_REQUEST, UNKNOWN_TYPE and GET_VALUES_RESULT records', () => {
    assert.deepEqual(
      endRequestRecord(5, 0x01020304, ProtocolStatus.UNKNOWN_ROLE),
      Buffer.from([1, 3, 0, 5, 0, 8, 0, 0, 1, 2, 3, 4, 3, 0, 0, 0]),
    );
    assert.deepEqual(unknownTypeRecord(99), Buffer.from([1, 11, 0, 0, 0, 8, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0]));
    const result = getValuesResult([['FCGI_MPXS_CONNS', '0']]);
    assert.deepEqual(result.subarray(0, 4), Buffer.from([1, 10, 0, 0]));
    assert.equal(result.readUInt16BE(4), result.length - 8);
    assert.deepEqual(decodeParams(result.subarray(8)), new Map([['FCGI_MPXS_CONNS', '0']]));
  });

  test('writeStreamRecords splits at 65535 bytes without copying, in one corked batch', async () => {
    const payload = Buffer.alloc(65535 * 2 + 10, 7);
    const out = new Capture(1024 * 1024);
    assert.equal(writeStreamRecords(out, RecordType.STDOUT, 9, payload), true);
    await new Promise<void>((resolve) => out.end(resolve));
    assert.deepEqual(out.batches, [6]);
    const slices = out.chunks.filter((_, i) => i % 2 === 1);
    assert.deepEqual(
      slices.map((s) => [s.length, s.buffer === payload.buffer]),
      [
        [65535, true],
        [65535, true],
        [10, true],
      ],
    );
    const records: Array<[number, number, number]> = [];
    new RecordParser((type, id, content) => records.push([type, id, content.length])).push(
      Buffer.concat(out.chunks),
    );
    assert.deepEqual(records, [
      [6, 9, 65535],
      [6, 9, 65535],
      [6, 9, 10],
    ]);
  });

  test('writeStreamRecords writes nothing for an empty payload (that would end the stream)', () => {
    const out = new Capture(16);
    assert.equal(writeStreamRecords(out, RecordType.STDERR, 1, Buffer.alloc(0)), true);
    assert.equal(out.chunks.length, 0);
  });

  test('writeStreamRecords returns false when the stream is over its high-water mark', () => {
    const out = new Capture(16);
    assert.equal(writeStreamRecords(out, RecordType.STDOUT, 1, Buffer.alloc(100)), false);
  });
});
