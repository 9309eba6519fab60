import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isGitFcgiError } from '../../src/errors.js';
import { RecordType } from '../../src/fastcgi/constants.js';
import { encodeParams } from '../../src/fastcgi/name-value.js';
import { RecordParser } from '../../src/fastcgi/record-parser.js';

/**
 * Deterministic FastCGI input generation for the fuzzers: a seeded PRNG, the seed corpus of
 * streams captured from real nginx, and mutators that know where records start. No I/O but
 * reading the corpus, so the unit fuzzer, the e2e fuzzer and scripts/fuzz.mjs share it.
 */

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new RangeError('pick() from an empty list');
    return item;
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

// Compiled to dist-test/test/helpers/; the fixtures stay in the source tree.
export const corpusDir = fileURLToPath(new URL('../../../test/fixtures/fcgi-corpus/', import.meta.url));

export interface Seed {
  readonly name: string;
  readonly bytes: Buffer;
}

/** The captured nginx request streams (see scripts/capture-fcgi-corpus.mjs). */
export function loadCorpus(dir = corpusDir): Seed[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.bin'))
    .sort()
    .map((name) => ({ name, bytes: readFileSync(join(dir, name)) }));
}

/** Offsets where records start, as far as the stream frames (a mutated stream may stop framing). */
export function recordOffsets(stream: Buffer): number[] {
  const offsets: number[] = [];
  let at = 0;
  while (at + 8 <= stream.length) {
    offsets.push(at);
    at += 8 + stream.readUInt16BE(at + 4) + (stream[at + 6] ?? 0);
  }
  return offsets;
}

/** A record header with any field values at all, valid or not. */
export function rawRecord(
  fields: { version?: number; type: number; id: number; padding?: number; reserved?: number },
  content: Buffer,
  contentLength = content.length,
): Buffer {
  const header = Buffer.alloc(8);
  header[0] = fields.version ?? 1;
  header[1] = fields.type;
  header.writeUInt16BE(fields.id & 0xffff, 2);
  header.writeUInt16BE(contentLength & 0xffff, 4);
  header[6] = fields.padding ?? 0;
  header[7] = fields.reserved ?? 0;
  return Buffer.concat([header, content, Buffer.alloc(fields.padding ?? 0)]);
}

const HTTP_REQUEST = Buffer.from('GET /demo.git/info/refs HTTP/1.1\r\nHost: localhost\r\n\r\n');

type Mutator = (rng: Rng, input: Buffer) => Buffer;

function atRecord(rng: Rng, input: Buffer): number | undefined {
  const offsets = recordOffsets(input);
  return offsets.length === 0 ? undefined : rng.pick(offsets);
}

function withByte(input: Buffer, at: number, value: number): Buffer {
  const out = Buffer.from(input);
  if (at < out.length) out[at] = value;
  return out;
}

const MUTATORS: ReadonlyArray<readonly [name: string, fn: Mutator]> = [
  [
    'flip bits',
    (rng, input) => {
      const out = Buffer.from(input);
      for (let n = 1 + rng.int(4); n > 0 && out.length > 0; n--) {
        const at = rng.int(out.length);
        out[at] = (out[at] ?? 0) ^ (1 << rng.int(8));
      }
      return out;
    },
  ],
  ['random byte', (rng, input) => withByte(input, rng.int(input.length), rng.int(256))],
  [
    'bad version',
    (rng, input) => {
      const at = atRecord(rng, input);
      return at === undefined ? input : withByte(input, at, rng.pick([0, 2, 255]));
    },
  ],
  [
    'record type',
    (rng, input) => {
      const at = atRecord(rng, input);
      return at === undefined ? input : withByte(input, at + 1, rng.chance(0.5) ? rng.int(12) : rng.int(256));
    },
  ],
  [
    'request id',
    (rng, input) => {
      const at = atRecord(rng, input);
      if (at === undefined) return input;
      const out = Buffer.from(input);
      out.writeUInt16BE(rng.pick([0, 2, 0xffff, rng.int(0x10000)]), at + 2);
      return out;
    },
  ],
  [
    'content length',
    (rng, input) => {
      const at = atRecord(rng, input);
      if (at === undefined) return input;
      const out = Buffer.from(input);
      const old = out.readUInt16BE(at + 4);
      out.writeUInt16BE(
        rng.pick([0, 0xffff, (old + 1) & 0xffff, Math.max(0, old - 1), rng.int(0x10000)]),
        at + 4,
      );
      return out;
    },
  ],
  [
    'padding',
    (rng, input) => {
      const at = atRecord(rng, input);
      return at === undefined ? input : withByte(input, at + 6, rng.pick([0, 1, 7, 255, rng.int(256)]));
    },
  ],
  ['truncate', (rng, input) => input.subarray(0, rng.int(input.length + 1))],
  [
    'insert bytes',
    (rng, input) => {
      const at = rng.int(input.length + 1);
      return Buffer.concat([input.subarray(0, at), rng.bytes(1 + rng.int(32)), input.subarray(at)]);
    },
  ],
  [
    'duplicate record',
    (rng, input) => {
      const offsets = recordOffsets(input);
      const i = rng.int(offsets.length);
      const start = offsets[i];
      if (start === undefined) return input;
      const end = offsets[i + 1] ?? input.length;
      return Buffer.concat([input.subarray(0, end), input.subarray(start, end), input.subarray(end)]);
    },
  ],
  [
    'drop record',
    (rng, input) => {
      const offsets = recordOffsets(input);
      const i = rng.int(offsets.length);
      const start = offsets[i];
      if (start === undefined) return input;
      return Buffer.concat([input.subarray(0, start), input.subarray(offsets[i + 1] ?? input.length)]);
    },
  ],
  [
    'swap records',
    (rng, input) => {
      const offsets = recordOffsets(input);
      if (offsets.length < 2) return input;
      const i = rng.int(offsets.length - 1);
      const [a, b, c] = [offsets[i] ?? 0, offsets[i + 1] ?? 0, offsets[i + 2] ?? input.length];
      return Buffer.concat([
        input.subarray(0, a),
        input.subarray(b, c),
        input.subarray(a, b),
        input.subarray(c),
      ]);
    },
  ],
  [
    'splice http',
    (rng, input) => {
      const at = rng.chance(0.5) ? 0 : (atRecord(rng, input) ?? 0);
      return Buffer.concat([input.subarray(0, at), HTTP_REQUEST]);
    },
  ],
  ['random records', (rng) => randomRecords(rng)],
  ['huge params', (rng) => hugeParams(rng)],
];

/** Well-framed records of random types, ids and contents: exercises dispatch rather than framing. */
export function randomRecords(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  const id = rng.chance(0.8) ? 1 : rng.int(0x10000);
  for (let n = 1 + rng.int(8); n > 0; n--) {
    const type = rng.chance(0.8) ? 1 + rng.int(11) : rng.int(256);
    let content: Buffer;
    if (type === RecordType.BEGIN_REQUEST || type === RecordType.END_REQUEST) {
      content = Buffer.alloc(8);
      content.writeUInt16BE(rng.chance(0.8) ? 1 : rng.int(5), 0);
      content[2] = rng.int(2);
    } else if (type === RecordType.PARAMS || type === RecordType.GET_VALUES) {
      content = rng.chance(0.7)
        ? encodeParams([
            ['FCGI_MAX_CONNS', ''],
            ['REQUEST_METHOD', rng.pick(['GET', 'POST', 'PUT', ''])],
          ])
        : rng.bytes(rng.int(64));
    } else content = rng.chance(0.3) ? Buffer.alloc(0) : rng.bytes(rng.int(256));
    const recordId = type === RecordType.GET_VALUES || type === RecordType.UNKNOWN_TYPE ? 0 : id;
    parts.push(
      rawRecord({ type, id: rng.chance(0.9) ? recordId : rng.int(3), padding: rng.int(8) }, content),
    );
  }
  return Buffer.concat(parts);
}

/** A request whose params are huge, claim more than they hold, or come one byte a record. */
export function hugeParams(rng: Rng): Buffer {
  const begin = rawRecord({ type: RecordType.BEGIN_REQUEST, id: 1 }, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0]));
  let stream: Buffer;
  switch (rng.int(3)) {
    case 0: {
      // A 4-byte length claiming 2 GiB.
      stream = Buffer.concat([Buffer.from([0x8f, 0xff, 0xff, 0xff, 0x01]), Buffer.from('x')]);
      break;
    }
    case 1:
      stream = encodeParams([['HTTP_X_BIG', 'v'.repeat(rng.pick([70_000, 300_000]))]]);
      break;
    default:
      stream = encodeParams([
        ['REQUEST_METHOD', 'GET'],
        ['PATH_INFO', '/demo.git/info/refs'],
      ]);
  }
  const records: Buffer[] = [begin];
  // One byte a record for the small streams; big ones in full records (a million tiny records is slow to make).
  const size = stream.length < 1024 && rng.chance(0.5) ? 1 : rng.pick([4096, 0xffff]);
  for (let at = 0; at < stream.length; at += size) {
    records.push(rawRecord({ type: RecordType.PARAMS, id: 1 }, stream.subarray(at, at + size)));
  }
  if (rng.chance(0.7)) records.push(rawRecord({ type: RecordType.PARAMS, id: 1 }, Buffer.alloc(0)));
  return Buffer.concat(records);
}

export interface FuzzInput {
  /** How it was made, for the failure message: seed file and mutators. */
  readonly how: string;
  readonly bytes: Buffer;
}

/** The next input: a corpus stream with 1-3 mutations, or a generated one. */
export function nextInput(rng: Rng, corpus: readonly Seed[]): FuzzInput {
  const seed = rng.pick(corpus);
  let bytes = seed.bytes;
  const steps: string[] = [];
  for (let n = 1 + rng.int(3); n > 0; n--) {
    const [name, mutate] = rng.pick(MUTATORS);
    steps.push(name);
    bytes = mutate(rng, bytes);
  }
  return { how: `${seed.name}: ${steps.join(', ')}`, bytes };
}

/** Cuts `bytes` into 1-8 pieces at random points, as a socket might deliver them. */
export function splitRandomly(rng: Rng, bytes: Buffer): Buffer[] {
  const cuts = new Set<number>();
  for (let n = rng.int(8); n > 0; n--) cuts.add(rng.int(bytes.length + 1));
  const sorted = [...cuts].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const cut of sorted) {
    pieces.push(bytes.subarray(from, cut));
    from = cut;
  }
  pieces.push(bytes.subarray(from));
  return pieces.filter((p) => p.length > 0);
}

export interface ParseOutcome {
  readonly records: ReadonlyArray<readonly [type: number, id: number, length: number]>;
  /** The coded error that stopped the parser, or null when the whole input framed. */
  readonly error: string | null;
}

/**
 * Feeds `pieces` to a RecordParser. Anything but a GitFcgiError escaping it is a bug and is
 * rethrown, so the caller's test fails with it.
 */
export function parseAll(pieces: readonly Buffer[]): ParseOutcome {
  const records: Array<[number, number, number]> = [];
  let length = 0; // a STDIN or DATA record comes in pieces when it spans chunks
  const parser = new RecordParser((type, id, content, last) => {
    length += content.length;
    if (!last) return;
    records.push([type, id, length]);
    length = 0;
  });
  try {
    for (const piece of pieces) parser.push(piece);
    return { records, error: null };
  } catch (err) {
    if (!isGitFcgiError(err)) throw err;
    return { records, error: err.code };
  }
}
