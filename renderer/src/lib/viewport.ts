// The maths of the inspector's viewport over the virtual disk: which byte range is in view, zoomed
// about a point, panned and clamped to the disk; bytes to pixels and back; the ruler's ticks. Pure
// functions of numbers (no Vue, no DOM): use-viewport.ts wires them to the pointer and the keys.
import { BINARY_UNITS } from './format.ts';

/** A byte range of the disk: [start, end). */
export interface ByteSpan {
  start: number;
  end: number;
}

/** The view moved to start at `start` with length `span`, kept inside [0, size], in whole bytes. */
export function placeSpan(start: number, span: number, size: number): ByteSpan {
  const length = Math.min(size, Math.max(0, span));
  const s = Math.max(0, Math.min(size - length, start));
  return { start: Math.round(s), end: Math.round(s + length) };
}

/** True when the view shows the whole disk (then no zoom is kept). */
export function isWholeDisk(v: ByteSpan, size: number): boolean {
  return v.start <= 0 && v.end >= size;
}

/**
 * Zoom by `factor` (below 1 zooms in) keeping the byte `anchor` at the same place on screen; the new
 * length stays between `minSpan` and the disk.
 */
export function zoomAbout(v: ByteSpan, anchor: number, factor: number, size: number, minSpan: number): ByteSpan {
  const span = v.end - v.start;
  const next = Math.min(size, Math.max(minSpan, span * factor));
  return placeSpan(anchor - (anchor - v.start) * (next / span), next, size);
}

/** Move the view by `fraction` of its own length (negative: towards the start of the disk). */
export function panByFraction(v: ByteSpan, fraction: number, size: number): ByteSpan {
  const span = v.end - v.start;
  return placeSpan(v.start + span * fraction, span, size);
}

/** Move the view the way a drag of `dx` pixels across a strip `width` pixels wide moves its contents. */
export function panByPixels(v: ByteSpan, dx: number, width: number, size: number): ByteSpan {
  const span = v.end - v.start;
  return placeSpan(v.start - (dx / Math.max(1, width)) * span, span, size);
}

/** The byte under pixel `x` of a strip `width` pixels wide showing `shown` (x clamped to the strip). */
export function byteAtX(shown: ByteSpan, width: number, x: number): number {
  const clamped = Math.max(0, Math.min(width - 0.001, x));
  return shown.start + (clamped / width) * (shown.end - shown.start);
}

/** The pixel where byte `b` falls on a strip `width` pixels wide showing `shown`. */
export function xOfByte(shown: ByteSpan, width: number, b: number): number {
  return ((b - shown.start) / (shown.end - shown.start)) * width;
}

/**
 * The view a drag-select from byte `a` to byte `b` zooms to: snapped outwards to whole `unit`s, and
 * widened about its middle to `minSpan` when narrower.
 */
export function selectionSpan(a: number, b: number, unit: number, size: number, minSpan: number): ByteSpan {
  let s = Math.floor(Math.min(a, b) / unit) * unit;
  let t = Math.min(size, Math.ceil(Math.max(a, b) / unit) * unit);
  if (t - s < minSpan) {
    s = Math.max(0, Math.min(size - minSpan, (s + t) / 2 - minSpan / 2));
    t = s + minSpan;
  }
  return { start: Math.round(s), end: Math.round(t) };
}

/** Mantissas of the ruler's steps within one binary unit; 512 of a unit is half the next one. */
const STEP_MANTISSAS = [1, 2, 5, 10, 20, 50, 100, 200, 512];

/**
 * The ruler's step: the smallest round length (1, 2, 5, 10, 20, 50, 100, 200 or 512 of a binary unit:
 * 200 MiB, 512 MiB, 1 GiB, 2 GiB, ...) that puts at most `maxTicks` steps in `span`.
 */
export function rulerStep(span: number, maxTicks: number): number {
  const wanted = span / Math.max(1, maxTicks);
  for (let u = 0; u < BINARY_UNITS.length; u++) {
    for (const m of STEP_MANTISSAS) {
      const step = m * 1024 ** u;
      if (step >= wanted) return step;
    }
  }
  return 1024 ** BINARY_UNITS.length;
}

/** The ruler's ticks over [start, end]: every multiple of rulerStep in it, at most maxTicks + 1. */
export function rulerTicks(start: number, end: number, maxTicks: number): { step: number; ticks: number[] } {
  const span = end - start;
  if (span <= 0 || maxTicks < 1) return { step: 0, ticks: [] };
  const step = rulerStep(span, maxTicks);
  const ticks: number[] = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) ticks.push(t);
  return { step, ticks };
}

/**
 * A tick's label, counted in the unit of its step (200 MiB steps: "3200 MiB"), or for a step of
 * half a unit, in that unit from one of it on (512 MiB steps: "512 MiB", "1 GiB", "1.5 GiB"): every
 * label is a round number, never "3.13 GiB".
 */
export function tickLabel(t: number, step: number): string {
  if (t === 0) return '0';
  let u = 0;
  while (u < BINARY_UNITS.length - 1 && step >= 1024 ** (u + 1)) u++;
  const next = 1024 ** (u + 1);
  if (u < BINARY_UNITS.length - 1 && step === next / 2 && t >= next) {
    const halves = t / next;
    return `${Number.isInteger(halves) ? halves : halves.toFixed(1)} ${BINARY_UNITS[u + 1]}`;
  }
  return `${t / 1024 ** u} ${BINARY_UNITS[u]}`;
}
