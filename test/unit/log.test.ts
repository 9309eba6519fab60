import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatLine } from '../../src/log.js';

const TIME = new Date('2026-01-02T03:04:05.678Z');

describe('formatLine', () => {
  it('text: timestamp, level, message, then key=value in order, quoting only what needs it', () => {
    const line = formatLine(
      'text',
      'info',
      'access',
      { req: 'abc123', user: '-', ms: 1.5, repo: 'a b.git', error: '', exit: null, skipped: undefined },
      TIME,
    );
    assert.equal(
      line,
      '2026-01-02T03:04:05.678Z info access req=abc123 user=- ms=1.5 repo="a b.git" error="" exit=null\n',
    );
  });

  it('text: objects as JSON, and the reserved names never come from meta', () => {
    const line = formatLine(
      'text',
      'warn',
      'x',
      { level: 'debug', message: 'm', timestamp: 't', n: [1, 2] },
      TIME,
    );
    assert.equal(line, '2026-01-02T03:04:05.678Z warn x n="[1,2]"\n');
  });

  it('json: one object a line, keys sorted, level/message/timestamp its own', () => {
    const line = formatLine('json', 'error', 'boom', { req: 'r1', level: 'info', b: { z: 1, a: 2n } }, TIME);
    assert.equal(
      line,
      '{"b":{"a":"2","z":1},"level":"error","message":"boom","req":"r1","timestamp":"2026-01-02T03:04:05.678Z"}\n',
    );
  });
});
