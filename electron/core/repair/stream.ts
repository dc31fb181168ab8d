// A stream that keeps the checkpoints (offline): the data of the layers between the top and a base
// (or all of them) pulled into the top, `qemu-img rebase` (safe mode: only what differs from the new
// backing is copied), and, in the same journaled plan, every valid bitmap of the layers that leave the
// chain carried into the top (created there if missing, merged from each copy).
//
// Two traps, both measured on QEMU 7.2:
// - `qemu-img rebase` marks what it copies in every recording bitmap of the top, although the disk's
//   contents do not change: every "changes since" would then hold the whole streamed data. So all of
//   the top's bitmaps are disabled during the copy and the recording ones enabled after it.
// - Creation order within a file is its bitmap directory's order (checkpoints.ts), and `qemu-img
//   bitmap --add` appends: a checkpoint carried from the base would rank newer than the top's own
//   ones, and "changes since" the carried one would leave out what the top's own bitmaps hold. So the
//   top's bitmaps that must come after a carried one are moved behind it (copied to a temporary
//   bitmap, removed, added again after it, merged back), and the top's directory ends in the chain's
//   creation order.
import path from 'node:path';
import type { ChainContents } from '../checkpoints.ts';
import { checkpointOrder } from '../checkpoints.ts';
import type { Chain, Layer } from '../qcow2/chain.ts';
import type { BitmapEntry } from '../qcow2/bitmaps.ts';
import { union, type ExtentList } from '../extents.ts';
import type { NewPlan } from '../plans/types.ts';
import { KEEP_PREFIX } from '../bitmaps/temporary.ts';
import { PlannedContents, views, synthEntry, hiddenUnknowns, hiddenUnknownsRefusal, type CheckpointView, type RepairStep } from './plan.ts';

export const STREAM_KIND = 'stream';

export interface StreamPlan {
  image: string;
  /** the layer that stays as the top's backing, or null: the top becomes standalone */
  base: string | null;
  /** the layers whose data is pulled into the top and which leave the chain, top first */
  removed: string[];
  /** bitmaps of the removed layers carried into the top: created there, or merged into the top's own */
  carried: { name: string; from: string[]; created: boolean }[];
  /** bitmaps of the removed layers that cannot be carried, and why */
  notCarried: { name: string; layer: string; why: string }[];
  refused: string | null;
  steps: RepairStep[];
  before: CheckpointView[];
  after: CheckpointView[];
}

const qi = (...a: string[]) => ['qemu-img', 'bitmap', ...a];
const base = (p: string) => path.basename(p);

/** Reads the top's allocation after the stream as what it holds plus what the removed layers hold (a superset: rebase copies only what differs). */
export class StreamedContents extends PlannedContents {
  constructor(
    chain: Chain,
    synth: Map<string, ExtentList>,
    real: ChainContents,
    private top: string,
    private topAfter: ExtentList,
  ) {
    super(chain, synth, real);
  }
  override allocation(layer: Layer): ExtentList {
    return layer.path === this.top ? this.topAfter : super.allocation(layer);
  }
}

export function planStream(contents: ChainContents, o: { base: string | null; lock: 'free' | 'locked' }): StreamPlan {
  const chain = contents.chain;
  const top = chain.layers[0];
  const baseIdx = o.base === null ? chain.layers.length : chain.layers.findIndex((l) => l.path === o.base);
  const removedLayers = chain.layers.slice(1, Math.max(1, baseIdx));
  const baseLayer = o.base === null ? null : (chain.layers[baseIdx] ?? null);
  const plan: StreamPlan = { image: top.path, base: baseLayer?.path ?? o.base, removed: removedLayers.map((l) => l.path), carried: [], notCarried: [], refused: null, steps: [], before: [], after: [] };
  const g0 = top.bitmaps[0]?.granularity ?? removedLayers.flatMap((l) => l.bitmaps)[0]?.granularity ?? 65536;
  plan.before = views(contents, g0);

  if (o.lock === 'locked') plan.refused = `${top.path}: another process (a running QEMU) holds the image lock; stream it live there (strata stream --socket PATH --node NODE) instead`;
  else if (top.format !== 'qcow2') plan.refused = `${top.path}: a ${top.format} image has no backing file to stream from`;
  else if (chain.layers.length < 2) plan.refused = `${top.path}: has no backing file; there is nothing to stream`;
  else if (o.base !== null && baseIdx < 0) plan.refused = `--base ${o.base}: not a layer of ${top.path}'s chain (${chain.layers.map((l) => base(l.path)).join(' -> ')})`;
  else if (o.base !== null && baseIdx === 0) plan.refused = `--base ${o.base}: is the top itself`;
  else if (removedLayers.length === 0) plan.refused = `--base ${o.base}: is the top's own backing file; there is nothing between them to stream`;
  else if (top.bitmapsStale) plan.refused = `${top.path}: its bitmaps are stale (QEMU will discard them); run strata repair first`;
  else if (top.bitmaps.some((b) => b.inUse)) plan.refused = `${top.path}: bitmaps ${top.bitmaps.filter((b) => b.inUse).map((b) => `'${b.name}'`).join(', ')} are in-use (inconsistent); run strata repair first`;
  if (plan.refused) return plan;

  // What each removed layer can give: valid bitmaps only; the rest is named, and the checkpoint math
  // will call what depends on it unknown, as it does now.
  const sources = new Map<string, { layer: Layer; bm: BitmapEntry }[]>();
  for (const l of removedLayers) {
    for (const b of l.bitmaps) {
      const why = l.bitmapsStale ? 'stale: QEMU will discard it' : b.inUse ? 'in-use: inconsistent' : b.type !== 1 ? `unknown type ${b.type}` : null;
      if (why) plan.notCarried.push({ name: b.name, layer: l.path, why });
      else sources.set(b.name, [...(sources.get(b.name) ?? []), { layer: l, bm: b }]);
    }
  }
  const own = new Map(top.bitmaps.map((b) => [b.name, b]));
  // The top's directory afterwards, in the chain's creation order; what already stands in that order stays.
  const final = checkpointOrder(chain).filter((n) => own.has(n) || sources.has(n));
  let keep = 0;
  while (keep < top.bitmaps.length && top.bitmaps[keep].name === final[keep]) keep++;
  const moved = top.bitmaps.slice(keep);
  const keepName = (n: string) => `${KEEP_PREFIX}${n}`;
  const fmtOf = (l: Layer) => l.format;
  const mergeFrom = (name: string) => (sources.get(name) ?? []).map((s) => qi('--merge', s.bm.name, '-b', s.layer.path, '-F', fmtOf(s.layer), '-f', 'qcow2', top.path, name));
  const steps = plan.steps;

  // 1. Nothing in the top records while it is rewritten: the copy would read as changes.
  for (const b of top.bitmaps.slice(0, keep)) {
    if (!b.auto) continue;
    steps.push({
      label: `pause the recording bitmap '${b.name}' of ${base(top.path)} while data is copied into it (the copy is not a change of the disk)`,
      spec: { kind: 'tool', commands: [qi('--disable', '-f', 'qcow2', top.path, b.name)], undo: [qi('--enable', '-f', 'qcow2', top.path, b.name)], check: { layer: top.path, bitmap: b.name, recording: false } },
    });
  }
  // 2. The top's bitmaps that must come after a carried one: set aside.
  for (const b of moved) {
    steps.push({
      label: `copy '${b.name}' of ${base(top.path)} to the temporary bitmap '${keepName(b.name)}' (it is added again after the carried checkpoints, to keep creation order)`,
      spec: {
        kind: 'tool',
        commands: [qi('--add', '-g', String(b.granularity), '--disable', '--merge', b.name, '-f', 'qcow2', top.path, keepName(b.name))],
        undo: [qi('--remove', '-f', 'qcow2', top.path, keepName(b.name))],
        check: { layer: top.path, bitmap: keepName(b.name), present: true },
      },
    });
    steps.push({
      label: `remove '${b.name}' from ${base(top.path)} (its contents are in '${keepName(b.name)}')`,
      spec: {
        kind: 'tool',
        commands: [qi('--remove', '-f', 'qcow2', top.path, b.name)],
        undo: [qi('--add', '-g', String(b.granularity), ...(b.auto ? [] : ['--disable']), '--merge', keepName(b.name), '-f', 'qcow2', top.path, b.name)],
        check: { layer: top.path, bitmap: b.name, present: false },
      },
    });
  }
  // 3. In creation order: the carried ones created, the set-aside ones added again, each merged from every copy.
  const synth = new Map<string, ExtentList>();
  const simBitmaps: BitmapEntry[] = [];
  const recordAfter: string[] = [];
  final.forEach((name, i) => {
    const mine = own.get(name);
    const from = sources.get(name) ?? [];
    const extents = union([...(mine ? [contents.bitmap(top, mine)] : []), ...from.map((s) => contents.bitmap(s.layer, s.bm))]);
    const granularity = mine?.granularity ?? from[0].bm.granularity;
    const records = mine ? mine.auto : from[0].bm.auto;
    if (records) recordAfter.push(name);
    synth.set(`${top.path}\0${name}`, extents);
    simBitmaps.push(synthEntry(name, granularity, records, i));
    if (from.length) plan.carried.push({ name, from: from.map((s) => s.layer.path), created: !mine });
    if (i < keep) {
      if (!from.length) return;
      steps.push({
        label: `merge '${name}' of ${from.map((s) => base(s.layer.path)).join(', ')} into '${name}' of ${base(top.path)}`,
        // More bits only ever makes "changes since" larger: the merge may stay on a rollback.
        spec: { kind: 'tool', commands: mergeFrom(name), undo: 'nothing-to-undo', check: null },
      });
      return;
    }
    const first = mine ? ['--merge', keepName(name)] : ['--merge', from[0].bm.name, '-b', from[0].layer.path, '-F', fmtOf(from[0].layer)];
    const rest = mine ? mergeFrom(name) : mergeFrom(name).slice(1);
    steps.push({
      label: mine
        ? `add '${name}' to ${base(top.path)} again, after the carried checkpoints, from '${keepName(name)}'${from.length ? ` and ${from.map((s) => base(s.layer.path)).join(', ')}` : ''}`
        : `carry '${name}' (granularity ${granularity}) from ${from.map((s) => base(s.layer.path)).join(', ')} into ${base(top.path)}`,
      spec: {
        kind: 'tool',
        commands: [qi('--add', '-g', String(granularity), '--disable', ...first, '-f', 'qcow2', top.path, name), ...rest],
        undo: [qi('--remove', '-f', 'qcow2', top.path, name)],
        check: { layer: top.path, bitmap: name, present: true, recording: false },
      },
    });
  });
  // 4. The data.
  const newBacking = baseLayer ? path.relative(path.dirname(top.path), baseLayer.path) || baseLayer.path : null;
  steps.push({
    label: baseLayer
      ? `copy into ${base(top.path)} the data of ${removedLayers.map((l) => base(l.path)).join(', ')} and point it at ${base(baseLayer.path)} (qemu-img rebase: only what differs from ${base(baseLayer.path)} is copied)`
      : `copy into ${base(top.path)} every cluster it reads from ${removedLayers.map((l) => base(l.path)).join(', ')}, then drop its backing file (qemu-img rebase -b '')`,
    spec: {
      kind: 'tool',
      commands: [['qemu-img', 'rebase', '-f', 'qcow2', '-b', newBacking ?? '', ...(baseLayer ? ['-F', baseLayer.format] : []), top.path]],
      // The top's contents equal the old chain's either way: pointing it back is the undo.
      undo: [['qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b', top.backingFile!, ...(top.backingFormat ? ['-F', top.backingFormat] : []), top.path]],
      check: { layer: top.path, backing: newBacking },
    },
  });
  // 5. Recording again, and the temporary bitmaps gone.
  for (const name of recordAfter) {
    steps.push({
      label: `resume recording in '${name}' of ${base(top.path)}`,
      spec: { kind: 'tool', commands: [qi('--enable', '-f', 'qcow2', top.path, name)], undo: [qi('--disable', '-f', 'qcow2', top.path, name)], check: { layer: top.path, bitmap: name, recording: true } },
    });
  }
  for (const b of moved) {
    steps.push({
      label: `remove the temporary bitmap '${keepName(b.name)}'`,
      spec: { kind: 'tool', commands: [qi('--remove', '-f', 'qcow2', top.path, keepName(b.name))], undo: 'nothing-to-undo', check: { layer: top.path, bitmap: keepName(b.name), present: false } },
    });
  }

  // The chain as it will be: the top with its new bitmaps and data, then the base and what is below it.
  const topAfter = union([contents.allocation(top), ...removedLayers.map((l) => contents.allocation(l))]);
  const simTop: Layer = { ...top, bitmaps: simBitmaps, backingFile: newBacking, backingFormat: baseLayer?.format ?? null };
  const simChain: Chain = { image: top.path, layers: [simTop, ...chain.layers.slice(baseIdx)], close() {} };
  plan.after = views(new StreamedContents(simChain, synth, contents, top.path, topAfter), g0, plan.before.map((v) => v.name));
  return refuseHiddenUnknowns(plan);
}

/** A stream must not make a checkpoint that cannot be trusted now read ok (hiddenUnknowns): such a plan is refused, its steps dropped. */
export function refuseHiddenUnknowns<P extends Pick<StreamPlan, 'image' | 'before' | 'after' | 'refused'> & { steps: unknown[] }>(plan: P): P {
  const hidden = hiddenUnknowns(plan.before, plan.after);
  if (hidden.length && !plan.refused) {
    plan.refused = hiddenUnknownsRefusal(plan.image, 'stream', plan.before, hidden);
    plan.steps = [];
  }
  return plan;
}

export function streamToNewPlan(p: StreamPlan): NewPlan {
  return {
    kind: STREAM_KIND,
    summary: `stream ${p.removed.map((f) => path.basename(f)).join(', ')} into ${path.basename(p.image)}${p.carried.length ? `, carrying ${p.carried.map((c) => c.name).join(', ')}` : ''}`,
    target: { socket: '', image: p.image, daemonPid: null },
    steps: p.steps.map((s) => ({ label: s.label, spec: s.spec })),
  };
}
