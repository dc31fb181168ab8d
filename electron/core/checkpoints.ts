// "Changes since checkpoint X" = the union, across all layers, of X and of every bitmap created after
// X (directory order within a layer, layers base to top). Covers libvirt's style (every checkpoint
// bitmap keeps recording, same names in every layer) and the seed's style (older bitmaps disabled when
// a newer one starts). Any doubt makes the answer 'unknown' with reasons, never a smaller set.
import path from 'node:path';
import type { Chain, Layer } from './qcow2/chain.ts';
import { allocationExtents, bitmapExtents } from './qcow2/chain.ts';
import type { BitmapEntry } from './qcow2/bitmaps.ts';
import type { NodeBitmap } from './qmp/named-nodes.ts';
import { union, uncoveredBytes, totalBytes, EMPTY, type ExtentList } from './extents.ts';
import type { CheckpointReport } from './contract.ts';
import { StrataError } from './errors.ts';
import { humanBytes } from './units.ts';

const DIRTY_TRACKING = 1;

/**
 * A layer that a connected QEMU (Strata's own daemon, a VM) holds open, as that QEMU sees it. On disk
 * its bitmaps read in-use while it runs and their contents are stale; the live ones are the truth.
 * `bitmaps` are in creation order (QEMU lists a node's bitmaps newest first); `extents` is null for a
 * bitmap QEMU will not copy (inconsistent or busy). `error` says why the live state could not be read:
 * then the on-disk bitmaps are shown and every checkpoint they count for is unknown.
 */
export interface LiveLayerFacts {
  /** who holds it, in words: "Strata's daemon", "the QEMU at vm.sock" */
  holder: string;
  connection: string;
  bitmaps: (NodeBitmap & { extents: ExtentList | null })[];
  /** what the layer itself allocates, read live (qemu:allocation-depth) */
  allocation: ExtentList | null;
  error: string | null;
}

/** A layer as one QEMU holds it: the on-disk facts, with the live bitmaps in place of the file's. */
export interface LiveLayer extends Layer {
  live: LiveLayerFacts;
}

export function isLive(layer: Layer): layer is LiveLayer {
  return (layer as LiveLayer).live !== undefined;
}

/** Live bitmaps as directory entries, so the checkpoint rules read them as they read the file's. */
function liveEntries(facts: LiveLayerFacts): BitmapEntry[] {
  return facts.bitmaps.map((b, index) => ({
    name: b.name,
    index,
    tableOffset: -1,
    tableSize: 0,
    flags: (b.inconsistent ? 1 : 0) | (b.recording ? 2 : 0),
    type: DIRTY_TRACKING,
    granularityBits: Math.log2(b.granularity),
    granularity: b.granularity,
    inUse: b.inconsistent,
    auto: b.recording,
    entryOffset: -1,
  }));
}

/** The chain with every held layer replaced by its live view (the file's layers are not touched). */
function withLiveLayers(chain: Chain, live: ReadonlyMap<string, LiveLayerFacts>): Chain {
  if (live.size === 0) return chain;
  const layers = chain.layers.map((l): Layer => {
    const facts = live.get(l.path);
    if (!facts) return l;
    return facts.error === null ? ({ ...l, bitmaps: liveEntries(facts), live: facts } as LiveLayer) : ({ ...l, live: facts } as LiveLayer);
  });
  return { image: chain.image, layers, close: () => chain.close() };
}

/** Caches decoded extents and derived facts for one chain walk: inspect asks for the same bitmap,
 * the same coverage check and the same ranks once per checkpoint. */
export class ChainContents {
  private bitmaps = new Map<string, ExtentList>();
  private allocs = new Map<Layer, ExtentList>();
  private coverage = new Map<string, number>();
  private ranks: Map<string, number> | null = null;
  /** the chain as read; with `live` facts, the layers a QEMU holds are seen as it sees them */
  readonly chain: Chain;
  constructor(chain: Chain, live: ReadonlyMap<string, LiveLayerFacts> = new Map()) {
    this.chain = withLiveLayers(chain, live);
  }

  bitmap(layer: Layer, bm: BitmapEntry): ExtentList {
    const key = `${layer.path}\0${bm.name}`;
    let l = this.bitmaps.get(key);
    if (!l) {
      // A live bitmap QEMU would not copy (inconsistent, busy) has no contents to show; every
      // checkpoint it counts for is unknown for that reason (see sourcesAndProblems).
      l = isLive(layer) && layer.live.error === null ? (layer.live.bitmaps.find((b) => b.name === bm.name)?.extents ?? EMPTY) : bitmapExtents(layer, bm);
      this.bitmaps.set(key, l);
    }
    return l;
  }

  allocation(layer: Layer): ExtentList {
    let l = this.allocs.get(layer);
    if (!l) {
      l = isLive(layer) && layer.live.allocation ? layer.live.allocation : allocationExtents(layer);
      this.allocs.set(layer, l);
    }
    return l;
  }

  /** Bytes allocated in `layer` that none of `set` (bitmaps of that layer) covers. */
  uncovered(layer: Layer, set: BitmapEntry[]): number {
    const key = `${layer.path}\0${set.map((b) => b.index).join(',')}`;
    let n = this.coverage.get(key);
    if (n === undefined) {
      n = uncoveredBytes(this.allocation(layer), union(set.map((b) => this.bitmap(layer, b))));
      this.coverage.set(key, n);
    }
    return n;
  }

  /** Checkpoint name -> position in creation order. */
  rank(): Map<string, number> {
    return (this.ranks ??= new Map(checkpointOrder(this.chain).map((n, i) => [n, i])));
  }
}

/** Checkpoint names oldest first: first appearance walking layers base to top, each in directory order. */
export function checkpointOrder(chain: Chain): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  for (let i = chain.layers.length - 1; i >= 0; i--) {
    for (const bm of chain.layers[i].bitmaps) {
      if (!seen.has(bm.name)) {
        seen.add(bm.name);
        order.push(bm.name);
      }
    }
  }
  return order;
}

export interface SinceResult {
  checkpoint: string;
  sources: { layer: Layer; bitmap: BitmapEntry }[];
  problems: string[];
  /** null when the answer cannot be known */
  extents: ExtentList | null;
}

const base = (p: string) => path.basename(p);

/**
 * The bitmaps of one layer that count for "changes since `checkpoint`": `later` are those created at
 * or after it, `set` those that count. Directory order is creation order only across QEMU sessions:
 * bitmaps created while one QEMU had the image open are stored newest first. A recording checkpoint
 * covers its layer by itself; once disabled, what was written after it may sit in any other bitmap
 * of the layer, listed before it or after, so every one of them counts (more than needed, never less).
 */
export function layerSet<B extends { name: string; auto: boolean }>(layer: { bitmaps: B[] }, checkpoint: string, rank: Map<string, number>): { later: B[]; set: B[] } {
  const r = rank.get(checkpoint) ?? -1;
  const later = layer.bitmaps.filter((b) => (rank.get(b.name) ?? -1) >= r);
  const own = later.find((b) => b.name === checkpoint);
  return { later, set: own && !own.auto ? layer.bitmaps : later };
}

/** Which bitmaps make up "changes since `checkpoint`", and every reason the answer is unknown. */
function sourcesAndProblems(contents: ChainContents, checkpoint: string): Omit<SinceResult, 'extents'> {
  const chain = contents.chain;
  const rank = contents.rank();
  const r = rank.get(checkpoint);
  if (r === undefined) {
    throw new StrataError('E_NO_BITMAP', `${chain.image}: no layer of the chain has a bitmap named '${checkpoint}'`, { file: chain.image });
  }
  // Layers are top first; find the lowest (closest to the base) layer holding the checkpoint itself.
  let lowest = -1;
  for (let i = chain.layers.length - 1; i >= 0; i--) {
    if (chain.layers[i].bitmaps.some((b) => b.name === checkpoint)) {
      lowest = i;
      break;
    }
  }
  const sources: SinceResult['sources'] = [];
  const problems: string[] = [];
  for (let i = lowest; i >= 0; i--) {
    const layer = chain.layers[i];
    const { later, set } = layerSet(layer, checkpoint, rank);
    if (set.length === 0) {
      problems.push(
        `layer ${base(layer.path)} has no bitmap for checkpoint '${checkpoint}' or any later one: writes made while it was the active layer are not tracked (was it created outside Strata, e.g. with qemu-img create -b?)`,
      );
      continue;
    }
    if (layer.bitmapsStale) {
      problems.push(`layer ${base(layer.path)}: its bitmaps were left stale by a program that did not understand them; QEMU will discard them`);
    }
    const before = problems.length;
    const inUse: string[] = [];
    const busy: string[] = [];
    for (const bm of set) {
      sources.push({ layer, bitmap: bm });
      if (bm.inUse) inUse.push(bm.name);
      if (isLive(layer) && layer.live.bitmaps.find((b) => b.name === bm.name)?.busy) busy.push(bm.name);
      if (bm.type !== DIRTY_TRACKING) problems.push(`bitmap '${bm.name}' in ${base(layer.path)} is of unknown type ${bm.type}`);
    }
    // One message per cause and layer, naming every bitmap it concerns.
    const which = (names: string[]) => (names.length === 1 ? `bitmap '${names[0]}' in ${base(layer.path)} is` : `bitmaps ${names.map((n) => `'${n}'`).join(', ')} in ${base(layer.path)} are`);
    const its = (names: string[]) => (names.length === 1 ? 'its' : 'their');
    if (inUse.length && isLive(layer) && layer.live.error === null) {
      problems.push(
        `${which(inUse)} inconsistent in ${layer.live.holder}: ${its(inUse)} last writer did not store ${inUse.length === 1 ? 'it' : 'them'} (a crash before this QEMU opened the image); ${its(inUse)} contents cannot be trusted: remove ${inUse.length === 1 ? 'it' : 'them'} and take a new checkpoint`,
      );
    } else if (inUse.length && isLive(layer)) {
      problems.push(
        `${which(inUse)} marked in-use on disk because ${layer.live.holder} holds ${base(layer.path)} open, and ${its(inUse)} live state could not be read (${layer.live.error}); rescan, or close the connection so that QEMU stores ${inUse.length === 1 ? 'it' : 'them'}`,
      );
    } else if (inUse.length) {
      problems.push(`${which(inUse)} marked in-use: a QEMU process has the image open read-write, or one crashed while it did; ${its(inUse)} contents cannot be trusted`);
    }
    if (busy.length) {
      problems.push(`${which(busy)} busy in ${(layer as LiveLayer).live.holder} (a backup job or an export is using ${busy.length === 1 ? 'it' : 'them'}): ${its(busy)} contents cannot be read until that ends; rescan then`);
    }
    if (i === 0 && !set.some((b) => b.auto)) {
      const newest = later[later.length - 1];
      problems.push(
        `in the active layer ${base(layer.path)}, bitmap '${newest.name}' (the newest one covering checkpoint '${checkpoint}') is disabled: writes since it was disabled are not tracked`,
      );
    }
    if (i < lowest && problems.length === before) {
      // Every cluster allocated in a layer was written after the layer was made, which is after the
      // checkpoint: the layer's bitmaps must cover its whole allocation, or writes were missed.
      const missing = contents.uncovered(layer, set);
      if (missing > 0) {
        problems.push(
          `layer ${base(layer.path)} holds ${humanBytes(missing)} written that no bitmap of checkpoint '${checkpoint}' covers: the layer was written before its bitmaps were created`,
        );
      }
    }
  }
  return { checkpoint, sources, problems };
}

export function since(contents: ChainContents, checkpoint: string): SinceResult {
  const s = sourcesAndProblems(contents, checkpoint);
  const extents = s.problems.length === 0 ? union(s.sources.map((x) => contents.bitmap(x.layer, x.bitmap))) : null;
  return { ...s, extents };
}

/**
 * Every checkpoint at once. The sources of a checkpoint are those of the next newer one plus its
 * own bitmaps (ranks count from the base up), so the unions are built newest first, incrementally.
 */
export function checkpointReports(contents: ChainContents): CheckpointReport[] {
  const order = checkpointOrder(contents.chain);
  const rank = contents.rank();
  const out: CheckpointReport[] = new Array(order.length);
  let acc: ExtentList = EMPTY;
  for (let k = order.length - 1; k >= 0; k--) {
    const name = order[k];
    const s = sourcesAndProblems(contents, name);
    const own = s.sources.filter((x) => x.bitmap.name === name).map((x) => contents.bitmap(x.layer, x.bitmap));
    acc = union([acc, ...own]);
    // A disabled checkpoint also counts older bitmaps of its layer (see above): not incremental.
    const older = s.sources.filter((x) => (rank.get(x.bitmap.name) ?? -1) < k);
    const marked = older.length ? union([acc, ...older.map((x) => contents.bitmap(x.layer, x.bitmap))]) : acc;
    out[k] = {
      name,
      state: s.problems.length === 0 ? 'ok' : 'unknown',
      problems: s.problems,
      sources: s.sources.map((x) => ({ layer: x.layer.path, bitmap: x.bitmap.name })),
      dirtyBytes: s.problems.length === 0 ? totalBytes(marked) : null,
    };
  }
  return out;
}
