// The facts the repair rules need, read from the images (read-only, Strata's own qcow2 reader), the
// image lock test and the previous scan. A chain whose backing file is missing is read down to the
// layer that names it, and files next to the image that could be the missing one are listed.
import fs from 'node:fs';
import path from 'node:path';
import { openLayer, openPartialChain, type Chain, type Layer } from '../qcow2/chain.ts';
import { ChainContents, layerSet } from '../checkpoints.ts';
import { totalBytes } from '../extents.ts';
import type { FactLayer, MissingBacking, PrevLayer, RepairFacts } from './findings.ts';

export interface OpenedChain {
  chain: Chain;
  contents: ChainContents;
  missing: { layer: string; path: string; backingFormat: string | null } | null;
}

/** The chain, or as much of it as exists when a backing file is missing. The caller closes it. */
export function openForRepair(image: string): OpenedChain {
  const { missingBacking: m, ...chain } = openPartialChain(image);
  return { chain, contents: new ChainContents(chain), missing: m ? { layer: m.referencedBy, path: m.expectedAt, backingFormat: m.backingFormat } : null };
}

/** Bytes allocated in each layer that the set of some checkpoint held lower in the chain leaves uncovered. */
function uncoveredOf(contents: ChainContents, i: number): number {
  const chain = contents.chain;
  const layer = chain.layers[i];
  if (layer.bitmapsStale || layer.bitmaps.some((b) => b.inUse)) return layer.bitmaps.length ? -1 : 0;
  const rank = contents.rank();
  let worst = 0;
  for (const name of rank.keys()) {
    let lowest = -1;
    for (let j = chain.layers.length - 1; j > i; j--) {
      if (chain.layers[j].bitmaps.some((b) => b.name === name)) {
        lowest = j;
        break;
      }
    }
    if (lowest < 0) continue;
    const { set } = layerSet(layer, name, rank);
    if (set.length) worst = Math.max(worst, contents.uncovered(layer, set));
  }
  return worst;
}

/**
 * Why a readable image cannot be the missing backing file of a layer (null: it can): QEMU opens a
 * backing file in the format the header names (qcow2 when none is stored, as Strata's rebase writes
 * it), and a moved backing file has the virtual size of the layer above it.
 */
export function backingMismatch(l: Layer, format: string | null, virtualSize: number): string | null {
  const want = format ?? 'qcow2';
  if (l.format !== want) return `it is a ${l.format} image; the layer names a ${want} backing file`;
  if (l.virtualSize !== virtualSize) return `its virtual size is ${l.virtualSize} bytes; the layer above it has ${virtualSize}, so it is not the file that was moved`;
  return null;
}

/** Files next to `dir` that could be the missing backing file: same format and virtual size. */
export function backingCandidates(dirs: string[], format: string | null, virtualSize: number, exclude: Set<string>, prev: PrevLayer[] | null, missingPath: string): MissingBacking['candidates'] {
  const out: MissingBacking['candidates'] = [];
  const seen = new Set<string>();
  const last = prev?.find((l) => l.path === missingPath) ?? null;
  for (const dir of dirs) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names.sort()) {
      const p = path.join(dir, n);
      if (seen.has(p) || exclude.has(p)) continue;
      seen.add(p);
      try {
        if (!fs.statSync(p).isFile()) continue;
        const l = openLayer(p, null);
        try {
          if (backingMismatch(l, format, virtualSize) !== null) continue;
          const matches = last !== null && last.allocatedBytes === totalBytes(new ChainContents({ image: p, layers: [l], close() {} }).allocation(l));
          out.push({ path: p, matchesLastScan: matches });
        } finally {
          l.file.close();
        }
      } catch {
        // not an image we can read: not a candidate
      }
    }
  }
  return out.sort((a, b) => Number(b.matchesLastScan) - Number(a.matchesLastScan));
}

export function gatherFacts(
  opened: OpenedChain,
  o: { lock: 'free' | 'locked'; previous: PrevLayer[] | null; chosenBacking?: string | null },
): RepairFacts {
  const { chain, contents } = opened;
  const layers: FactLayer[] = chain.layers.map((l, i) => {
    const u = uncoveredOf(contents, i);
    return {
      path: l.path,
      format: l.format,
      virtualSize: l.virtualSize,
      backingFile: l.backingFile,
      bitmaps: l.bitmaps.map((b) => ({ name: b.name, granularity: b.granularity, auto: b.auto, inUse: b.inUse })),
      bitmapsStale: l.bitmapsStale,
      allocatedBytes: totalBytes(contents.allocation(l)),
      uncoveredBytes: u < 0 ? null : u,
    };
  });
  let missingBacking: MissingBacking | null = null;
  if (opened.missing) {
    const m = opened.missing;
    const ref = chain.layers.find((l) => l.path === m.layer)!;
    // the folders next to the chain, and the one the user pointed at
    const dirs = [path.dirname(chain.image), path.dirname(m.layer), path.dirname(m.path), ...(o.chosenBacking ? [path.dirname(path.resolve(o.chosenBacking))] : [])];
    const candidates = backingCandidates(dirs, m.backingFormat, ref.virtualSize, new Set(chain.layers.map((l) => l.path)), o.previous, m.path);
    missingBacking = { ...m, candidates, chosen: o.chosenBacking ? path.resolve(o.chosenBacking) : null };
  }
  return { image: chain.image, layers, lock: o.lock, previous: o.previous, missingBacking };
}
