import { GitFcgiError } from '../errors.js';

/** Largest length a 4-byte FastCGI name/value length can express. */
const MAX_LENGTH = 0x7fffffff;

/**
 * Decodes a complete FCGI_PARAMS stream (or a GET_VALUES body). Names and values are UTF-8;
 * invalid sequences become U+FFFD rather than failing the request. A later duplicate name wins.
 */
export function decodeParams(buf: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  const end = buf.length;
  let pos = 0;
  const readLength = (): number => {
    if (pos >= end) throw truncated(pos, end);
    const first = buf.readUInt8(pos);
    if (first < 0x80) {
      pos += 1;
      return first;
    }
    if (end - pos < 4) throw truncated(pos, end);
    const length = buf.readUInt32BE(pos) & MAX_LENGTH;
    pos += 4;
    return length;
  };
  while (pos < end) {
    const start = pos;
    const nameLength = readLength();
    const valueLength = readLength();
    if (nameLength + valueLength > end - pos) {
      throw new GitFcgiError(
        'ERR_FCGI_PARAMS',
        `name-value pair at offset ${start} claims ${nameLength}+${valueLength} bytes, ${end - pos} left`,
      );
    }
    const name = buf.toString('utf8', pos, pos + nameLength);
    pos += nameLength;
    params.set(name, buf.toString('utf8', pos, pos + valueLength));
    pos += valueLength;
  }
  return params;
}

function truncated(pos: number, end: number): GitFcgiError {
  return new GitFcgiError('ERR_FCGI_PARAMS', `truncated name-value length at offset ${pos} of ${end}`);
}

/** Encodes name-value pairs (UTF-8) with 1-byte lengths below 128 and 4-byte lengths above. */
export function encodeParams(pairs: Iterable<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  for (const [name, value] of pairs) {
    const nameBytes = Buffer.from(name, 'utf8');
    const valueBytes = Buffer.from(value, 'utf8');
    const lengths = Buffer.allocUnsafe(lengthSize(nameBytes.length) + lengthSize(valueBytes.length));
    const at = writeLength(lengths, 0, nameBytes.length);
    writeLength(lengths, at, valueBytes.length);
    parts.push(lengths, nameBytes, valueBytes);
    total += lengths.length + nameBytes.length + valueBytes.length;
  }
  return Buffer.concat(parts, total);
}

function lengthSize(length: number): number {
  if (length > MAX_LENGTH) throw new RangeError(`name-value length ${length} exceeds ${MAX_LENGTH}`);
  return length < 0x80 ? 1 : 4;
}

function writeLength(buf: Buffer, at: number, length: number): number {
  if (length < 0x80) return buf.writeUInt8(length, at);
  return buf.writeUInt32BE((length | 0x80000000) >>> 0, at);
}
