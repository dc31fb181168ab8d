// Sorted, non-overlapping byte extents held in typed arrays (16 bytes an extent, no object per
// extent), with the set operations checkpoint math needs and the summaries the inspector draws.
import type { Extent } from './contract.ts';

export interface ExtentList {
  readonly count: number;
  readonly starts: Float64Array;
  readonly ends: Float64Array;
}

export const EMPTY: ExtentList = { count: 0, starts: new Float64Array(0), ends: new Float64Array(0) };

/** Accepts extents in ascending order of start; merges touching and overlapping ones. */
export class ExtentBuilder {
  private starts = new Float64Array(64);
  private ends = new Float64Array(64);
  private n = 0;

  push(start: number, end: number): void {
    if (end <= start) return;
    const n = this.n;
    if (n > 0 && start <= this.ends[n - 1]) {
      if (end > this.ends[n - 1]) this.ends[n - 1] = end;
      return;
    }
    if (n === this.starts.length) {
      const s = new Float64Array(n * 2);
      s.set(this.starts);
      this.starts = s;
      const e = new Float64Array(n * 2);
      e.set(this.ends);
      this.ends = e;
    }
    this.starts[n] = start;
    this.ends[n] = end;
    this.n = n + 1;
  }

  finish(): ExtentList {
    return { count: this.n, starts: this.starts.subarray(0, this.n), ends: this.ends.subarray(0, this.n) };
  }
}

export function fromExtents(list: Extent[]): ExtentList {
  const b = new ExtentBuilder();
  for (const e of [...list].sort((a, c) => a.start - c.start)) b.push(e.start, e.start + e.length);
  return b.finish();
}

export function toExtents(l: ExtentList): Extent[] {
  const out: Extent[] = new Array(l.count);
  for (let i = 0; i < l.count; i++) out[i] = { start: l.starts[i], length: l.ends[i] - l.starts[i] };
  return out;
}

export function totalBytes(l: ExtentList): number {
  let n = 0;
  for (let i = 0; i < l.count; i++) n += l.ends[i] - l.starts[i];
  return n;
}

/** k-way union by repeatedly taking the list with the smallest next start; k is small (bitmaps in a chain). */
export function union(lists: ExtentList[]): ExtentList {
  const live = lists.filter((l) => l.count > 0);
  if (live.length === 0) return EMPTY;
  if (live.length === 1) return live[0];
  const idx = new Array<number>(live.length).fill(0);
  const b = new ExtentBuilder();
  for (;;) {
    let best = -1;
    let bestStart = Infinity;
    for (let k = 0; k < live.length; k++) {
      if (idx[k] < live[k].count && live[k].starts[idx[k]] < bestStart) {
        bestStart = live[k].starts[idx[k]];
        best = k;
      }
    }
    if (best < 0) break;
    b.push(bestStart, live[best].ends[idx[best]]);
    idx[best]++;
  }
  return b.finish();
}

/** Bytes of `a` not covered by `b`. */
export function uncoveredBytes(a: ExtentList, b: ExtentList): number {
  let j = 0;
  let missing = 0;
  for (let i = 0; i < a.count; i++) {
    let pos = a.starts[i];
    const end = a.ends[i];
    while (pos < end) {
      while (j < b.count && b.ends[j] <= pos) j++;
      if (j >= b.count || b.starts[j] >= end) {
        missing += end - pos;
        break;
      }
      if (b.starts[j] > pos) {
        missing += b.starts[j] - pos;
      }
      pos = b.ends[j];
    }
  }
  return missing;
}

/** Index of the first extent whose end is after `pos`. */
function firstEndingAfter(l: ExtentList, pos: number): number {
  let lo = 0;
  let hi = l.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (l.ends[mid] <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Marked bytes per bucket over [start, end): what the inspector draws, whatever the extent count. */
export function density(l: ExtentList, start: number, end: number, buckets: number): { bucketSize: number; marked: number[]; totalMarked: number } {
  const span = Math.max(0, end - start);
  const bucketSize = Math.max(1, Math.ceil(span / buckets));
  const n = Math.max(0, Math.ceil(span / bucketSize));
  const marked = new Array<number>(n).fill(0);
  let total = 0;
  for (let i = firstEndingAfter(l, start); i < l.count && l.starts[i] < end; i++) {
    let s = Math.max(l.starts[i], start);
    const e = Math.min(l.ends[i], end);
    total += e - s;
    while (s < e) {
      const b = Math.floor((s - start) / bucketSize);
      const bEnd = Math.min(start + (b + 1) * bucketSize, e);
      marked[b] += bEnd - s;
      s = bEnd;
    }
  }
  return { bucketSize, marked, totalMarked: total };
}

/** Extents clipped to [start, end), at most `limit` of them. */
export function slice(l: ExtentList, start: number, end: number, limit: number): { extents: Extent[]; truncated: boolean } {
  const out: Extent[] = [];
  let i = firstEndingAfter(l, start);
  for (; i < l.count && l.starts[i] < end; i++) {
    if (out.length >= limit) return { extents: out, truncated: true };
    const s = Math.max(l.starts[i], start);
    const e = Math.min(l.ends[i], end);
    out.push({ start: s, length: e - s });
  }
  return { extents: out, truncated: false };
}
