import type { Writable } from 'node:stream';
import {
  FCGI_HEADER_LEN,
  FCGI_MAX_CONTENT_LEN,
  FCGI_NULL_REQUEST_ID,
  FCGI_VERSION_1,
  RecordType,
} from './constants.js';
import { encodeParams } from './name-value.js';

export function recordHeader(
  type: number,
  requestId: number,
  contentLength: number,
  paddingLength = 0,
): Buffer {
  checkRange('requestId', requestId, 0xffff);
  checkRange('contentLength', contentLength, FCGI_MAX_CONTENT_LEN);
  checkRange('paddingLength', paddingLength, 0xff);
  const header = Buffer.allocUnsafe(FCGI_HEADER_LEN);
  header.writeUInt8(FCGI_VERSION_1, 0);
  header.writeUInt8(type, 1);
  header.writeUInt16BE(requestId, 2);
  header.writeUInt16BE(contentLength, 4);
  header.writeUInt8(paddingLength, 6);
  header.writeUInt8(0, 7);
  return header;
}

/** A whole record (header, content, zeroed padding) in one buffer: for small records and tests. */
export function encodeRecord(type: number, requestId: number, content: Buffer, paddingLength = 0): Buffer {
  const header = recordHeader(type, requestId, content.length, paddingLength);
  return Buffer.concat([header, content, Buffer.alloc(paddingLength)]);
}

export function endRequestRecord(requestId: number, appStatus: number, protocolStatus: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(appStatus >>> 0, 0);
  body.writeUInt8(protocolStatus, 4);
  return encodeRecord(RecordType.END_REQUEST, requestId, body);
}

export function unknownTypeRecord(type: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt8(type, 0);
  return encodeRecord(RecordType.UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, body);
}

export function getValuesResult(values: Iterable<readonly [string, string]>): Buffer {
  return encodeRecord(RecordType.GET_VALUES_RESULT, FCGI_NULL_REQUEST_ID, encodeParams(values));
}

/**
 * Writes `payload` as STDOUT/STDERR records of at most 65535 bytes without copying it: each
 * header and a view of the payload are written separately, corked so they leave in one writev.
 * An empty payload writes nothing (an empty record would end the stream). Returns the last
 * `write()` result, i.e. false when the caller should wait for 'drain'. `flushed` is called
 * once the last record has been handed to the kernel (or the write failed).
 */
export function writeStreamRecords(
  stream: Writable,
  type: typeof RecordType.STDOUT | typeof RecordType.STDERR,
  requestId: number,
  payload: Buffer,
  flushed?: () => void,
): boolean {
  if (payload.length === 0) {
    if (flushed !== undefined) process.nextTick(flushed);
    return !stream.writableNeedDrain;
  }
  let ok = true;
  stream.cork();
  try {
    for (let at = 0; at < payload.length; at += FCGI_MAX_CONTENT_LEN) {
      const slice = payload.subarray(at, at + FCGI_MAX_CONTENT_LEN);
      const last = at + FCGI_MAX_CONTENT_LEN >= payload.length;
      stream.write(recordHeader(type, requestId, slice.length));
      // Writes complete in order: the last one's callback means the whole payload is out.
      ok = last && flushed !== undefined ? stream.write(slice, () => flushed()) : stream.write(slice);
    }
  } finally {
    stream.uncork();
  }
  return ok;
}

function checkRange(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`FastCGI ${name} ${value} out of range 0..${max}`);
  }
}
