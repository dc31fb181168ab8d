// Commit the active layer into its backing and keep every checkpoint (the seed thread's plan, and
// libvirt's). What a commit does to bitmaps, measured on QEMU 7.2: the top's own bitmaps are not
// carried down, and a base bitmap left recording marks every cluster the commit copies.
//
// Seed scheme: the base's recording bitmaps are disabled for the commit (they keep exactly what
// they had), the top's bitmaps are carried into the base (same name and granularity, created
// there if missing, merged from the top's), and the checkpoints go on as before. libvirt's scheme:
// the base's bitmaps keep recording through the commit (over-approximate, still safe) and the
// top's are carried the same way.
//
// The steps, for an active commit:
//   1. disable the base bitmaps that will be disabled (seed scheme), each journaled with its undo;
//   2. block-commit, until READY (a rollback cancels it: no pivot);
//   3. at READY, one transaction: a temporary recording bitmap on the base (it catches every write
//      from here to the end: the mirror's last copies and the guest's writes after the pivot), the
//      missing bitmaps created disabled in the base, and each top bitmap merged into the base's;
//   4. job-complete (the pivot: irreversible);
//   5. one transaction: every bitmap that records from now on is enabled and gets the temporary
//      bitmap merged in, so the window between the pivot and its enabling is covered;
//   6. the temporary bitmap removed.
//
// Disabling a base bitmap B is safe only when the top's bitmaps that count for B's checkpoint
// (B itself and every newer one) cover everything allocated in the top: every cluster allocated
// there was written after the top was made. Where they do not (an overlay made outside Strata, a
// bitmap added after writes), or where the top's allocation cannot be read, B keeps recording
// during the commit, so it marks every cluster the commit brings down. Never a false clean.
import type { QmpClient } from '../qmp/client.ts';
import { nodeBitmaps, queryNamedNodes, type NodeBitmap } from '../qmp/named-nodes.ts';
import { blockGraph } from '../connections/block-graph.ts';
import { readLiveNode } from '../bitmaps/live-contents.ts';
import { union, uncoveredBytes, type ExtentList } from '../extents.ts';
import type { NewPlan, PlanTarget } from './types.ts';
import { StrataError } from '../errors.ts';
import { humanBytes } from '../units.ts';
import type { CommitEffects } from '../contract.ts';
import { SWITCH_PREFIX } from '../bitmaps/temporary.ts';

export type CommitScheme = 'seed' | 'libvirt';

/** A bitmap as query-named-block-nodes shows it (QEMU's count is not needed here). */
export type LiveBitmapFacts = Omit<NodeBitmap, 'count'>;

/** What the plan is decided from: both nodes' bitmaps in creation order, and the top's contents. */
export interface CommitFacts {
  scheme: CommitScheme;
  top: { node: string; file: string; bitmaps: LiveBitmapFacts[] };
  base: { node: string; file: string; bitmaps: LiveBitmapFacts[] };
  /** the top's allocation and its bitmaps' contents, or why they could not be read */
  topContents: { allocation: ExtentList; bitmaps: Map<string, ExtentList> } | { unreadable: string };
}

export interface CommitDecision {
  effects: CommitEffects;
  /** the temporary bitmap's granularity, or null when no temporary bitmap is needed */
  tempGranularity: number | null;
}

/** The pure part: which bitmaps are disabled, carried, re-enabled. No I/O; tested without QEMU. */
export function decideCommit(f: CommitFacts): CommitDecision {
  for (const [where, list] of [
    [f.top.file, f.top.bitmaps],
    [f.base.file, f.base.bitmaps],
  ] as const) {
    const busy = list.find((b) => b.busy);
    if (busy) throw new StrataError('E_BUSY', `${where}: bitmap '${busy.name}' is busy (an export or a job is using it); end that first, then commit`, { file: where });
  }
  const valid = f.top.bitmaps.filter((b) => !b.inconsistent);
  const lost = f.top.bitmaps
    .filter((b) => b.inconsistent)
    .map((b) => ({ name: b.name, why: `inconsistent in ${f.top.file} (left in-use by a QEMU that did not store it): its contents cannot be trusted, so it is not carried` }));
  const inBase = new Map(f.base.bitmaps.map((b, i) => [b.name, { b, rank: i }]));
  // Creation order across the chain: the base's bitmaps, then the top's names the base lacks.
  const rank = new Map<string, number>(f.base.bitmaps.map((b, i) => [b.name, i]));
  for (const b of f.top.bitmaps) if (!rank.has(b.name)) rank.set(b.name, rank.size);

  const carried: CommitEffects['carried'] = valid.map((b) => {
    const existing = inBase.get(b.name)?.b;
    return { name: b.name, granularity: existing?.granularity ?? b.granularity, persistent: existing?.persistent ?? b.persistent, created: !existing, recordsAfter: b.recording || (existing?.recording ?? false) };
  });

  const disabled: string[] = [];
  const keptRecording: CommitEffects['keptRecording'] = [];
  for (const b of f.base.bitmaps) {
    if (!b.recording || b.inconsistent) continue;
    if (f.scheme === 'libvirt') {
      keptRecording.push({ name: b.name, why: "libvirt's scheme: it keeps recording through the commit and so also marks what the commit copies" });
      continue;
    }
    const why = coverageProblem(f, b.name, rank, valid);
    if (why) keptRecording.push({ name: b.name, why: `${why}, so it keeps recording through the commit and marks everything the commit copies (more than was written, never less)` });
    else disabled.push(b.name);
  }

  // After the pivot every bitmap disabled for the commit records again, as before it. (Leaving one
  // disabled would make "changes since" it depend on the directory order, which QEMU does not keep
  // for bitmaps created in one session; a recording one covers its layer by itself.)
  const topNames = new Set(valid.map((b) => b.name));
  const reEnabled = [...disabled];
  const survive = [...rank.keys()].filter((n) => !lost.some((l) => l.name === n) && (inBase.has(n) || topNames.has(n)));
  const enableAfter = [...new Set([...reEnabled, ...carried.filter((c) => c.recordsAfter && !(inBase.get(c.name)?.b.recording && !disabled.includes(c.name))).map((c) => c.name)])];
  const mergeTempInto = [...new Set([...reEnabled, ...carried.filter((c) => c.recordsAfter).map((c) => c.name)])];
  const needTemp = mergeTempInto.length > 0 && (disabled.length > 0 || carried.length > 0);
  const grans = mergeTempInto.map((n) => carried.find((c) => c.name === n)?.granularity ?? inBase.get(n)!.b.granularity);
  return {
    effects: {
      scheme: f.scheme,
      top: f.top.file,
      base: f.base.file,
      active: f.base.file,
      disabledDuringCommit: disabled,
      keptRecording,
      carried,
      lost,
      reEnabled,
      enabledAfter: enableAfter,
      checkpointsKept: survive,
    },
    tempGranularity: needTemp ? Math.min(...grans) : null,
  };
}

/** Why disabling base bitmap `name` during the commit could lose writes made in the top, or null. */
function coverageProblem(f: CommitFacts, name: string, rank: Map<string, number>, valid: LiveBitmapFacts[]): string | null {
  const tc = f.topContents;
  if ('unreadable' in tc) return `what the top holds could not be read (${tc.unreadable})`;
  const r = rank.get(name)!;
  const counting = valid.filter((b) => rank.get(b.name)! >= r);
  if (counting.length === 0) {
    if (tc.allocation.count === 0) return 'the top has no bitmap that would record new writes for it';
    return `the top has no bitmap for checkpoint '${name}' or a later one (it was made outside Strata?)`;
  }
  const missing = uncoveredBytes(tc.allocation, union(counting.map((b) => tc.bitmaps.get(b.name)!)));
  if (missing > 0) return `the top holds ${humanBytes(missing)} written that none of its bitmaps for checkpoint '${name}' covers`;
  if (!counting.some((b) => b.recording)) return `none of the top's bitmaps for checkpoint '${name}' is recording`;
  return null;
}

/** The node below `device` in the block graph (the commit's base), or null. */
async function backingOf(qmp: QmpClient, device: string): Promise<string | null> {
  const g = await blockGraph(qmp);
  return g.edges.find((e) => e.parent === device && e.role === 'backing')?.child ?? null;
}

export interface CommitPlanOptions {
  scheme?: CommitScheme;
  speed?: number;
  /** for reading the top's contents over a private NBD server */
  runtimeDir: string;
}

/** Read the facts from QEMU, decide, and lay out the journaled steps. Sends nothing that changes anything. */
export async function planCommitWithBitmaps(qmp: QmpClient, target: PlanTarget, device: string, jobId: string, opts: CommitPlanOptions): Promise<NewPlan & { effects: CommitEffects }> {
  const scheme = opts.scheme ?? 'seed';
  const nodes = await queryNamedNodes(qmp);
  const topNode = nodes.find((n) => n['node-name'] === device);
  if (!topNode) throw new StrataError('E_BAD_INPUT', `${qmp.path}: no block node named '${device}'`, { file: qmp.path });
  const base = await backingOf(qmp, device);
  if (!base) throw new StrataError('E_BAD_INPUT', `${topNode.file}: node '${device}' has no backing node to commit into`, { file: topNode.file });
  const baseNode = nodes.find((n) => n['node-name'] === base);
  const topBitmaps = nodeBitmaps(topNode);
  const baseBitmaps = nodeBitmaps(baseNode);
  let topContents: CommitFacts['topContents'];
  if (scheme === 'libvirt') topContents = { unreadable: 'not needed' };
  else {
    try {
      const r = await readLiveNode(qmp, device, { bitmaps: topBitmaps.filter((b) => !b.inconsistent && !b.busy).map((b) => b.name), allocation: true }, { runtimeDir: opts.runtimeDir });
      topContents = { allocation: r.allocation!, bitmaps: new Map(r.bitmaps.map((b) => [b.name, b.extents])) };
    } catch (e) {
      topContents = { unreadable: (e as Error).message };
    }
  }
  const { effects, tempGranularity } = decideCommit({
    scheme,
    top: { node: device, file: topNode.file, bitmaps: topBitmaps },
    base: { node: base, file: baseNode.file, bitmaps: baseBitmaps },
    topContents,
  });

  const temp = `${SWITCH_PREFIX}${jobId}`;
  const steps: NewPlan['steps'] = [];
  for (const name of effects.disabledDuringCommit) {
    steps.push({
      label: `disable '${name}' in ${baseNode.file}`,
      spec: {
        kind: 'qmp',
        command: { execute: 'block-dirty-bitmap-disable', arguments: { node: base, name } },
        undo: { execute: 'block-dirty-bitmap-enable', arguments: { node: base, name } },
        check: { bitmap: { node: base, name, recording: false } },
      },
    });
  }
  steps.push({
    label: `commit ${device} into its backing, until READY`,
    spec: { kind: 'job', jobId, start: { execute: 'block-commit', arguments: { device, ...(opts.speed ? { speed: opts.speed } : {}) } }, until: 'ready' },
  });
  if (tempGranularity !== null || effects.carried.length) {
    const actions: { type: string; data: Record<string, unknown> }[] = [];
    const undo: { type: string; data: Record<string, unknown> }[] = [];
    if (tempGranularity !== null) {
      actions.push({ type: 'block-dirty-bitmap-add', data: { node: base, name: temp, granularity: tempGranularity, persistent: false } });
      undo.push({ type: 'block-dirty-bitmap-remove', data: { node: base, name: temp } });
    }
    // QEMU stores bitmaps created in one session newest first; adding them in reverse makes the
    // base's directory list them in the top's creation order, which "changes since" relies on.
    for (const c of effects.carried.filter((x) => x.created).reverse()) {
      actions.push({ type: 'block-dirty-bitmap-add', data: { node: base, name: c.name, granularity: c.granularity, persistent: c.persistent, disabled: true } });
      undo.push({ type: 'block-dirty-bitmap-remove', data: { node: base, name: c.name } });
    }
    for (const c of effects.carried) actions.push({ type: 'block-dirty-bitmap-merge', data: { node: base, target: c.name, bitmaps: [{ node: device, name: c.name }] } });
    const checked = tempGranularity !== null ? temp : effects.carried.find((c) => c.created)?.name;
    steps.push({
      label: `carry ${effects.carried.length ? effects.carried.map((c) => `'${c.name}'`).join(', ') : 'no bitmap'} into ${baseNode.file}${tempGranularity !== null ? ', and start a temporary bitmap that covers the switch-over' : ''}`,
      spec: {
        kind: 'qmp',
        command: { execute: 'transaction', arguments: { actions } },
        // A merge into a bitmap the base already had is not taken back: it only adds marks.
        undo: undo.length ? { execute: 'transaction', arguments: { actions: undo } } : 'nothing-to-undo',
        check: checked ? { bitmap: { node: base, name: checked, present: true } } : null,
      },
    });
  }
  steps.push({ label: `complete the commit: the disk switches over to ${baseNode.file}`, spec: { kind: 'job-complete', jobId } });
  if (tempGranularity !== null) {
    const actions: { type: string; data: Record<string, unknown> }[] = [];
    for (const name of effects.enabledAfter) actions.push({ type: 'block-dirty-bitmap-enable', data: { node: base, name } });
    for (const name of mergeTargets(effects)) actions.push({ type: 'block-dirty-bitmap-merge', data: { node: base, target: name, bitmaps: [temp] } });
    const first = effects.enabledAfter[0] ?? null;
    steps.push({
      label: `${effects.enabledAfter.length ? `enable ${effects.enabledAfter.map((n) => `'${n}'`).join(', ')} in ${baseNode.file}, ` : ''}add what was written during the switch-over`,
      spec: { kind: 'qmp', command: { execute: 'transaction', arguments: { actions } }, undo: null, check: first ? { bitmap: { node: base, name: first, recording: true } } : null },
    });
    steps.push({
      label: `remove the temporary bitmap '${temp}'`,
      spec: { kind: 'qmp', command: { execute: 'block-dirty-bitmap-remove', arguments: { node: base, name: temp } }, undo: null, check: { bitmap: { node: base, name: temp, present: false } } },
    });
  }
  return { kind: 'commit-with-bitmaps', summary: summarize(effects, device), target, steps, effects };
}

function mergeTargets(e: CommitEffects): string[] {
  return [...new Set([...e.reEnabled, ...e.carried.filter((c) => c.recordsAfter).map((c) => c.name)])];
}

const list = (names: string[]) => names.map((n) => `'${n}'`).join(', ');

function summarize(e: CommitEffects, device: string): string {
  const parts = [`commit ${device} into ${e.base} (${e.scheme === 'seed' ? "the seed thread's scheme" : "libvirt's scheme"})`];
  if (e.disabledDuringCommit.length) parts.push(`${list(e.disabledDuringCommit)} disabled during the commit`);
  if (e.keptRecording.length) parts.push(`${list(e.keptRecording.map((k) => k.name))} recording throughout`);
  if (e.carried.length) parts.push(`${list(e.carried.map((c) => c.name))} carried from the top`);
  if (e.lost.length) parts.push(`${list(e.lost.map((l) => l.name))} lost`);
  return parts.join('; ');
}
