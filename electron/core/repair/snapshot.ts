// A snapshot that keeps the checkpoints (offline): a new overlay on the chain's top and, as one
// journaled plan, the checkpoint bitmaps in it: libvirt's recipe, a recording bitmap of the same
// name and granularity for each valid recording bitmap of the old top, and optionally a new
// checkpoint marking the snapshot time. Every checkpoint Strata calls ok before is ok after, and
// writes in the new top are tracked from its first byte.
import path from 'node:path';
import type { ChainContents } from '../checkpoints.ts';
import type { Chain, Layer } from '../qcow2/chain.ts';
import { EMPTY, type ExtentList } from '../extents.ts';
import type { NewPlan } from '../plans/types.ts';
import { PlannedContents, views, synthEntry, type CheckpointView, type RepairStep } from './plan.ts';
import type { BitmapSpec } from './findings.ts';

export const SNAPSHOT_KIND = 'snapshot';
/** Strata's own step: removes a file a step created (the undo of the overlay's creation). */
export const REMOVE_COMMAND = 'strata:remove-created-file';

export interface SnapshotPlan {
  image: string;
  newTop: string;
  /** bitmaps created (recording) in the new top */
  bitmaps: BitmapSpec[];
  /** why it is refused, when it is */
  refused: string | null;
  /** old recording bitmaps not carried, and why */
  notCarried: { name: string; why: string }[];
  steps: RepairStep[];
  before: CheckpointView[];
  after: CheckpointView[];
}

/** What a snapshot does to the checkpoints, offline or live: the bitmaps the new top gets, what is not carried, the views before and after. */
export function shapeSnapshot(contents: ChainContents, newTop: string, o: { checkpoint?: string | null; backing: string }): Omit<SnapshotPlan, 'steps'> {
  const chain = contents.chain;
  const top = chain.layers[0];
  const bitmaps: BitmapSpec[] = [];
  const notCarried: SnapshotPlan['notCarried'] = [];
  for (const b of top.bitmaps) {
    if (!b.auto) continue;
    if (b.inUse) notCarried.push({ name: b.name, why: 'in-use: inconsistent or held by a running QEMU' });
    else if (top.bitmapsStale) notCarried.push({ name: b.name, why: 'stale: QEMU will discard it' });
    else bitmaps.push({ name: b.name, granularity: b.granularity });
  }
  const g = bitmaps[0]?.granularity ?? top.bitmaps[0]?.granularity ?? 65536;
  if (o.checkpoint) bitmaps.push({ name: o.checkpoint, granularity: g });
  let refused: string | null = null;
  if (top.format !== 'qcow2' && top.format !== 'raw') refused = `${top.path}: unsupported format`;
  else if (o.checkpoint && chain.layers.some((l) => l.bitmaps.some((b) => b.name === o.checkpoint))) refused = `--checkpoint ${o.checkpoint}: the chain already has a bitmap of that name`;
  // The chain as it will be: the new top holds nothing yet, its bitmaps mark nothing yet.
  const synth = new Map<string, ExtentList>(bitmaps.map((b) => [`${newTop}\0${b.name}`, EMPTY]));
  const fake: Layer = { ...top, path: newTop, format: 'qcow2', backingFile: o.backing, backingFormat: top.format, bitmapsStale: false, bitmaps: bitmaps.map((b, i) => synthEntry(b.name, b.granularity, true, (1 << 20) + i)) };
  const simChain: Chain = { image: newTop, layers: [fake, ...chain.layers], close() {} };
  const before = views(contents, g);
  const after = views(new PlannedContents(simChain, synth, contents), g);
  return { image: chain.image, newTop, bitmaps, refused, notCarried, before, after };
}

export function planSnapshot(contents: ChainContents, newTop: string, o: { checkpoint?: string | null; lock: 'free' | 'locked' }): SnapshotPlan {
  const top = contents.chain.layers[0];
  const backing = path.relative(path.dirname(newTop), top.path) || top.path;
  const shape = shapeSnapshot(contents, newTop, { checkpoint: o.checkpoint, backing });
  if (o.lock === 'locked') shape.refused = `${top.path}: another process (a running QEMU) holds the image lock; take a live snapshot there (strata snapshot --socket PATH --node NODE NEW_TOP) instead`;
  const steps: RepairStep[] = [
    {
      label: `create ${path.basename(newTop)} on top of ${path.basename(top.path)}`,
      spec: {
        kind: 'tool',
        commands: [['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', backing, '-F', top.format, newTop]],
        undo: [[REMOVE_COMMAND, newTop]],
        check: { layer: newTop, backing },
      },
    },
  ];
  for (const b of shape.bitmaps) {
    steps.push({
      label: `add the recording bitmap '${b.name}' (granularity ${b.granularity}) to ${path.basename(newTop)}`,
      spec: {
        kind: 'tool',
        commands: [['qemu-img', 'bitmap', '--add', '-g', String(b.granularity), '-f', 'qcow2', newTop, b.name]],
        undo: [['qemu-img', 'bitmap', '--remove', '-f', 'qcow2', newTop, b.name]],
        check: { layer: newTop, bitmap: b.name, present: true, recording: true },
      },
    });
  }
  return { ...shape, steps };
}

export function snapshotToNewPlan(p: SnapshotPlan): NewPlan {
  return {
    kind: SNAPSHOT_KIND,
    summary: `snapshot ${path.basename(p.image)} into ${path.basename(p.newTop)} with ${p.bitmaps.map((b) => b.name).join(', ') || 'no'} bitmaps`,
    target: { socket: '', image: p.newTop, daemonPid: null },
    steps: p.steps.map((s) => ({ label: s.label, spec: s.spec })),
  };
}
