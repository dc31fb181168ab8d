// The inspector's viewport maths (renderer/src/lib/viewport.ts), in plain Node.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { byteAtX, isWholeDisk, panByFraction, panByPixels, placeSpan, selectionSpan, xOfByte, zoomAbout } from '../../renderer/src/lib/viewport.ts';

const KiB = 1024;

test('zooming about a point keeps that byte where it was on screen', () => {
  // 256 is a quarter into [0, 1024); after zooming in by 2 it is a quarter into [128, 640).
  assert.deepEqual(zoomAbout({ start: 0, end: 1024 }, 256, 0.5, 1024, 64), { start: 128, end: 640 });
  assert.deepEqual(zoomAbout({ start: 128, end: 640 }, 256, 2, 1024, 64), { start: 0, end: 1024 });
});

test('zooming stops at the narrowest view and at the whole disk, and stays on the disk', () => {
  assert.deepEqual(zoomAbout({ start: 0, end: 1024 }, 512, 0.01, 1024, 64), { start: 480, end: 544 });
  assert.deepEqual(zoomAbout({ start: 256, end: 768 }, 300, 4, 1024, 64), { start: 0, end: 1024 });
  // Zooming out near the end would run past it: the view is pushed back inside.
  assert.deepEqual(zoomAbout({ start: 900, end: 1000 }, 990, 3, 1000, 10), { start: 700, end: 1000 });
});

test('panning moves by a fraction of the view or by dragged pixels, clamped to the disk', () => {
  assert.deepEqual(panByFraction({ start: 100, end: 200 }, 0.5, 1000), { start: 150, end: 250 });
  assert.deepEqual(panByFraction({ start: 100, end: 200 }, -2, 1000), { start: 0, end: 100 });
  assert.deepEqual(panByFraction({ start: 850, end: 950 }, 1, 1000), { start: 900, end: 1000 });
  // Dragging the contents 50 px right on a 100 px strip shows what was half a view to the left.
  assert.deepEqual(panByPixels({ start: 100, end: 200 }, 50, 100, 1000), { start: 50, end: 150 });
  assert.deepEqual(panByPixels({ start: 100, end: 200 }, -500, 100, 1000), { start: 600, end: 700 });
  assert.deepEqual(panByPixels({ start: 100, end: 200 }, -1000, 100, 1000), { start: 900, end: 1000 });
  assert.deepEqual(placeSpan(-30.4, 100.2, 1000), { start: 0, end: 100 });
});

test('the whole disk is the view with no zoom', () => {
  assert.equal(isWholeDisk({ start: 0, end: 1000 }, 1000), true);
  assert.equal(isWholeDisk({ start: 0, end: 999 }, 1000), false);
  assert.equal(isWholeDisk({ start: 1, end: 1000 }, 1000), false);
});

test('bytes to pixels and back', () => {
  const shown = { start: 1000, end: 2000 };
  assert.equal(byteAtX(shown, 100, 25), 1250);
  assert.equal(xOfByte(shown, 100, 1500), 50);
  assert.equal(byteAtX(shown, 100, xOfByte(shown, 100, 1730)), 1730);
  // Outside the strip the pointer still answers a byte on it, never the byte after its end.
  assert.equal(byteAtX(shown, 100, -5), 1000);
  const last = byteAtX(shown, 100, 150);
  assert.ok(last >= 1999 && last < 2000, String(last));
});

test('a drag-select snaps outwards to whole cells and is widened to the narrowest view', () => {
  // The seed disk: 8 clusters of 64 KiB; from inside cluster 3 to inside cluster 6 is clusters 3..6.
  assert.deepEqual(selectionSpan(3.2 * 64 * KiB, 6.8 * 64 * KiB, 64 * KiB, 512 * KiB, 256 * KiB), { start: 192 * KiB, end: 448 * KiB });
  assert.deepEqual(selectionSpan(6.8 * 64 * KiB, 3.2 * 64 * KiB, 64 * KiB, 512 * KiB, 256 * KiB), { start: 192 * KiB, end: 448 * KiB });
  // [64, 256) is narrower than 256: widened about its middle (160).
  assert.deepEqual(selectionSpan(100, 200, 64, 10_000, 256), { start: 32, end: 288 });
  // ... and kept on the disk.
  assert.deepEqual(selectionSpan(9990, 9999, 64, 10_000, 256), { start: 9744, end: 10_000 });
});
