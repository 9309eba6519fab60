import { createHash } from 'node:crypto';

/**
 * A cache key: sha256 of `fields`, each prefixed by its length (u64), so that no two lists of
 * fields give one key by moving bytes from one field to the next.
 */
export function keyHash(fields: Iterable<string | Buffer>): string {
  const hash = createHash('sha256');
  const length = Buffer.alloc(8);
  for (const value of fields) {
    length.writeBigUInt64BE(BigInt(Buffer.byteLength(value)));
    hash.update(length);
    hash.update(value);
  }
  return hash.digest('hex');
}
