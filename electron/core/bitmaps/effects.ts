// What a bitmap change does to the chain's checkpoints, before it is made: the checkpoint rules run
// on the chain as the change would leave it (the changed layer's bitmaps replaced in memory). Clearing
// or removing one bitmap can make older checkpoints unknown (their writes in that layer were recorded
// only there); the confirmation must say so, not leave it for the next scan.
import path from 'node:path';
import { ChainContents, checkpointReports, since } from '../checkpoints.ts';
import { humanBytes } from '../units.ts';
import type { Chain, Layer } from '../qcow2/chain.ts';
import { union, uncoveredBytes, EMPTY, type ExtentList } from '../extents.ts';
import { PlannedContents, synthEntry } from '../repair/plan.ts';
import type { BitmapOpSpec, CheckpointEffect } from './contract.ts';

/** The layer's bitmaps and the extents the change gives them, or null when the change is not about this chain. */
function applyOp(contents: ChainContents, layer: Layer, op: BitmapOpSpec): { bitmaps: Layer['bitmaps']; synth: Map<string, ExtentList> } {
  const synth = new Map<string, ExtentList>();
  const key = (name: string) => `${layer.path}\0${name}`;
  let bitmaps = layer.bitmaps;
  switch (op.op) {
    case 'add': {
      const g = op.granularity ?? layer.bitmaps[0]?.granularity ?? 65536;
      bitmaps = [...bitmaps, synthEntry(op.name, g, !op.disabled, (bitmaps.at(-1)?.index ?? -1) + 1)];
      synth.set(key(op.name), EMPTY);
      break;
    }
    case 'remove':
      bitmaps = bitmaps.filter((b) => b.name !== op.name);
      break;
    case 'enable':
    case 'disable':
      bitmaps = bitmaps.map((b) => (b.name === op.name ? { ...b, auto: op.op === 'enable', flags: op.op === 'enable' ? b.flags | 2 : b.flags & ~2 } : b));
      break;
    case 'clear':
      synth.set(key(op.name), EMPTY);
      break;
    case 'merge': {
      const target = bitmaps.find((b) => b.name === op.target);
      if (!target) break;
      const parts = [contents.bitmap(layer, target)];
      for (const s of op.sources) {
        // A source this chain cannot read (a node of another QEMU) only adds bits: leaving it out
        // can only make the answer more cautious.
        const from = s.where === null ? layer : contents.chain.layers.find((l) => l.path === path.resolve(s.where!));
        const bm = from?.bitmaps.find((b) => b.name === s.name);
        if (from && bm) parts.push(contents.bitmap(from, bm));
      }
      synth.set(key(op.target), union(parts));
      break;
    }
  }
  return { bitmaps, synth };
}

/**
 * Every checkpoint of the chain whose state or size the change alters (or that it creates or ends),
 * in creation order. `layerPath`: the layer the change is made in; not in the chain: no effects.
 */
export function bitmapChangeEffects(contents: ChainContents, layerPath: string, op: BitmapOpSpec): CheckpointEffect[] {
  const layer = contents.chain.layers.find((l) => l.path === layerPath);
  if (!layer) return [];
  const { bitmaps, synth } = applyOp(contents, layer, op);
  const simChain: Chain = { image: contents.chain.image, layers: contents.chain.layers.map((l) => (l === layer ? { ...l, bitmaps } : l)), close() {} };
  const planned = new PlannedContents(simChain, synth, contents);
  const before = checkpointReports(contents);
  const after = checkpointReports(planned);
  // A bitmap change never makes the disk's changes since a checkpoint fewer: where the rules would
  // still call it ok with fewer bytes marked, what the change drops was the only record of those
  // writes (a removed or cleared bitmap the rules cannot miss afterwards). That is unknown, not ok.
  // The one exception is the bitmap cleared itself: its checkpoint moves to now, by request.
  for (const a of after) {
    const b = before.find((c) => c.name === a.name);
    if (!b || b.state !== 'ok' || a.state !== 'ok' || (op.op === 'clear' && a.name === op.name)) continue;
    const lost = uncoveredBytes(since(contents, a.name).extents!, since(planned, a.name).extents!);
    if (lost > 0) {
      a.state = 'unknown';
      a.dirtyBytes = null;
      a.problems = [...a.problems, `the change drops ${humanBytes(lost)} of the changes recorded since checkpoint '${a.name}', and no other bitmap holds them`];
    }
  }
  const out: CheckpointEffect[] = [];
  for (const name of new Set([...before.map((c) => c.name), ...after.map((c) => c.name)])) {
    const b = before.find((c) => c.name === name);
    const a = after.find((c) => c.name === name);
    const was = b ? { state: b.state, dirtyBytes: b.dirtyBytes } : null;
    const becomes = a ? { state: a.state, dirtyBytes: a.dirtyBytes } : null;
    if (was?.state === becomes?.state && was?.dirtyBytes === becomes?.dirtyBytes) continue;
    // The reasons the change brings, not the ones the checkpoint already had.
    const problems = (a?.problems ?? []).filter((p) => !(b?.problems ?? []).includes(p));
    out.push({ name, before: was, after: becomes, problems });
  }
  return out;
}
