// Scan-to-scan drift as typed codes with their facts: what changed in a chain between two scans
// (someone committed, wrote or added a bitmap outside Strata). Pure: two scans in, codes out. Words
// are made from the codes only for display (driftText); repair reads the codes.
import { humanBytes } from '../units.ts';
import type { BitmapFlag, Drift, ScanRecord } from '../contract.ts';

type ScanLayers = ScanRecord['layers'];

export function driftBetween(before: ScanLayers, after: ScanLayers): Drift[] {
  const out: Drift[] = [];
  const beforePaths = before.map((l) => l.path);
  const afterPaths = after.map((l) => l.path);
  for (const p of afterPaths) if (!beforePaths.includes(p)) out.push({ code: 'layer-added', layer: p });
  for (const p of beforePaths) if (!afterPaths.includes(p)) out.push({ code: 'layer-removed', layer: p });
  after.forEach((a, i) => {
    const j = beforePaths.indexOf(a.path);
    if (j < 0) return;
    const b = before[j];
    const was = before[j + 1]?.path ?? null;
    const now = after[i + 1]?.path ?? null;
    if (was !== now) out.push({ code: 'backing-changed', layer: a.path, from: was, to: now });
    if (a.allocatedBytes !== b.allocatedBytes) out.push({ code: 'allocation-changed', layer: a.path, from: b.allocatedBytes, to: a.allocatedBytes });
    for (const bm of a.bitmaps) {
      const old = b.bitmaps.find((x) => x.name === bm.name);
      if (!old) {
        out.push({ code: 'bitmap-added', layer: a.path, bitmap: bm.name });
        continue;
      }
      if (old.flags.join() !== bm.flags.join()) out.push({ code: 'bitmap-flags-changed', layer: a.path, bitmap: bm.name, from: old.flags, to: bm.flags });
      if (old.dirtyBytes !== bm.dirtyBytes) out.push({ code: 'bitmap-dirty-changed', layer: a.path, bitmap: bm.name, from: old.dirtyBytes, to: bm.dirtyBytes });
    }
    for (const old of b.bitmaps) if (!a.bitmaps.some((x) => x.name === old.name)) out.push({ code: 'bitmap-removed', layer: a.path, bitmap: old.name });
  });
  return out;
}

const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);
const flags = (f: BitmapFlag[]) => (f.length ? f.join(', ') : 'disabled');

/** One drift in plain words. */
export function driftText(d: Drift): string {
  switch (d.code) {
    case 'layer-added':
      return `layer ${base(d.layer)} appeared in the chain`;
    case 'layer-removed':
      return `layer ${base(d.layer)} left the chain`;
    case 'backing-changed':
      return `layer ${base(d.layer)}: backing ${d.from ? base(d.from) : 'none'} → ${d.to ? base(d.to) : 'none'}`;
    case 'allocation-changed':
      return `layer ${base(d.layer)}: ${d.to > d.from ? `written (${humanBytes(d.to - d.from)} more allocated` : `${humanBytes(d.from - d.to)} less allocated`}, now ${humanBytes(d.to)})`;
    case 'bitmap-added':
      return `bitmap '${d.bitmap}' added in ${base(d.layer)}`;
    case 'bitmap-removed':
      return `bitmap '${d.bitmap}' removed from ${base(d.layer)}`;
    case 'bitmap-flags-changed':
      return `bitmap '${d.bitmap}' in ${base(d.layer)}: ${flags(d.from)} → ${flags(d.to)}`;
    case 'bitmap-dirty-changed':
      return `bitmap '${d.bitmap}' in ${base(d.layer)}: marks ${humanBytes(d.to)} (was ${humanBytes(d.from)})`;
  }
}
