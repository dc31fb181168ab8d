import { test } from 'vitest';
import assert from 'node:assert/strict';
import { ExtentBuilder, union, uncoveredBytes, density, slice, fromExtents, toExtents, totalBytes } from '../../electron/core/extents.ts';

const L = (...pairs: [number, number][]) => fromExtents(pairs.map(([s, l]) => ({ start: s, length: l })));

test('builder merges touching and overlapping extents', () => {
  const b = new ExtentBuilder();
  b.push(0, 10);
  b.push(10, 20);
  b.push(15, 18);
  b.push(30, 40);
  b.push(35, 50);
  assert.deepEqual(toExtents(b.finish()), [
    { start: 0, length: 20 },
    { start: 30, length: 20 },
  ]);
});

test('builder grows past its initial capacity', () => {
  const b = new ExtentBuilder();
  for (let i = 0; i < 1000; i++) b.push(i * 10, i * 10 + 5);
  const l = b.finish();
  assert.equal(l.count, 1000);
  assert.equal(totalBytes(l), 5000);
});

test('union of several lists', () => {
  const u = union([L([0, 10], [50, 10]), L([5, 10], [100, 1]), L([20, 5])]);
  assert.deepEqual(toExtents(u), [
    { start: 0, length: 15 },
    { start: 20, length: 5 },
    { start: 50, length: 10 },
    { start: 100, length: 1 },
  ]);
});

test('uncoveredBytes counts what b misses of a', () => {
  assert.equal(uncoveredBytes(L([0, 100]), L([10, 10], [50, 60])), 10 + 30);
  assert.equal(uncoveredBytes(L([0, 100]), L([0, 100])), 0);
  assert.equal(uncoveredBytes(L([0, 10], [20, 10]), L()), 20);
});

test('density sums marked bytes per bucket', () => {
  const d = density(L([0, 64], [100, 300]), 0, 400, 4);
  assert.equal(d.bucketSize, 100);
  assert.deepEqual(d.marked, [64, 100, 100, 100]);
  assert.equal(d.totalMarked, 364);
  const z = density(L([0, 64], [100, 300]), 150, 250, 2);
  assert.deepEqual(z.marked, [50, 50]);
});

test('slice clips and truncates', () => {
  const s = slice(L([0, 10], [20, 10], [40, 10]), 5, 45, 2);
  assert.deepEqual(s, { extents: [{ start: 5, length: 5 }, { start: 20, length: 10 }], truncated: true });
});
