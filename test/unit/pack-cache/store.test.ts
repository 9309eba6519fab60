import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PackStore, type StoreEntry } from '../../../src/pack-cache/store.js';

function storeWith(budgetBytes: number, maxAgeMs = 60_000): { store: PackStore; removed: string[] } {
  const removed: string[] = [];
  const store = new PackStore({ budgetBytes, maxAgeMs, onRemove: (e) => removed.push(e.key) });
  return { store, removed };
}

/** A finished generation of `bytes`, nobody reading it. */
function finished(store: PackStore, key: string, bytes: number, now: number): StoreEntry {
  const entry = store.create(key, now);
  assert.ok(store.reserve(entry, bytes, now));
  entry.complete = true;
  store.release(entry, now);
  return entry;
}

describe('pack store', () => {
  test('least recently used leaves first to make room; a lookup counts as a use', () => {
    const { store, removed } = storeWith(300);
    finished(store, 'a', 100, 0);
    finished(store, 'b', 100, 1);
    finished(store, 'c', 100, 2);
    assert.ok(store.lookup('a', 3));
    finished(store, 'd', 100, 4);
    assert.deepEqual(removed, ['b']);
    assert.equal(store.bytes, 300);
    assert.equal(store.entries, 3);
    assert.equal(store.lookup('b', 5), null);
  });

  test('an entry in use is never evicted: a pack that cannot fit is refused, nothing evicted', () => {
    const { store, removed } = storeWith(250);
    const a = finished(store, 'a', 100, 0);
    a.users++; // a reader
    const b = store.create('b', 1); // generating
    assert.ok(store.reserve(b, 100, 1));
    const c = store.create('c', 2);
    assert.equal(store.reserve(c, 100, 2), false);
    assert.deepEqual(removed, []);
    store.drop(c);
    store.release(c, 3);
    assert.deepEqual(removed, ['c']);
    store.release(a, 3);
    assert.ok(store.reserve(b, 100, 4), 'a, no longer read, makes room');
    assert.deepEqual(removed, ['c', 'a']);
    assert.ok(store.bytes <= 250);
  });

  test('max age: an old entry is not found; one being read leaves when its reader does', () => {
    const { store, removed } = storeWith(1000, 100);
    const a = finished(store, 'a', 10, 0);
    finished(store, 'b', 10, 50);
    a.users++;
    assert.equal(store.lookup('a', 100), null);
    assert.deepEqual(removed, []);
    const again = store.create('a', 100);
    assert.notEqual(again, a);
    store.release(a, 101);
    assert.deepEqual(removed, ['a']);
    store.sweep(200);
    assert.deepEqual(removed, ['a', 'b']);
    assert.equal(store.entries, 1);
  });

  test('a failed generation leaves at once; clear removes everything', () => {
    const { store, removed } = storeWith(1000);
    const a = store.create('a', 0);
    assert.ok(store.reserve(a, 10, 0));
    store.drop(a);
    assert.equal(store.lookup('a', 1), null);
    store.release(a, 1);
    assert.deepEqual(removed, ['a']);
    finished(store, 'b', 10, 2);
    store.clear();
    assert.equal(store.bytes, 0);
    assert.deepEqual(removed, ['a', 'b']);
  });
});
