// The inspector's viewport maths (renderer/src/lib/viewport.ts) and its byte labels, in plain Node.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import { byteAtX, isWholeDisk, panByFraction, panByPixels, placeSpan, rulerStep, rulerTicks, selectionSpan, tickLabel, xOfByte, zoomAbout } from '../../renderer/src/lib/viewport.ts';
import { formatByteRange } from '../../renderer/src/lib/format.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

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

test('ruler steps are 1, 2, 5, 10, 20, 50, 100, 200 or 512 of a binary unit', () => {
  assert.equal(rulerStep(20 * GiB, 12), 2 * GiB);
  assert.equal(rulerStep(4 * GiB, 10), 512 * MiB);
  assert.equal(rulerStep(700 * MiB, 10), 100 * MiB);
  assert.equal(rulerStep(512 * KiB, 12), 50 * KiB);
  assert.equal(rulerStep(1.5 * GiB, 1), 2 * GiB);
  assert.equal(rulerStep(1100 * MiB, 1), 2 * GiB);
  assert.equal(rulerStep(10, 20), 1);
});

test('ruler ticks: every multiple of the step in the view, labelled in round numbers', () => {
  const whole = rulerTicks(0, 20 * GiB, 12);
  assert.equal(whole.step, 2 * GiB);
  assert.deepEqual(whole.ticks.map((t) => tickLabel(t, whole.step)), ['0', '2 GiB', '4 GiB', '6 GiB', '8 GiB', '10 GiB', '12 GiB', '14 GiB', '16 GiB', '18 GiB', '20 GiB']);

  const halves = rulerTicks(0, 4 * GiB, 10);
  assert.deepEqual(halves.ticks.map((t) => tickLabel(t, halves.step)), ['0', '512 MiB', '1 GiB', '1.5 GiB', '2 GiB', '2.5 GiB', '3 GiB', '3.5 GiB', '4 GiB']);

  // Zoomed into [3 GiB + 100 MiB, 3 GiB + 900 MiB]: 100 MiB steps, counted in MiB, not "3.13 GiB".
  const zoomed = rulerTicks(3 * GiB + 100 * MiB, 3 * GiB + 900 * MiB, 8);
  assert.deepEqual(zoomed.ticks.map((t) => tickLabel(t, zoomed.step)), ['3200 MiB', '3300 MiB', '3400 MiB', '3500 MiB', '3600 MiB', '3700 MiB', '3800 MiB', '3900 MiB']);

  const seed = rulerTicks(0, 512 * KiB, 12);
  assert.deepEqual(seed.ticks.map((t) => tickLabel(t, seed.step)), ['0', '50 KiB', '100 KiB', '150 KiB', '200 KiB', '250 KiB', '300 KiB', '350 KiB', '400 KiB', '450 KiB', '500 KiB']);

  assert.deepEqual(rulerTicks(10, 10, 5), { step: 0, ticks: [] });
});

test('over any view the ruler labels are round, distinct and at most one more than asked for', () => {
  // A fixed pseudo-random walk over views of a 2 TiB disk, from a few bytes wide to the whole disk.
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const size = 2 * 1024 * GiB;
  for (let i = 0; i < 2000; i++) {
    const span = Math.max(16, Math.round(size * next() ** 8));
    const start = Math.round((size - span) * next());
    const max = 1 + Math.floor(next() * 20);
    const { step, ticks } = rulerTicks(start, start + span, max);
    const labels = ticks.map((t) => tickLabel(t, step));
    assert.ok(ticks.length <= max + 1, `${ticks.length} ticks for at most ${max}`);
    assert.equal(new Set(labels).size, labels.length, labels.join(', '));
    for (const l of labels) assert.match(l, /^(0|\d+(\.5)? (B|KiB|MiB|GiB|TiB|PiB))$/, `${l} (step ${step})`);
  }
});

test('a range whose ends read alike is written precisely enough to tell them apart', () => {
  assert.equal(formatByteRange(192 * KiB, 256 * KiB), '192 KiB – 256 KiB');
  // "4.06 GiB – 4.06 GiB" at the usual precision.
  assert.equal(formatByteRange(4.0625 * GiB, 4.0625 * GiB + 2 * MiB), '4.063 GiB – 4.064 GiB');
  assert.equal(formatByteRange(4 * GiB, 4 * GiB + 64 * KiB), '4.0000 GiB – 4.0001 GiB');
  // Half a KiB a TiB into the disk: no six decimals tell it apart, so exact bytes.
  assert.equal(formatByteRange(1024 * GiB, 1024 * GiB + 512), '1,099,511,627,776 – 1,099,511,628,288 B');
});

test('the two ends of a range never read the same', () => {
  let seed = 11;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 2000; i++) {
    const start = Math.round(2 ** 44 * next() ** 4);
    const end = start + 1 + Math.round(2 ** 30 * next() ** 6);
    const [a, b] = formatByteRange(start, end).split(' – ');
    assert.notEqual(a.replace(/ B$/, ''), b.replace(/ B$/, ''), `${start}–${end}`);
  }
});
