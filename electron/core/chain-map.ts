// Allocation of a whole chain, with the meaning of `qemu-img map --output=json`: for each area, the
// depth of the first layer (top = 0) that defines it, and whether it reads as data or zeroes.
import type { Chain } from './qcow2/chain.ts';
import { forEachLayerAllocation } from './qcow2/chain.ts';
import { UNALLOCATED, ZERO } from './qcow2/allocation.ts';

export interface MapExtent {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
}

interface Runs {
  ends: Float64Array;
  kinds: Uint8Array;
  n: number;
  i: number;
}

function layerRuns(chain: Chain, d: number): Runs {
  let ends = new Float64Array(256);
  let kinds = new Uint8Array(256);
  let n = 0;
  forEachLayerAllocation(chain.layers[d], (s, len, kind) => {
    if (n === ends.length) {
      const e = new Float64Array(n * 2);
      e.set(ends);
      ends = e;
      const k = new Uint8Array(n * 2);
      k.set(kinds);
      kinds = k;
    }
    ends[n] = s + len;
    kinds[n] = kind;
    n++;
  });
  return { ends, kinds, n, i: 0 };
}

export function forEachMapExtent(chain: Chain, sink: (e: MapExtent) => void): void {
  const top = chain.layers[0];
  const size = top.virtualSize;
  const runs: (Runs | undefined)[] = [];
  const get = (d: number) => (runs[d] ??= layerRuns(chain, d));
  let cur: MapExtent | null = null;
  const emit = (start: number, end: number, depth: number, present: boolean, zero: boolean) => {
    const data = present && !zero;
    if (cur && cur.start + cur.length === start && cur.depth === depth && cur.present === present && cur.zero === zero) {
      cur.length += end - start;
      return;
    }
    if (cur) sink(cur);
    cur = { start, length: end - start, depth, present, zero, data };
  };
  let pos = 0;
  while (pos < size) {
    let end = size;
    let resolved = false;
    for (let d = 0; d < chain.layers.length; d++) {
      const layer = chain.layers[d];
      if (pos >= layer.virtualSize) {
        // Past the end of a shorter backing the disk reads as zeroes; QEMU attributes that to the
        // layer above, as unallocated.
        emit(pos, end, d - 1, false, true);
        resolved = true;
        break;
      }
      const r = get(d);
      while (r.i < r.n && r.ends[r.i] <= pos) r.i++;
      end = Math.min(end, r.ends[r.i]);
      const kind = r.kinds[r.i];
      if (kind !== UNALLOCATED) {
        emit(pos, end, d, true, kind === ZERO);
        resolved = true;
        break;
      }
    }
    if (!resolved) emit(pos, end, chain.layers.length - 1, false, true);
    pos = end;
  }
  if (cur) sink(cur);
}
