// Geometry of the inspector's strips: which byte range each bucket (cell or pixel column) covers.
// The core answers density per bucket, so the number of buckets follows the screen width, never the
// number of extents: a 1 TiB disk costs the same as a 512 KiB one.

/** Narrowest cell (CSS px) drawn one per granularity unit; below it buckets become pixel columns. */
export const MIN_CELL_PX = 10;
/** The core refuses more buckets than this in one request. */
export const MAX_BUCKETS = 65536;

export interface Grid {
  /** first byte shown */
  start: number;
  /** byte after the last shown (clamped to the disk size) */
  end: number;
  /** buckets requested */
  buckets: number;
  /** one cell per granularity unit, with gaps between cells */
  cellMode: boolean;
  /** the granularity the cells align to */
  unit: number;
}

export function gridKey(g: Grid): string {
  return `${g.start}:${g.end}:${g.buckets}`;
}

/** Mirrors the core's density(): bucketSize = ceil(span / buckets). */
export function bucketSizeOf(g: Pick<Grid, 'start' | 'end' | 'buckets'>): number {
  return Math.max(1, Math.ceil((g.end - g.start) / g.buckets));
}

export function bucketCountOf(g: Pick<Grid, 'start' | 'end' | 'buckets'>): number {
  const span = Math.max(0, g.end - g.start);
  return Math.max(0, Math.ceil(span / bucketSizeOf(g)));
}

export function computeGrid(view: { start: number; end: number }, size: number, unit: number, width: number): Grid | null {
  if (width <= 0 || size <= 0) return null;
  unit = Math.max(1, unit);
  const cssWidth = Math.max(1, Math.floor(width));
  const vs = Math.max(0, Math.min(view.start, size));
  const ve = Math.max(vs + 1, Math.min(view.end, size));
  // Cell mode: every granularity unit is a cell of at least MIN_CELL_PX.
  const cs = Math.floor(vs / unit) * unit;
  const ce = Math.min(Math.ceil(ve / unit) * unit, size);
  const units = Math.ceil((ce - cs) / unit);
  if (units * MIN_CELL_PX <= cssWidth) return { start: cs, end: ce, buckets: Math.max(1, units), cellMode: true, unit };
  // Pixel columns: each bucket a whole number of units, so a fully dirty area draws at full intensity.
  const columns = Math.min(MAX_BUCKETS, cssWidth);
  const bs = Math.max(unit, Math.ceil((ve - vs) / columns / unit) * unit);
  const start = Math.floor(vs / bs) * bs;
  const buckets = Math.max(1, Math.ceil((ve - start) / bs));
  const end = Math.min(start + buckets * bs, size);
  return { start, end, buckets: Math.max(1, Math.ceil((end - start) / bs)), cellMode: false, unit };
}

/** Index of the bucket holding byte `b`, or -1 outside the grid. */
export function bucketAt(g: Grid, b: number): number {
  if (b < g.start || b >= g.end) return -1;
  return Math.floor((b - g.start) / bucketSizeOf(g));
}

export function bucketRange(g: Grid, i: number): { start: number; end: number } {
  const bs = bucketSizeOf(g);
  return { start: g.start + i * bs, end: Math.min(g.start + (i + 1) * bs, g.end) };
}

/** '1' for a bucket with anything marked, '-' for none: the notation of the seed thread (`--11111-`). */
export function markedString(marked: number[]): string {
  let s = '';
  for (const m of marked) s += m > 0 ? '1' : '-';
  return s;
}
