import assert from 'node:assert/strict';
import { getHeapSpaceStatistics } from 'node:v8';
import { it } from 'node:test';
import '../../src/heap-limits.js';

it('the young generation does not grow under allocation churn', () => {
  const before = newSpaceBytes();
  let kept: unknown[] = [];
  for (let i = 0; i < 400_000; i++) {
    const o = { i, s: `x${i}`, a: [i, i + 1] };
    // Some survivors, as a busy daemon has: what makes V8 grow new space.
    if (i % 50 === 0) kept.push(o);
    if (kept.length > 2000) kept = [];
  }
  assert.ok(newSpaceBytes() <= Math.max(before, 4 << 20), `new space grew to ${newSpaceBytes()} bytes`);
});

function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}
