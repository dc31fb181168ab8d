// "Changes since" a checkpoint that the bitmaps alone cannot give (an overlay made outside Strata, a
// gap), proven from allocation by the repair capability's own rule: every cluster allocated in a
// layer created after the checkpoint was written after it. The repair's findings and plan
// (repair/findings.ts, plan.ts) are asked what they would do, only simulated (nothing is written), and
// the checkpoint math is run over the chain as that repair would leave it: where it answers, that is
// the backup's dirty set: the checkpoint's bitmaps in the layers that have them, plus the rounded-out
// allocation of the layers the repair would fill. Where it still cannot answer, there is no proof.
import { since, type ChainContents } from '../checkpoints.ts';
import { union, type ExtentList } from '../extents.ts';
import { gatherFacts } from '../repair/facts.ts';
import { planRepair } from '../repair/plan.ts';

export interface AllocationProof {
  /** every byte range changed since the checkpoint (bitmaps and allocation together) */
  extents: ExtentList;
  /** bitmaps of the files that count, merged as they are */
  sources: { layer: string; bitmap: string; granularity: number }[];
  /** what the repair would put into bitmaps: the untracked layers' allocation, rounded out */
  allocation: ExtentList;
  granularity: number;
  /** the layers whose allocation counts */
  layers: string[];
}

/** The proof for `checkpoint` over an offline chain, or null where the repair's rule does not give one. */
export function proveFromAllocation(contents: ChainContents, checkpoint: string): AllocationProof | null {
  const facts = gatherFacts({ chain: contents.chain, contents, missing: null }, { lock: 'free', previous: null });
  // Only simulated: the runtime folder names scratch files the plan would write, none is written.
  const plan = planRepair(contents, facts, '.', 'backup');
  if (plan.actions.some((a) => a.kind === 'rebase-unsafe')) return null;
  let s: ReturnType<typeof since>;
  try {
    s = since(plan.planned, checkpoint);
  } catch {
    return null; // the repair would leave no bitmap of it
  }
  if (!s.extents) return null;
  const sources: AllocationProof['sources'] = [];
  const filled: ExtentList[] = [];
  const layers = new Set<string>();
  let granularity = Infinity;
  for (const src of s.sources) {
    const planned = plan.planned.planned(src.layer, src.bitmap.name);
    if (!planned) {
      sources.push({ layer: src.layer.path, bitmap: src.bitmap.name, granularity: src.bitmap.granularity });
      continue;
    }
    filled.push(planned);
    layers.add(src.layer.path);
    granularity = Math.min(granularity, src.bitmap.granularity);
  }
  if (!filled.length) return null;
  return { extents: s.extents, sources, allocation: union(filled), granularity, layers: [...layers] };
}
