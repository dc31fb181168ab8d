// What is wrong with a chain's checkpoints, and how each thing can be repaired: pure rules over
// facts gathered elsewhere (facts.ts), no I/O, like jobs/states.ts. The rules follow the checkpoint
// math (checkpoints.ts): "changes since X" is the union, over every layer above the lowest one
// holding X, of the bitmaps of that layer created at or after X. Where a layer has none, or its
// bitmaps do not cover what is allocated in it, the answer is unknown; the repair is to fill a
// bitmap from the layer's allocation (every cluster allocated in a layer was written after the layer
// was created, so it is a correct, conservative "changes since" for every checkpoint older than the
// layer). Anything that cannot be proven is said, never repaired into a false clean.
import path from 'node:path';
import { layerSet } from '../checkpoints.ts';

export interface FactBitmap {
  name: string;
  granularity: number;
  /** recording */
  auto: boolean;
  inUse: boolean;
}

export interface FactLayer {
  path: string;
  format: 'qcow2' | 'raw';
  virtualSize: number;
  /** the backing string in the header, null for a base */
  backingFile: string | null;
  /** directory order */
  bitmaps: FactBitmap[];
  bitmapsStale: boolean;
  allocatedBytes: number;
  /**
   * For every checkpoint held lower in the chain whose set in this layer is not empty: the most
   * bytes allocated here that its set does not cover. null when not known (treated as uncovered).
   */
  uncoveredBytes: number | null;
}

/** One layer of the previous scan (store/history.ts ScanRecord layers). */
export interface PrevLayer {
  path: string;
  allocatedBytes: number;
  bitmaps: { name: string; flags: string[]; dirtyBytes: number }[];
}

export interface MissingBacking {
  /** the layer whose backing file is missing */
  layer: string;
  /** where the header says it is */
  path: string;
  backingFormat: string | null;
  /** files that could be it: same format and virtual size, next to the image */
  candidates: { path: string; matchesLastScan: boolean }[];
  /** the candidate the user chose (--backing), if any */
  chosen: string | null;
}

export interface RepairFacts {
  image: string;
  /** top first; when a backing file is missing, the layers down to the one that names it */
  layers: FactLayer[];
  /** the image lock of the top: 'locked' while another process (a running QEMU) holds it */
  lock: 'free' | 'locked';
  /** the previous scan of this image from the history, if any */
  previous: PrevLayer[] | null;
  missingBacking: MissingBacking | null;
}

export type FindingCode =
  | 'untracked-overlay'
  | 'gap'
  | 'uncovered-allocation'
  | 'in-use-live'
  | 'in-use-crashed'
  | 'disabled-newest'
  | 'stale-bitmaps'
  | 'backing-missing'
  | 'layer-disappeared'
  | 'backing-written-after-overlay';

export interface BitmapSpec {
  name: string;
  granularity: number;
}

export type RepairAction =
  /** add these bitmaps (recording) to the layer, each filled from the layer's allocation */
  | { kind: 'bitmaps-from-allocation'; layer: string; bitmaps: BitmapSpec[] }
  /** merge the layer's allocation into an existing bitmap of it */
  | { kind: 'merge-allocation'; layer: string; bitmap: BitmapSpec }
  /** merge the active layer's allocation into its newest bitmap, then enable it */
  | { kind: 'enable-with-allocation'; layer: string; bitmap: BitmapSpec }
  /** remove inconsistent bitmaps (the lock test proved no live holder) */
  | { kind: 'remove-bitmaps'; layer: string; bitmaps: string[] }
  /** drop the stale bitmap directory (QEMU discards it anyway) */
  | { kind: 'drop-stale'; layer: string; bitmaps: string[] }
  /** point the layer at another backing file, without touching any data (qemu-img rebase -u) */
  | { kind: 'rebase-unsafe'; layer: string; backing: string; backingFormat: string };

export interface Finding {
  code: FindingCode;
  layers: string[];
  bitmaps: string[];
  message: string;
  repairable: boolean;
  /** false for facts that are not a problem (a live QEMU holds the bitmaps; a layer left the chain) */
  problem: boolean;
  repair?: RepairAction;
  /** what the repair loses or what must follow it, in plain words */
  consequence?: string;
}

const base = (p: string) => path.basename(p);
const usable = (b: FactBitmap) => !b.inUse;

/** Checkpoint names oldest first: first appearance walking layers base to top (as checkpoints.ts). */
export function checkpointOrderOf(layers: FactLayer[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  for (let i = layers.length - 1; i >= 0; i--) {
    for (const b of layers[i].bitmaps) {
      if (!seen.has(b.name)) {
        seen.add(b.name);
        order.push(b.name);
      }
    }
  }
  return order;
}

/** index (top = 0) of the lowest layer holding each checkpoint */
function lowestOf(layers: FactLayer[], order: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const name of order) {
    for (let i = layers.length - 1; i >= 0; i--) {
      if (layers[i].bitmaps.some((b) => b.name === name)) {
        m.set(name, i);
        break;
      }
    }
  }
  return m;
}

/** The granularity of checkpoint `name` in the nearest layer below `i` that holds it. */
function granularityBelow(layers: FactLayer[], i: number, name: string): number {
  for (let j = i + 1; j < layers.length; j++) {
    const b = layers[j].bitmaps.find((x) => x.name === name);
    if (b) return b.granularity;
  }
  return 65536;
}

/** Every finding for one chain, top layer first, then chain-wide ones. Pure. */
export function findings(f: RepairFacts): Finding[] {
  const out: Finding[] = [];
  const live = f.lock === 'locked';
  if (f.missingBacking) out.push(missingBackingFinding(f.missingBacking, live));
  out.push(...historyFindings(f));
  const layers = f.layers;

  for (let i = 0; i < layers.length; i++) {
    const L = layers[i];
    if (L.bitmapsStale && L.bitmaps.length) {
      out.push({
        code: 'stale-bitmaps',
        layers: [L.path],
        bitmaps: L.bitmaps.map((b) => b.name),
        message: live
          ? `${base(L.path)}: the header's autoclear bit is cleared while a process holds the image lock: either QEMU is rewriting its bitmap directory right now, or it already discarded these stale bitmaps (${L.bitmaps.map((b) => b.name).join(', ')}); look again with the VM stopped`
          : `${base(L.path)}: its bitmaps (${L.bitmaps.map((b) => b.name).join(', ')}) were left stale by a program that does not understand them (the header's autoclear bit is cleared); QEMU will discard them at the next read-write open`,
        repairable: !live,
        problem: !live,
        repair: live ? undefined : { kind: 'drop-stale', layer: L.path, bitmaps: L.bitmaps.map((b) => b.name) },
        consequence: `what they recorded is lost: checkpoints held only there are gone, and the next backup from them must be full`,
      });
    }
    const inUse = L.bitmaps.filter((b) => b.inUse);
    if (inUse.length && !L.bitmapsStale) {
      if (live) {
        out.push({
          code: 'in-use-live',
          layers: [L.path],
          bitmaps: inUse.map((b) => b.name),
          message: `${base(L.path)}: bitmaps ${inUse.map((b) => b.name).join(', ')} are in use by the process that holds the image lock (a running QEMU): not a problem; their contents are in that QEMU's memory, read them live with --socket`,
          repairable: false,
          problem: false,
        });
      } else {
        out.push({
          code: 'in-use-crashed',
          layers: [L.path],
          bitmaps: inUse.map((b) => b.name),
          message: `${base(L.path)}: bitmaps ${inUse.map((b) => b.name).join(', ')} are marked in-use but no process holds the image lock: a QEMU crashed while it had the image open, so they are inconsistent and can never be trusted`,
          repairable: true,
          problem: true,
          repair: { kind: 'remove-bitmaps', layer: L.path, bitmaps: inUse.map((b) => b.name) },
          consequence: `they are removed; a checkpoint held only there is gone and the next backup from it must be full; where the same checkpoint lives in a lower layer, this layer gets it back filled from its allocation`,
        });
        // A checkpoint this layer was the lowest to hold (where it was made) loses the writes made
        // here since it. Copies of it in the layers above would then look like a checkpoint made
        // when they were, a false clean: they go too, and the checkpoint is gone.
        const madeHere = inUse.filter((b) => !layers.slice(i + 1).some((l) => l.bitmaps.some((x) => x.name === b.name))).map((b) => b.name);
        for (const U of layers.slice(0, i)) {
          const copies = U.bitmaps.filter((b) => madeHere.includes(b.name) && !b.inUse).map((b) => b.name);
          if (!copies.length || U.bitmapsStale) continue;
          out.push({
            code: 'in-use-crashed',
            layers: [U.path],
            bitmaps: copies,
            message: `${base(U.path)}: holds ${copies.join(', ')}, checkpoints made in ${base(L.path)} below, whose bitmaps there are inconsistent (a QEMU crashed while it had that layer open read-write, during a commit or a repair): the writes made in ${base(L.path)} since them are known nowhere`,
            repairable: true,
            problem: true,
            repair: { kind: 'remove-bitmaps', layer: U.path, bitmaps: copies },
            consequence: `they are removed too, so that no checkpoint looks valid without those writes: ${copies.join(', ')} are gone and the next backup from them must be full`,
          });
        }
      }
    }
  }

  // Coverage rules use only what is trustworthy: stale directories and in-use bitmaps are dealt with above.
  const clean: FactLayer[] = layers.map((l) => (l.bitmapsStale ? { ...l, bitmaps: [] } : { ...l, bitmaps: l.bitmaps.filter(usable) }));
  const order = checkpointOrderOf(clean);
  const rank = new Map(order.map((n, k) => [n, k]));
  const lowest = lowestOf(clean, order);
  const blockedByInUse = (i: number) => layers[i].bitmaps.some((b) => b.inUse) || (layers[i].bitmapsStale && layers[i].bitmaps.length > 0);

  for (let i = 0; i < clean.length; i++) {
    const L = clean[i];
    // In-use or stale bitmaps are reported above; once removed (the next round of decideRepairs) the
    // layer is judged by what remains. A live layer cannot be judged offline at all.
    if (blockedByInUse(i)) continue;
    // checkpoints held lower in the chain whose set in this layer is empty
    const missing = order.filter((x) => (lowest.get(x) ?? -1) > i && layerSet(L, x, rank).set.length === 0);
    if (missing.length) {
      const aboveHasBitmaps = clean.slice(0, i).some((l) => l.bitmaps.length > 0);
      const code: FindingCode = L.bitmaps.length === 0 && !aboveHasBitmaps ? 'untracked-overlay' : 'gap';
      // One recording bitmap of the newest missing checkpoint covers every older one (the math takes
      // every bitmap created at or after X); like libvirt, the layer below's recording bitmaps are
      // given their copy too, so each keeps its own name in every layer.
      const newest = missing[missing.length - 1];
      const specs: BitmapSpec[] = [{ name: newest, granularity: granularityBelow(clean, i, newest) }];
      const below = clean.slice(i + 1).find((l) => l.bitmaps.length > 0);
      for (const b of below?.bitmaps ?? []) {
        if (b.auto && !specs.some((s) => s.name === b.name) && !L.bitmaps.some((x) => x.name === b.name)) specs.push({ name: b.name, granularity: b.granularity });
      }
      const what =
        code === 'untracked-overlay'
          ? `${base(L.path)} has no checkpoint bitmaps but sits on top of layers that have them: it was made outside Strata (e.g. qemu-img create -b), so writes made in it are not tracked`
          : `${base(L.path)} lacks bitmaps for ${missing.map((x) => `'${x}'`).join(', ')} that the layers around it carry (a gap): writes made while it was the active layer are not tracked`;
      out.push({
        code,
        layers: [L.path],
        bitmaps: missing,
        message: `${what}; changes since ${missing.join(', ')} are unknown`,
        repairable: !live && L.format === 'qcow2',
        problem: true,
        repair: !live && L.format === 'qcow2' ? { kind: 'bitmaps-from-allocation', layer: L.path, bitmaps: specs } : undefined,
        consequence: live
          ? `the image lock is held: repair it with the VM stopped`
          : `the layer sits above the layers holding these checkpoints, so it was created after them: what is allocated in it (${L.allocatedBytes} bytes, rounded out to the granularity) is a correct, conservative "changes since" for each`,
      });
      continue;
    }
    const needsCover = order.some((x) => (lowest.get(x) ?? -1) > i);
    // the active layer's disabled newest bitmap gets the allocation merged in by its own repair
    if (i === 0 && disabledNewest(clean, rank)) continue;
    if (needsCover && L.bitmaps.length && L.uncoveredBytes !== 0 && L.allocatedBytes > 0) {
      const newest = newestOf(L, rank);
      out.push({
        code: 'uncovered-allocation',
        layers: [L.path],
        bitmaps: [newest.name],
        message: `${base(L.path)} holds ${L.uncoveredBytes ?? 'an unknown number of'} bytes written that its bitmaps do not cover: the layer was written before its bitmaps were created`,
        repairable: !live,
        problem: true,
        repair: live ? undefined : { kind: 'merge-allocation', layer: L.path, bitmap: { name: newest.name, granularity: newest.granularity } },
        consequence: `the layer's allocation is merged into '${newest.name}' (more than was written since some checkpoints, never less)`,
      });
    }
  }

  // The newest bitmap of the active layer disabled: writes since it was disabled were missed.
  const top = clean[0];
  if (top && !blockedByInUse(0)) {
    const newest = disabledNewest(clean, rank);
    if (newest) {
      // Its allocation holds every write the active layer ever took, so merging it in before
      // enabling is a superset of what was missed, except where a write freed clusters: a layer with
      // a backing file keeps a zero cluster there, a base layer keeps nothing.
      const provable = top.backingFile !== null && top.format === 'qcow2';
      out.push({
        code: 'disabled-newest',
        layers: [top.path],
        bitmaps: [newest.name],
        message: `in the active layer ${base(top.path)}, the newest bitmap '${newest.name}' is disabled: writes since it was disabled are not tracked, and enabling it alone would hide them (a false clean)`,
        repairable: provable && !live,
        problem: true,
        repair: provable && !live ? { kind: 'enable-with-allocation', layer: top.path, bitmap: { name: newest.name, granularity: newest.granularity } } : undefined,
        consequence: provable
          ? `the layer's allocation (every write it ever took) is merged into '${newest.name}' and it records again: changes since it are then a superset, larger than needed where the layer was written before the checkpoint`
          : `${base(top.path)} has no backing file, so a write that freed clusters leaves no trace in its allocation: what was missed cannot be proven; the next backup must be full (remove and re-add the bitmap)`,
      });
    }
  }
  return out;
}

const newestOf = (l: FactLayer, rank: Map<string, number>) => [...l.bitmaps].sort((a, b) => (rank.get(b.name) ?? 0) - (rank.get(a.name) ?? 0))[0];

/** The active layer's newest bitmap, when it is disabled. */
function disabledNewest(clean: FactLayer[], rank: Map<string, number>): FactBitmap | null {
  const top = clean[0];
  if (!top || !top.bitmaps.length) return null;
  const n = newestOf(top, rank);
  return n.auto ? null : n;
}

function missingBackingFinding(m: MissingBacking, live: boolean): Finding {
  const fmt = m.backingFormat ?? 'qcow2';
  const cands = m.candidates.map((c) => c.path);
  const chosen = m.chosen;
  const valid = chosen !== null && cands.includes(chosen);
  const listed = m.candidates.length
    ? `candidates next to the image (same format and virtual size): ${m.candidates.map((c) => `${c.path}${c.matchesLastScan ? ' (allocation matches the last scan)' : ''}`).join(', ')}`
    : 'no file next to the image has the same format and virtual size';
  const repairable = valid && !live;
  return {
    code: 'backing-missing',
    layers: [m.layer],
    bitmaps: [],
    message: `${base(m.layer)}: its backing file ${m.path} does not exist (moved or renamed?); ${listed}${chosen && !valid ? `; --backing ${chosen} is not one of them` : ''}${!chosen && cands.length ? '; choose one with --backing PATH' : ''}`,
    repairable,
    problem: true,
    repair: repairable ? { kind: 'rebase-unsafe', layer: m.layer, backing: chosen!, backingFormat: fmt } : undefined,
    consequence: `only the backing name in ${base(m.layer)}'s header changes (qemu-img rebase -u): no data is read or written, so the file chosen must be the one that was moved; the chain's checkpoints are checked again afterwards`,
  };
}

/** Findings only the scan history can tell: layers that left the chain, backings written under an overlay. */
function historyFindings(f: RepairFacts): Finding[] {
  const prev = f.previous;
  if (!prev || prev.length === 0) return [];
  const out: Finding[] = [];
  const now = new Set(f.layers.map((l) => l.path));
  const nowNames = new Set(f.layers.flatMap((l) => l.bitmaps.map((b) => b.name)));
  const gone = prev.filter((l) => !now.has(l.path));
  for (const g of gone) {
    const lost = g.bitmaps.map((b) => b.name).filter((n) => !nowNames.has(n));
    out.push({
      code: 'layer-disappeared',
      layers: [g.path],
      bitmaps: lost,
      message: `layer ${base(g.path)} left the chain since the last scan (committed or deleted outside Strata)${lost.length ? `; checkpoints held only there are gone: ${lost.join(', ')} (the next backup from them must be full)` : ''}`,
      repairable: false,
      problem: false,
    });
  }
  // A layer that was a backing file then and still is, whose contents changed: written under its overlay.
  for (let k = 1; k < prev.length; k++) {
    const p = prev[k];
    const i = f.layers.findIndex((l) => l.path === p.path);
    if (i <= 0) continue;
    if (!now.has(prev[k - 1].path)) continue; // its overlay left the chain: a commit into it, reported above
    const cur = f.layers[i];
    const grew = cur.allocatedBytes !== p.allocatedBytes;
    if (grew) {
      out.push({
        code: 'backing-written-after-overlay',
        layers: [p.path, prev[k - 1].path],
        bitmaps: [],
        message: `backing file ${base(p.path)} was written after ${base(prev[k - 1].path)} was created on top of it (its allocation changed from ${p.allocatedBytes} to ${cur.allocatedBytes} bytes since the last scan): data under the overlay changed, so the disk the chain shows may be corrupt; check it before trusting any backup (Strata does not repair this)`,
        repairable: false,
        problem: true,
      });
    }
  }
  return out;
}

/** Exit 2 when something is found that cannot be repaired. */
export function unrepairable(list: Finding[]): Finding[] {
  return list.filter((x) => x.problem && !x.repairable);
}
