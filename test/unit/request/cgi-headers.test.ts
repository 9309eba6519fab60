import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GitFcgiError } from '../../../src/errors.js';
import { CgiHeaderParser } from '../../../src/request/cgi-headers.js';

const NO_CACHE: Array<[string, string]> = [
  ['Expires', 'Fri, 01 Jan 1980 00:00:00 GMT'],
  ['Pragma', 'no-cache'],
  ['Cache-Control', 'no-cache, max-age=0, must-revalidate'],
];

interface Fixture {
  name: string;
  bytes: Buffer;
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
}

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1');
const base64 = (text: string): Buffer => Buffer.from(text, 'base64');

/** Captured from git 2.39.5 `git http-backend` (see the test names for the request). */
const FIXTURES: Fixture[] = [
  {
    name: 'GET info/refs?service=git-upload-pack',
    bytes: latin1(
      'Expires: Fri, 01 Jan 1980 00:00:00 GMT\r\nPragma: no-cache\r\n' +
        'Cache-Control: no-cache, max-age=0, must-revalidate\r\n' +
        'Content-Type: application/x-git-upload-pack-advertisement\r\n\r\n' +
        '001e# service=git-upload-pack\n000000fa4471d7431d25aebbb5c1d0a4ed049b161426879b refs/heads/main\x00' +
        'multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not deepen-relative' +
        ' no-progress include-tag multi_ack_detailed no-done object-format=sha1 agent=git/2.39.5\n0000',
    ),
    status: 200,
    headers: [...NO_CACHE, ['Content-Type', 'application/x-git-upload-pack-advertisement']],
    body: latin1(
      '001e# service=git-upload-pack\n000000fa4471d7431d25aebbb5c1d0a4ed049b161426879b refs/heads/main\x00' +
        'multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not deepen-relative' +
        ' no-progress include-tag multi_ack_detailed no-done object-format=sha1 agent=git/2.39.5\n0000',
    ),
  },
  {
    name: 'GET info/refs of a missing repository',
    bytes: latin1(
      'Status: 404 Not Found\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\nPragma: no-cache\r\n' +
        'Cache-Control: no-cache, max-age=0, must-revalidate\r\n\r\n',
    ),
    status: 404,
    headers: NO_CACHE,
    body: Buffer.alloc(0),
  },
  {
    name: 'POST git-upload-pack with Content-Type text/plain',
    bytes: latin1(
      'Status: 415 Unsupported Media Type\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\nPragma: no-cache\r\n' +
        'Cache-Control: no-cache, max-age=0, must-revalidate\r\n\r\n' +
        "Expected POST with Content-Type 'application/x-git-upload-pack-request', but received 'text/plain' instead.\n",
    ),
    status: 415,
    headers: NO_CACHE,
    body: latin1(
      "Expected POST with Content-Type 'application/x-git-upload-pack-request', but received 'text/plain' instead.\n",
    ),
  },
  {
    name: 'GET info/refs?service=git-receive-pack without REMOTE_USER (Status mid-block)',
    bytes: latin1(
      'Expires: Fri, 01 Jan 1980 00:00:00 GMT\r\nPragma: no-cache\r\n' +
        'Cache-Control: no-cache, max-age=0, must-revalidate\r\nStatus: 403 Forbidden\r\n' +
        'Expires: Fri, 01 Jan 1980 00:00:00 GMT\r\nPragma: no-cache\r\n' +
        'Cache-Control: no-cache, max-age=0, must-revalidate\r\n\r\n',
    ),
    status: 403,
    headers: NO_CACHE,
    body: Buffer.alloc(0),
  },
  {
    name: 'GET git-upload-pack (wrong method)',
    bytes: latin1(
      'Status: 405 Method Not Allowed\r\nAllow: POST\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\n' +
        'Pragma: no-cache\r\nCache-Control: no-cache, max-age=0, must-revalidate\r\n\r\n',
    ),
    status: 405,
    headers: [['Allow', 'POST'], ...NO_CACHE],
    body: Buffer.alloc(0),
  },
  {
    name: 'GET a loose object (dumb protocol, binary body)',
    bytes: base64(
      'RGF0ZTogU2F0LCAyMSBOb3YgMjAyNiAxMzo1NzoxMCArMDAwMA0KRXhwaXJlczogU3VuLCAyMSBOb3YgMjAyNyAxMzo1NzoxMCArMDAwMA0K' +
        'Q2FjaGUtQ29udHJvbDogcHVibGljLCBtYXgtYWdlPTMxNTM2MDAwDQpDb250ZW50LUxlbmd0aDogMTUNCkNvbnRlbnQtVHlwZTogYXBwbGlj' +
        'YXRpb24veC1naXQtbG9vc2Utb2JqZWN0DQpMYXN0LU1vZGlmaWVkOiBTYXQsIDIxIE5vdiAyMDI2IDEzOjU2OjEyICswMDAwDQoNCngBKylK' +
        'TVUwYAAACiwCAQ==',
    ),
    status: 200,
    headers: [
      ['Date', 'Sat, 21 Nov 2026 13:57:10 +0000'],
      ['Expires', 'Sun, 21 Nov 2027 13:57:10 +0000'],
      ['Cache-Control', 'public, max-age=31536000'],
      ['Content-Length', '15'],
      ['Content-Type', 'application/x-git-loose-object'],
      ['Last-Modified', 'Sat, 21 Nov 2026 13:56:12 +0000'],
    ],
    body: base64('eAErKUpNVTBgAAAKLAIB'),
  },
  {
    name: 'POST git-upload-pack (pack in the body)',
    bytes: base64(
      'RXhwaXJlczogRnJpLCAwMSBKYW4gMTk4MCAwMDowMDowMCBHTVQNClByYWdtYTogbm8tY2FjaGUNCkNhY2hlLUNvbnRyb2w6IG5vLWNhY2hl' +
        'LCBtYXgtYWdlPTAsIG11c3QtcmV2YWxpZGF0ZQ0KQ29udGVudC1UeXBlOiBhcHBsaWNhdGlvbi94LWdpdC11cGxvYWQtcGFjay1yZXN1bHQN' +
        'Cg0KMDAwOE5BSwpQQUNLAAAAAgAAAAKXB3icfcoxCoAwDADAva/I7lJjGhsQ8StNjdhBBYn/1xd48/ltBqQZ01qZsCqbSokcLZFueWXBnDc1' +
        'I4kUyuP7dUOBqSw6Qz9KQpZhROjiJ9TrOJq7/ZTQzubhBeDDIAYgeJwDAAAAAAFAx4y9+IArwEqq+13PhQC+nxJ+LA==',
    ),
    status: 200,
    headers: [...NO_CACHE, ['Content-Type', 'application/x-git-upload-pack-result']],
    body: base64(
      'MDAwOE5BSwpQQUNLAAAAAgAAAAKXB3icfcoxCoAwDADAva/I7lJjGhsQ8StNjdhBBYn/1xd48/ltBqQZ01qZsCqbSokcLZFueWXBnDc1I4kU' +
        'yuP7dUOBqSw6Qz9KQpZhROjiJ9TrOJq7/ZTQzubhBeDDIAYgeJwDAAAAAAFAx4y9+IArwEqq+13PhQC+nxJ+LA==',
    ),
  },
  {
    name: 'GET HEAD (dumb protocol)',
    bytes: latin1('Content-Length: 0\r\nContent-Type: text/plain\r\n\r\n'),
    status: 200,
    headers: [
      ['Content-Length', '0'],
      ['Content-Type', 'text/plain'],
    ],
    body: Buffer.alloc(0),
  },
];

type Outcome =
  { status: number; headers: Array<[string, string]>; body: Buffer } | { error: string; httpStatus: number };

/** Feeds the chunks like a stdout stream would: once the head is out, the remaining chunks are body. */
function run(chunks: readonly Buffer[], maxBytes?: number): Outcome {
  const parser = new CgiHeaderParser(maxBytes);
  const body: Buffer[] = [];
  let head: { status: number; headers: Array<[string, string]> } | undefined;
  try {
    for (const chunk of chunks) {
      if (head) {
        body.push(chunk);
        continue;
      }
      const result = parser.push(chunk);
      if (result) {
        head = { status: result.status, headers: result.headers };
        body.push(result.rest);
      }
    }
    if (!head) parser.end();
  } catch (err) {
    assert.ok(err instanceof GitFcgiError, `not a GitFcgiError: ${String(err)}`);
    return { error: err.code, httpStatus: err.status };
  }
  assert.ok(head);
  return { ...head, body: Buffer.concat(body) };
}

function* twoWaySplits(bytes: Buffer): Generator<Buffer[]> {
  for (let i = 0; i <= bytes.length; i++) yield [bytes.subarray(0, i), bytes.subarray(i)];
}

function* threeWaySplits(bytes: Buffer): Generator<Buffer[]> {
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j++) {
      yield [bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)];
    }
  }
}

function byteByByte(bytes: Buffer): Buffer[] {
  return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
}

/** The same input must give the same outcome whatever the chunking. */
function assertEverySplit(bytes: Buffer, expected: Outcome, maxBytes?: number): void {
  assert.deepEqual(run([bytes], maxBytes), expected, 'one chunk');
  assert.deepEqual(run(byteByByte(bytes), maxBytes), expected, 'byte by byte');
  for (const chunks of twoWaySplits(bytes)) {
    assert.deepEqual(run(chunks, maxBytes), expected, `split at ${chunks[0]?.length ?? -1}`);
  }
}

function headerBlockOf(bytes: Buffer): number {
  const crlf = bytes.indexOf('\r\n\r\n');
  return crlf === -1 ? bytes.indexOf('\n\n') + 2 : crlf + 4;
}

/** The fixture with bare-LF line ends in its header block (the body left alone). */
function withLfHeaders(bytes: Buffer): Buffer {
  const end = headerBlockOf(bytes);
  const head = latin1(bytes.subarray(0, end).toString('latin1').replaceAll('\r\n', '\n'));
  return Buffer.concat([head, bytes.subarray(end)]);
}

function errorOf(code: string): Outcome {
  return { error: code, httpStatus: 502 };
}

describe('CgiHeaderParser on real git http-backend output', () => {
  for (const fixture of FIXTURES) {
    const expected: Outcome = { status: fixture.status, headers: fixture.headers, body: fixture.body };

    it(`${fixture.name}: every split point, CRLF`, () => {
      assertEverySplit(fixture.bytes, expected);
    });

    it(`${fixture.name}: every split point, LF`, () => {
      assertEverySplit(withLfHeaders(fixture.bytes), expected);
    });
  }

  for (const fixture of FIXTURES.slice(2, 4)) {
    it(`${fixture.name}: every three-way split`, () => {
      const expected: Outcome = { status: fixture.status, headers: fixture.headers, body: fixture.body };
      for (const chunks of threeWaySplits(fixture.bytes)) assert.deepEqual(run(chunks), expected);
    });
  }

  it('returns the rest of the chunk as a view, not a copy', () => {
    const fixture = FIXTURES[0];
    assert.ok(fixture);
    const chunk = Buffer.from(fixture.bytes);
    const head = new CgiHeaderParser().push(chunk);
    assert.ok(head);
    assert.equal(head.rest.buffer, chunk.buffer);
    assert.equal(head.rest.byteOffset, chunk.byteOffset + headerBlockOf(chunk));
    assert.deepEqual(head.rest, fixture.body);
  });

  it('returns an empty rest when the block ends the chunk', () => {
    const head = new CgiHeaderParser().push(latin1('Content-Type: text/plain\r\n\r\n'));
    assert.ok(head);
    assert.equal(head.rest.length, 0);
  });
});

describe('CgiHeaderParser rules', () => {
  const ok = (status: number, headers: Array<[string, string]>, body = ''): Outcome => ({
    status,
    headers,
    body: latin1(body),
  });

  it('defaults to 200 without Status', () => {
    assertEverySplit(
      latin1('Content-Type: text/plain\n\nhi'),
      ok(200, [['Content-Type', 'text/plain']], 'hi'),
    );
  });

  it('takes Status from anywhere in the block and does not forward it', () => {
    assertEverySplit(
      latin1('A: 1\r\nStatus: 500 Internal Server Error\r\nB: 2\r\n\r\n'),
      ok(500, [
        ['A', '1'],
        ['B', '2'],
      ]),
    );
  });

  it('accepts Status without a reason phrase, in any case', () => {
    assertEverySplit(latin1('status: 204\n\n'), ok(204, []));
    assertEverySplit(latin1('STATUS:\t301\tMoved\nLocation: /x\n\n'), ok(301, [['Location', '/x']]));
  });

  it('keeps the last Status when there are several', () => {
    assertEverySplit(latin1('Status: 200 OK\nStatus: 403 Forbidden\nA: b\n\n'), ok(403, [['A', 'b']]));
  });

  it('answers 302 for Location without Status', () => {
    assertEverySplit(
      latin1('Location: https://example.test/x\r\n\r\n'),
      ok(302, [['Location', 'https://example.test/x']]),
    );
  });

  it('keeps the last value of a repeated header, at the position of the first', () => {
    assertEverySplit(
      latin1('Cache-Control: public\nContent-Type: a/b\nStatus: 500\ncache-control: no-cache\n\n'),
      ok(500, [
        ['cache-control', 'no-cache'],
        ['Content-Type', 'a/b'],
      ]),
    );
  });

  it('keeps every Set-Cookie in order', () => {
    assertEverySplit(
      latin1('Set-Cookie: a=1\nX: 1\nset-cookie: b=2\nX: 2\nSet-Cookie: a=1\n\n'),
      ok(200, [
        ['Set-Cookie', 'a=1'],
        ['X', '2'],
        ['set-cookie', 'b=2'],
        ['Set-Cookie', 'a=1'],
      ]),
    );
  });

  it('trims whitespace around values, keeps inner tabs, allows empty values', () => {
    assertEverySplit(
      latin1('A:   x \t y \t \r\nB:\r\nC:z\r\n\r\n'),
      ok(200, [
        ['A', 'x \t y'],
        ['B', ''],
        ['C', 'z'],
      ]),
    );
  });

  it('keeps non-ASCII bytes of values as latin1', () => {
    const bytes = Buffer.concat([latin1('X-Name: caf'), Buffer.from([0xc3, 0xa9]), latin1('\n\n')]);
    const head = new CgiHeaderParser().push(bytes);
    assert.ok(head);
    assert.deepEqual(Buffer.from(head.headers[0]?.[1] ?? '', 'latin1'), latin1('caf\xc3\xa9'));
  });

  it('accepts every token character in names', () => {
    const name = "!#$%&'*+-.^_`|~09AZaz";
    assertEverySplit(latin1(`${name}: v\n\n`), ok(200, [[name, 'v']]));
  });

  it('passes bytes after the block through untouched, even header-like ones', () => {
    const body = '\r\n\r\nStatus: 500\r\nX: y\n\n\x00\xff';
    assertEverySplit(
      latin1(`Content-Type: text/plain\r\n\r\n${body}`),
      ok(200, [['Content-Type', 'text/plain']], body),
    );
  });

  const invalid: Array<[string, string]> = [
    ['a line without a colon', 'Content-Type text/plain\r\n\r\n'],
    ['an empty name', ': x\r\n\r\n'],
    ['a space in the name', 'Bad Name: x\r\n\r\n'],
    ['a space before the colon', 'Foo : bar\r\n\r\n'],
    ['a separator in the name', 'Fo(o): bar\r\n\r\n'],
    ['a non-ASCII name', 'N\xe4me: x\r\n\r\n'],
    ['a folded continuation line', 'Foo: a\r\n  b\r\n\r\n'],
    ['a tab-folded continuation line', 'Foo: a\n\tb\n\n'],
    ['NUL in a value', 'Foo: a\x00b\r\n\r\n'],
    ['a bare CR in a value', 'Foo: a\rb\r\n\r\n'],
    ['CR CR LF', 'Foo: a\r\r\n\r\n'],
    ['another control character in a value', 'Foo: a\x1bb\n\n'],
    ['DEL in a value', 'Foo: a\x7f\n\n'],
    ['a two-digit Status', 'Status: 99\n\n'],
    ['a four-digit Status', 'Status: 2000\n\n'],
    ['a Status under 100', 'Status: 099 x\n\n'],
    ['a Status over 599', 'Status: 600 x\n\n'],
    ['a non-numeric Status', 'Status: abc\n\n'],
    ['an empty Status', 'Status:\n\n'],
    ['a Status glued to its reason', 'Status: 200OK\n\n'],
    ['an empty header block', '\r\nbody'],
    ['an empty header block (LF)', '\nbody'],
  ];
  for (const [what, text] of invalid) {
    it(`rejects ${what} with ERR_CGI_HEADER (502) at every split`, () => {
      assertEverySplit(latin1(text), errorOf('ERR_CGI_HEADER'));
    });
  }

  it('rejects output that ends inside the header block when end() is called', () => {
    for (const text of ['', 'Content-Type: text/plain', 'Content-Type: text/plain\r\n', 'A: b\r\n\r']) {
      assertEverySplit(latin1(text), errorOf('ERR_CGI_HEADER'));
    }
  });

  it('end() after a complete head is a no-op', () => {
    const parser = new CgiHeaderParser();
    assert.ok(parser.push(latin1('A: b\n\n')));
    parser.end();
  });
});

describe('CgiHeaderParser size cap', () => {
  const max = 64;
  const block = (size: number): string => {
    const filler = 'X: ' + 'a'.repeat(size - 'X: \r\n\r\n'.length);
    return `${filler}\r\n\r\n`;
  };

  it('accepts a header block of exactly maxBytes, terminator included', () => {
    const text = block(max);
    assert.equal(text.length, max);
    const expected: Outcome = { status: 200, headers: [['X', 'a'.repeat(57)]], body: latin1('body') };
    assertEverySplit(latin1(`${text}body`), expected, max);
  });

  it('rejects a header block one byte over maxBytes, whatever follows', () => {
    assertEverySplit(latin1(`${block(max + 1)}body`), errorOf('ERR_CGI_HEADER_TOO_LARGE'), max);
  });

  it('rejects an unterminated block as soon as it passes maxBytes', () => {
    const parser = new CgiHeaderParser(max);
    assert.equal(parser.push(latin1('A: b\r\n'.repeat(10))), null);
    assert.throws(
      () => parser.push(latin1('A: b\r\n'.repeat(2))),
      (err: unknown) =>
        err instanceof GitFcgiError && err.code === 'ERR_CGI_HEADER_TOO_LARGE' && err.status === 502,
    );
  });

  it('rejects one long line without LF, split at every byte', () => {
    assertEverySplit(latin1('X'.repeat(max + 1)), errorOf('ERR_CGI_HEADER_TOO_LARGE'), max);
  });

  it('uses 64 KiB by default', () => {
    const parser = new CgiHeaderParser();
    assert.equal(parser.push(Buffer.alloc(64 * 1024, 'a')), null);
    assert.throws(() => parser.push(latin1('a')), { code: 'ERR_CGI_HEADER_TOO_LARGE' });
  });
});

describe('CgiHeaderParser lifecycle', () => {
  it('rethrows its first error on every later push', () => {
    const parser = new CgiHeaderParser();
    let first: unknown;
    try {
      parser.push(latin1('bad line\n'));
    } catch (err) {
      first = err;
    }
    assert.ok(first instanceof GitFcgiError);
    assert.throws(
      () => parser.push(latin1('A: b\n\n')),
      (err: unknown) => err === first,
    );
  });

  it('refuses push() after the head was returned (the rest is body, not headers)', () => {
    const parser = new CgiHeaderParser();
    assert.ok(parser.push(latin1('A: b\n\n')));
    assert.throws(() => parser.push(latin1('more')), /after the header block/);
  });

  it('returns null until the block is complete', () => {
    const parser = new CgiHeaderParser();
    assert.equal(parser.push(latin1('A: b\r\n')), null);
    assert.equal(parser.push(latin1('\r')), null);
    const head = parser.push(latin1('\nrest'));
    assert.ok(head);
    assert.deepEqual(head.headers, [['A', 'b']]);
    assert.deepEqual(head.rest, latin1('rest'));
  });

  it('accepts empty chunks', () => {
    assert.deepEqual(run([Buffer.alloc(0), latin1('A: b\n'), Buffer.alloc(0), latin1('\n')]), {
      status: 200,
      headers: [['A', 'b']],
      body: Buffer.alloc(0),
    });
  });
});
