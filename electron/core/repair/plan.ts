// From findings to a repair plan: which actions (pure: decideRepairs), the exact tool invocations of
// each step, and "changes since" every checkpoint before and after, computed by the checkpoint math
// itself on the chain as it will be (a simulation over the real files plus the bitmaps the plan
// creates), so the preview cannot promise what the repair will not deliver.
//
// Offline route, metadata only: Strata writes a brand-new scratch qcow2 in its runtime folder holding
// one bitmap made of the layer's allocated extents, rounded out to the granularity (scratch.ts; the
// measured alternative, qemu-io write -z of every extent into a scratch, costs seconds for 16384
// extents); then `qemu-img bitmap --add --merge` puts it into the user's layer. QEMU itself writes the
// user's file; guest data is never read.
import path from 'node:path';
import { ChainContents, checkpointReports } from '../checkpoints.ts';
import type { Chain, Layer } from '../qcow2/chain.ts';
import type { BitmapEntry } from '../qcow2/bitmaps.ts';
import { ExtentBuilder, union, totalBytes, EMPTY, type ExtentList } from '../extents.ts';
import type { NewPlan, StepSpec } from '../plans/types.ts';
import { findings, type Finding, type RepairAction, type RepairFacts, type FactLayer } from './findings.ts';

export const REPAIR_KIND = 'repair';
export const SCRATCH_BITMAP = 'strata-allocation';
/**
 * The one step Strata does itself: `strata:write-allocation-bitmap --layer L --granularity G --name N
 * SCRATCH` reads L's allocation (metadata only) and writes SCRATCH, a new qcow2 holding only bitmap N
 * with that allocation rounded out to G (scratch.ts). QEMU then merges it into the layer.
 */
export const SCRATCH_COMMAND = 'strata:write-allocation-bitmap';

const key = (a: RepairAction) => JSON.stringify(a);

/** The model of the chain after some actions: what the rules see next (pure). */
export function applyToFacts(f: RepairFacts, acts: RepairAction[]): RepairFacts {
  const layers: FactLayer[] = f.layers.map((l) => ({ ...l, bitmaps: l.bitmaps.map((b) => ({ ...b })) }));
  const at = (p: string) => layers.find((l) => l.path === p)!;
  for (const a of acts) {
    if (a.kind === 'rebase-unsafe') continue;
    const L = at(a.layer);
    if (a.kind === 'remove-bitmaps') {
      L.bitmaps = L.bitmaps.filter((b) => !a.bitmaps.includes(b.name));
      L.uncoveredBytes = L.bitmaps.length ? null : 0;
    } else if (a.kind === 'drop-stale') {
      L.bitmaps = [];
      L.bitmapsStale = false;
      L.uncoveredBytes = 0;
    } else if (a.kind === 'bitmaps-from-allocation') {
      for (const s of a.bitmaps) L.bitmaps.push({ name: s.name, granularity: s.granularity, auto: true, inUse: false });
      if (L.uncoveredBytes !== 0) L.uncoveredBytes = null;
      if (L.bitmaps.length === a.bitmaps.length) L.uncoveredBytes = 0;
    } else if (a.kind === 'merge-allocation') {
      L.uncoveredBytes = 0;
    } else if (a.kind === 'enable-with-allocation') {
      const b = L.bitmaps.find((x) => x.name === a.bitmap.name);
      if (b) b.auto = true;
      L.uncoveredBytes = 0;
    }
  }
  return { ...f, layers, missingBacking: acts.some((a) => a.kind === 'rebase-unsafe') ? null : f.missingBacking };
}

/**
 * The actions that repair every repairable finding, including what a first repair uncovers (an
 * inconsistent bitmap removed leaves its layer without bitmaps: it is then filled from its
 * allocation). A missing backing file is repaired alone: the rest of the chain is read after it.
 */
export function decideRepairs(f: RepairFacts): { found: Finding[]; actions: RepairAction[]; after: Finding[] } {
  const found = findings(f);
  const actions: RepairAction[] = [];
  const taken = new Set<string>();
  let model = f;
  let now = found;
  for (let round = 0; round < 4; round++) {
    let next = now.filter((x) => x.repairable && x.repair && !taken.has(key(x.repair))).map((x) => x.repair!);
    if (model.missingBacking) next = next.filter((a) => a.kind === 'rebase-unsafe');
    if (!next.length) break;
    for (const a of next) taken.add(key(a));
    actions.push(...next);
    model = applyToFacts(model, next);
    if (next.some((a) => a.kind === 'rebase-unsafe')) return { found, actions, after: [] };
    now = findings(model);
  }
  return { found, actions, after: now };
}

/** A layer's allocation rounded out to `granularity` and clipped to the virtual size. */
export function roundedAllocation(contents: ChainContents, layer: Layer, granularity: number): ExtentList {
  return roundOut(contents.allocation(layer), granularity, layer.virtualSize);
}

export function roundOut(a: ExtentList, granularity: number, size: number): ExtentList {
  const b = new ExtentBuilder();
  for (let i = 0; i < a.count; i++) b.push(Math.floor(a.starts[i] / granularity) * granularity, Math.min(Math.ceil(a.ends[i] / granularity) * granularity, size));
  return b.finish();
}

/** Reads synthetic bitmaps (those the plan will create or change) from memory, the rest from the files. */
export class PlannedContents extends ChainContents {
  constructor(
    chain: Chain,
    private synth: Map<string, ExtentList>,
    private real: ChainContents,
  ) {
    super(chain);
  }
  override bitmap(layer: Layer, bm: BitmapEntry): ExtentList {
    return this.synth.get(`${layer.path}\0${bm.name}`) ?? super.bitmap(layer, bm);
  }
  /** The contents of a bitmap the plan creates or changes, or undefined when the file's own is used. */
  planned(layer: Layer, name: string): ExtentList | undefined {
    return this.synth.get(`${layer.path}\0${name}`);
  }
  /** the plan changes no allocation: the real chain's, read once */
  override allocation(layer: Layer): ExtentList {
    const real = this.real.chain.layers.find((l) => l.path === layer.path);
    return real ? this.real.allocation(real) : EMPTY; // a layer the plan creates holds nothing yet
  }
}

export interface CheckpointView {
  name: string;
  state: 'ok' | 'unknown' | 'gone';
  dirtyBytes: number | null;
  /** one cell per granularity unit for small disks (at most 64 cells, else buckets): 1 = marked */
  drawing: string | null;
  problems: string[];
}

/**
 * The checkpoints a plan would turn from not-ok before into ok after. What made them unknown (a gap
 * layer, an in-use copy) would not be repaired but vanish with the layer the plan removes, and "ok"
 * afterwards would miss that layer's writes. A plan that does this is refused: repair first.
 */
export function hiddenUnknowns(before: CheckpointView[], after: CheckpointView[]): CheckpointView[] {
  const was = new Map(before.map((v) => [v.name, v]));
  return after.filter((v) => v.state === 'ok' && was.has(v.name) && was.get(v.name)!.state !== 'ok');
}

/** The refusal for such a plan, naming each checkpoint and why it cannot be trusted now. */
export function hiddenUnknownsRefusal(image: string, what: string, before: CheckpointView[], hidden: CheckpointView[]): string {
  const why = (v: CheckpointView) => before.find((b) => b.name === v.name)?.problems[0] ?? 'unknown';
  return `${image}: ${hidden.map((v) => `checkpoint '${v.name}' cannot be trusted now (${why(v)})`).join('; ')}; a ${what} would remove the layer that says so and call ${hidden.length > 1 ? 'them' : 'it'} ok, missing its writes. Run strata repair ${image} first`;
}

export interface RepairStep {
  label: string;
  spec: Extract<StepSpec, { kind: 'tool' }>;
}

export interface RepairPlan {
  image: string;
  found: Finding[];
  actions: RepairAction[];
  /** what the rules would still report after the repair */
  remaining: Finding[];
  steps: RepairStep[];
  /** scratch files the steps create in Strata's runtime folder (removed afterwards) */
  scratch: string[];
  before: CheckpointView[];
  after: CheckpointView[];
  /** plain words: what the repair loses, what must follow */
  consequences: string[];
  /** the allocations the scratch steps need, as read while planning (the runner in the same process uses them) */
  allocations: Map<string, ExtentList>;
  /** the chain as the repair leaves it (the files plus the bitmaps it creates or changes), for the checkpoint math */
  planned: PlannedContents;
}

function draw(marked: ExtentList, size: number, g: number): string {
  const cells = Math.min(64, Math.max(1, Math.ceil(size / g)));
  const cell = size / cells;
  let s = '';
  let k = 0;
  for (let c = 0; c < cells; c++) {
    const a = c * cell;
    const b = Math.min(size, (c + 1) * cell);
    while (k < marked.count && marked.ends[k] <= a) k++;
    s += k < marked.count && marked.starts[k] < b ? '1' : '-';
  }
  return s;
}

export function views(contents: ChainContents, g: number, known?: string[]): CheckpointView[] {
  const size = contents.chain.layers[0]?.virtualSize ?? 0;
  const reports = checkpointReports(contents);
  const out: CheckpointView[] = reports.map((r) => {
    let drawing: string | null = null;
    if (r.state === 'ok') drawing = draw(union(r.sources.map((s) => {
      const layer = contents.chain.layers.find((l) => l.path === s.layer)!;
      return contents.bitmap(layer, layer.bitmaps.find((b) => b.name === s.bitmap)!);
    })), size, g);
    return { name: r.name, state: r.state, dirtyBytes: r.dirtyBytes, drawing, problems: r.problems };
  });
  for (const n of known ?? []) if (!out.some((v) => v.name === n)) out.push({ name: n, state: 'gone', dirtyBytes: null, drawing: null, problems: ['no layer holds it any more'] });
  return out;
}

export function synthEntry(name: string, granularity: number, auto: boolean, index: number): BitmapEntry {
  return { name, index, tableOffset: 0, tableSize: 0, flags: auto ? 2 : 0, type: 1, granularityBits: Math.log2(granularity), granularity, inUse: false, auto, entryOffset: 0 };
}

const qi = (...a: string[]) => ['qemu-img', ...a];

/** The steps, their exact invocations, and the before/after of every checkpoint. */
export function planRepair(contents: ChainContents, facts: RepairFacts, runtimeDir: string, tag: string, only?: (a: RepairAction) => boolean): RepairPlan {
  const chain = contents.chain;
  const decided = decideRepairs(facts);
  const found = decided.found;
  // `only`: the actions this route can take (the live repair takes one kind); the findings whose
  // repair it leaves out stay in `remaining`, and the views after count only what is done.
  const actions = only ? decided.actions.filter(only) : decided.actions;
  const left = only ? found.filter((x) => x.repair && !only(x.repair)) : [];
  const remaining = [...decided.after.filter((x) => !left.includes(x)), ...left];
  const grans = chain.layers.flatMap((l) => l.bitmaps.map((b) => b.granularity));
  const g = grans.length ? Math.min(...grans) : 65536;
  const before = views(contents, g);
  const steps: RepairStep[] = [];
  const scratch: string[] = [];
  const scratchOf = new Map<string, string>();
  const allocations = new Map<string, ExtentList>();
  // The simulated chain: copies of the layers with the bitmaps the plan leaves.
  const sim = new Map<string, Layer>(chain.layers.map((l) => [l.path, { ...l, bitmaps: [...l.bitmaps] }]));
  const synth = new Map<string, ExtentList>();
  let synthIndex = 1 << 20;

  /** The scratch holding `layer`'s allocation at `granularity`: made by the first step that needs it. */
  const fill = (layer: Layer, granularity: number): string => {
    const k = `${layer.path}\0${granularity}`;
    let s = scratchOf.get(k);
    if (s) return s;
    s = path.join(runtimeDir, `repair-${tag}-${scratch.length}.qcow2`);
    scratch.push(s);
    scratchOf.set(k, s);
    const ext = roundedAllocation(contents, layer, granularity);
    allocations.set(layer.path, contents.allocation(layer));
    steps.push({
      label: `write the allocation of ${path.basename(layer.path)} (${ext.count} extents, ${totalBytes(ext)} bytes at ${granularity}-byte granularity) as a bitmap into the scratch image ${path.basename(s)} (a new file Strata writes in its own folder; the layer is only read)`,
      spec: { kind: 'tool', commands: [[SCRATCH_COMMAND, '--layer', layer.path, '--granularity', String(granularity), '--name', SCRATCH_BITMAP, s]], undo: 'nothing-to-undo', check: null },
    });
    return s;
  };
  const simAlloc = (layer: Layer, granularity: number, old: ExtentList | null) => {
    const a = roundedAllocation(contents, layer, granularity);
    return old ? union([old, a]) : a;
  };

  for (const a of actions) {
    if (a.kind === 'rebase-unsafe') {
      const L = chain.layers.find((l) => l.path === a.layer)!;
      steps.push({
        label: `point ${path.basename(a.layer)} at ${a.backing} (header only, qemu-img rebase -u: no data read or written)`,
        spec: {
          kind: 'tool',
          commands: [qi('rebase', '-u', '-f', 'qcow2', '-b', a.backing, '-F', a.backingFormat, a.layer)],
          undo: L.backingFile ? [qi('rebase', '-u', '-f', 'qcow2', '-b', L.backingFile, '-F', a.backingFormat, a.layer)] : null,
          check: { layer: a.layer, backing: a.backing },
        },
      });
      continue;
    }
    const L = chain.layers.find((l) => l.path === a.layer)!;
    const S = sim.get(a.layer)!;
    if (a.kind === 'remove-bitmaps') {
      for (const name of a.bitmaps) {
        steps.push({
          label: `remove the inconsistent bitmap '${name}' from ${path.basename(a.layer)}`,
          spec: { kind: 'tool', commands: [qi('bitmap', '--remove', '-f', 'qcow2', a.layer, name)], undo: null, check: { layer: a.layer, bitmap: name, present: false } },
        });
      }
      S.bitmaps = S.bitmaps.filter((b) => !a.bitmaps.includes(b.name));
    } else if (a.kind === 'drop-stale') {
      steps.push({
        label: `drop the stale bitmaps of ${path.basename(a.layer)} (${a.bitmaps.join(', ')}) and free their clusters (qemu-img check -r leaks opens it read-write, which makes QEMU discard them)`,
        spec: { kind: 'tool', commands: [qi('check', '-q', '-r', 'leaks', '-f', 'qcow2', a.layer)], undo: null, check: { layer: a.layer, stale: false } },
      });
      S.bitmaps = [];
      S.bitmapsStale = false;
    } else if (a.kind === 'bitmaps-from-allocation') {
      for (const b of a.bitmaps) {
        const s = fill(L, b.granularity);
        steps.push({
          label: `add the recording bitmap '${b.name}' (granularity ${b.granularity}) to ${path.basename(a.layer)}, holding its allocation`,
          spec: {
            kind: 'tool',
            commands: [qi('bitmap', '--add', '-g', String(b.granularity), '--merge', SCRATCH_BITMAP, '-b', s, '-F', 'qcow2', '-f', 'qcow2', a.layer, b.name)],
            undo: [qi('bitmap', '--remove', '-f', 'qcow2', a.layer, b.name)],
            check: { layer: a.layer, bitmap: b.name, present: true, recording: true },
          },
        });
        S.bitmaps = [...S.bitmaps.filter((x) => x.name !== b.name), synthEntry(b.name, b.granularity, true, synthIndex++)];
        synth.set(`${a.layer}\0${b.name}`, simAlloc(L, b.granularity, null));
      }
    } else if (a.kind === 'merge-allocation' || a.kind === 'enable-with-allocation') {
      const b = a.bitmap;
      const s = fill(L, b.granularity);
      const enable = a.kind === 'enable-with-allocation';
      steps.push({
        label: enable
          ? `merge the allocation of ${path.basename(a.layer)} into '${b.name}' and enable it (it then covers every write it missed while disabled)`
          : `merge the allocation of ${path.basename(a.layer)} into '${b.name}'`,
        spec: {
          kind: 'tool',
          commands: [qi('bitmap', '--merge', SCRATCH_BITMAP, '-b', s, '-F', 'qcow2', ...(enable ? ['--enable'] : []), '-f', 'qcow2', a.layer, b.name)],
          // More bits only ever makes "changes since" larger: the merge may stay; the enable is undone.
          undo: enable ? [qi('bitmap', '--disable', '-f', 'qcow2', a.layer, b.name)] : 'nothing-to-undo',
          check: enable ? { layer: a.layer, bitmap: b.name, recording: true } : null,
        },
      });
      const cur = S.bitmaps.find((x) => x.name === b.name)!;
      const old = synth.get(`${a.layer}\0${b.name}`) ?? contents.bitmap(L, cur);
      S.bitmaps = S.bitmaps.map((x) => (x.name === b.name ? { ...x, auto: enable ? true : x.auto, flags: enable ? x.flags | 2 : x.flags } : x));
      synth.set(`${a.layer}\0${b.name}`, simAlloc(L, b.granularity, old));
    }
  }
  const simChain: Chain = { image: chain.image, layers: chain.layers.map((l) => sim.get(l.path)!), close() {} };
  const known = before.map((v) => v.name);
  const planned = new PlannedContents(simChain, synth, contents);
  const after = actions.some((a) => a.kind === 'rebase-unsafe') ? [] : views(planned, g, known);
  const consequences = found.filter((x) => x.repairable && x.consequence).map((x) => `${x.code}: ${x.consequence}`);
  for (const v of after) if (v.state === 'gone') consequences.push(`checkpoint '${v.name}' is gone after the repair: the next backup from it must be full`);
  return { image: chain.image, found, actions, remaining, steps, scratch, before, after, consequences, allocations, planned };
}

export function summaryOf(p: RepairPlan): string {
  const codes = [...new Set(p.found.filter((x) => x.repairable).map((x) => x.code))];
  return `repair ${path.basename(p.image)}: ${codes.join(', ') || 'nothing to repair'} (${p.steps.length} steps)`;
}

export function toNewPlan(p: RepairPlan): NewPlan {
  return { kind: REPAIR_KIND, summary: summaryOf(p), target: { socket: '', image: p.image, daemonPid: null }, steps: p.steps.map((s) => ({ label: s.label, spec: s.spec })) };
}
