import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StderrLines } from '../../../src/request/stderr-lines.js';

function linesOf(chunks: string[], maxLineChars?: number): string[] {
  const out: string[] = [];
  const splitter = new StderrLines((line) => out.push(line), maxLineChars);
  for (const c of chunks) splitter.push(Buffer.from(c));
  splitter.flush();
  return out;
}

describe('StderrLines', () => {
  test('one log line per stderr line, whatever the chunking', () => {
    const input = 'error: first\nwarning: second\nlast without newline';
    const expected = ['error: first', 'warning: second', 'last without newline'];
    for (let i = 0; i <= input.length; i++) {
      assert.deepEqual(linesOf([input.slice(0, i), input.slice(i)]), expected, `split at ${i}`);
    }
  });

  test("git's \\r progress updates collapse to their last state", () => {
    const progress = Array.from(
      { length: 100 },
      (_, i) => `Counting objects: ${i + 1}% (${i + 1}/100)\r`,
    ).join('');
    const input = `${progress}Counting objects: 100% (100/100), done.\nCompressing objects: 50%\rCompressing objects: 100%\n`;
    const expected = ['Counting objects: 100% (100/100), done.', 'Compressing objects: 100%'];
    assert.deepEqual(linesOf([input]), expected);
    for (let i = 0; i <= input.length; i += 7) {
      assert.deepEqual(linesOf([input.slice(0, i), input.slice(i)]), expected, `split at ${i}`);
    }
  });

  test('a trailing \\r progress state is flushed at the end', () => {
    assert.deepEqual(linesOf(['Receiving: 10%\rReceiving: 20%\r']), ['Receiving: 20%']);
  });

  test('blank lines are dropped and CRLF is handled', () => {
    assert.deepEqual(linesOf(['a\r\n\r\n\nb\r\n']), ['a', 'b']);
  });

  test('lines are capped, and an endless line does not grow memory', () => {
    const out = linesOf(['x'.repeat(10_000), 'y'.repeat(10_000), '\n'], 100);
    assert.equal(out.length, 1);
    assert.ok((out[0] ?? '').length <= 101);
  });
});
