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
import path from 'node:path';
import type { QmpClient } from '../qmp/client.ts';
import { nodeBitmaps, queryNamedNodes, type NodeBitmap } from '../qmp/named-nodes.ts';
import { blockGraph } from '../connections/block-graph.ts';
import { readLiveNode } from '../bitmaps/live-contents.ts';
import { union, uncoveredBytes, type ExtentList } from '../extents.ts';
import { layerSet } from '../checkpoints.ts';
import type { NewPlan, PlanTarget } from './types.ts';
import { StrataError } from '../errors.ts';
import { humanBytes } from '../units.ts';
import type { CommitEffects } from '../contract.ts';
import { SWITCH_PREFIX } from '../bitmaps/temporary.ts';

export type CommitScheme = 'seed' | 'libvirt';

/** A bitmap as query-named-block-nodes shows it (QEMU's count is not needed here). */
export type LiveBitmapFacts = Omit<NodeBitmap, 'count'>;

/** A removed layer's contents: its allocation and its bitmaps' contents, or why they could not be read. */
export type LayerContents = { allocation: ExtentList; bitmaps: Map<string, ExtentList> } | { unreadable: string };

/** A layer below the commit's top and above its base: it leaves the chain with the top. */
export interface RemovedLayerFacts {
  node: string;
  file: string;
  bitmaps: LiveBitmapFacts[];
  contents: LayerContents;
}

/** What the plan is decided from: both nodes' bitmaps in creation order, and the top's contents. */
export interface CommitFacts {
  scheme: CommitScheme;
  top: { node: string; file: string; bitmaps: LiveBitmapFacts[] };
  base: { node: string; file: string; bitmaps: LiveBitmapFacts[] };
  /** the top's allocation and its bitmaps' contents, or why they could not be read */
  topContents: LayerContents;
  /** the layers between the top and the base, top first (absent: the top's backing is the base) */
  between?: RemovedLayerFacts[];
  /** the top is not the active layer: the disk keeps running on `active`, nothing is pivoted */
  intermediate?: { active: string };
}

export interface CommitDecision {
  effects: CommitEffects;
  /** the temporary bitmap's granularity, or null when no temporary bitmap is needed */
  tempGranularity: number | null;
}

/** The pure part: which bitmaps are disabled, carried, re-enabled. No I/O; tested without QEMU. */
export function decideCommit(f: CommitFacts): CommitDecision {
  const removed: RemovedLayerFacts[] = [{ ...f.top, contents: f.topContents }, ...(f.between ?? [])];
  for (const [where, list] of [...removed.map((l) => [l.file, l.bitmaps] as const), [f.base.file, f.base.bitmaps] as const]) {
    const busy = list.find((b) => b.busy);
    if (busy) throw new StrataError('E_BUSY', `${where}: bitmap '${busy.name}' is busy (an export or a job is using it); end that first, then commit`, { file: where });
  }
  // A name inconsistent in any removed layer is carried from none: its writes there cannot be known.
  const lost: CommitEffects['lost'] = [];
  for (const l of removed) {
    for (const b of l.bitmaps.filter((x) => x.inconsistent)) {
      if (!lost.some((x) => x.name === b.name)) lost.push({ name: b.name, why: `inconsistent in ${l.file} (left in-use by a QEMU that did not store it): its contents cannot be trusted, so it is not carried` });
    }
  }
  const isLost = (name: string) => lost.some((x) => x.name === name);
  const validIn = (l: RemovedLayerFacts) => l.bitmaps.filter((b) => !b.inconsistent && !isLost(b.name));
  const inBase = new Map(f.base.bitmaps.map((b, i) => [b.name, { b, rank: i }]));
  // Creation order across the chain: the base's bitmaps, then each layer's new names, bottom up.
  const rank = new Map<string, number>(f.base.bitmaps.map((b, i) => [b.name, i]));
  for (const l of [...removed].reverse()) for (const b of l.bitmaps) if (!rank.has(b.name)) rank.set(b.name, rank.size);

  // Every valid name of the removed layers, in creation order, with the layers it comes from (top first).
  const names = [...rank.keys()].filter((n) => removed.some((l) => validIn(l).some((b) => b.name === n)));
  const carried: CommitEffects['carried'] = names.map((name) => {
    const from = removed.filter((l) => validIn(l).some((b) => b.name === name));
    const first = from[0].bitmaps.find((b) => b.name === name)!;
    const existing = inBase.get(name)?.b;
    const recording = from.some((l) => l.bitmaps.find((b) => b.name === name)!.recording);
    return {
      name,
      granularity: existing?.granularity ?? first.granularity,
      persistent: existing?.persistent ?? first.persistent,
      created: !existing,
      recordsAfter: recording || (existing?.recording ?? false),
      ...(f.between?.length ? { from: from.map((l) => l.file) } : {}),
    };
  });

  const disabled: string[] = [];
  const keptRecording: CommitEffects['keptRecording'] = [];
  for (const b of f.base.bitmaps) {
    if (!b.recording || b.inconsistent) continue;
    if (f.scheme === 'libvirt') {
      keptRecording.push({ name: b.name, why: "libvirt's scheme: it keeps recording through the commit and so also marks what the commit copies" });
      continue;
    }
    const why = removed.map((l, i) => coverageProblem(l, i === 0 && !f.intermediate, b.name, rank, validIn(l), removed.length > 1)).find((x) => x !== null) ?? null;
    if (why) keptRecording.push({ name: b.name, why: `${why}, so it keeps recording through the commit and marks everything the commit copies (more than was written, never less)` });
    else disabled.push(b.name);
  }

  // After the pivot every bitmap disabled for the commit records again, as before it. (Leaving one
  // disabled would make "changes since" it depend on the directory order, which QEMU does not keep
  // for bitmaps created in one session; a recording one covers its layer by itself.)
  const reEnabled = [...disabled];
  const survive = [...rank.keys()].filter((n) => !isLost(n) && (inBase.has(n) || names.includes(n)));
  const enableAfter = [...new Set([...reEnabled, ...carried.filter((c) => c.recordsAfter && !(inBase.get(c.name)?.b.recording && !disabled.includes(c.name))).map((c) => c.name)])];
  refuseUntrusted(f, removed, rank, validIn, inBase, carried, keptRecording, new Set([...enableAfter, ...carried.filter((c) => c.recordsAfter).map((c) => c.name)]));
  const mergeTempInto = [...new Set([...reEnabled, ...carried.filter((c) => c.recordsAfter).map((c) => c.name)])];
  // Nothing writes the base around an intermediate commit's end (no pivot): no temporary bitmap.
  const needTemp = !f.intermediate && mergeTempInto.length > 0 && (disabled.length > 0 || carried.length > 0);
  const grans = mergeTempInto.map((n) => carried.find((c) => c.name === n)?.granularity ?? inBase.get(n)!.b.granularity);
  return {
    effects: {
      scheme: f.scheme,
      top: f.top.file,
      base: f.base.file,
      active: f.intermediate ? f.intermediate.active : f.base.file,
      ...(f.between?.length || f.intermediate ? { removed: removed.map((l) => l.file), intermediate: !!f.intermediate } : {}),
      consistentBefore: [...removed, f.base].map((l) => ({ file: l.file, bitmaps: l.bitmaps.filter((b) => !b.inconsistent).map((b) => b.name) })),
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

/**
 * Never a false clean: a checkpoint that cannot be trusted now must not come out of the commit
 * reading ok. Two causes a commit would hide, each refused naming the checkpoint:
 * - in the base, every bitmap that counts for it is disabled (the checkpoint math's rule: what the
 *   base took while it was the active layer after the newest was disabled is in none of them), and
 *   the commit would make one record again: afterwards nothing would show what is missing;
 * - a removed layer above the one where it was made (its lowest layer holding the name; every removed
 *   layer when the base holds it) took writes after it that nothing catches: caught when a base bitmap
 *   counting for it records through the commit (it marks everything copied), or when the layer's own
 *   bitmaps counting for it cover its allocation (they are carried). Neither: an overlay made outside
 *   Strata, or a gap; strata repair fills the layer's bitmaps from its allocation first.
 */
function refuseUntrusted(
  f: CommitFacts,
  removed: RemovedLayerFacts[],
  rank: Map<string, number>,
  validIn: (l: RemovedLayerFacts) => LiveBitmapFacts[],
  inBase: Map<string, unknown>,
  carried: CommitEffects['carried'],
  keptRecording: CommitEffects['keptRecording'],
  recordsAfter: Set<string>,
): void {
  const recording = new Set(keptRecording.map((k) => k.name));
  const baseNow = { bitmaps: f.base.bitmaps.map((b) => ({ name: b.name, auto: b.recording })) };
  const baseAfter = { bitmaps: [...f.base.bitmaps.map((b) => ({ name: b.name, auto: b.recording || recordsAfter.has(b.name) })), ...carried.filter((c) => c.created).map((c) => ({ name: c.name, auto: c.recordsAfter }))] };
  const problems: string[] = [];
  let disabledOnly = false;
  for (const [name, r] of rank) {
    if (!inBase.has(name) && !carried.some((c) => c.name === name)) continue; // not in the base afterwards: nothing to trust
    const now = layerSet(baseNow, name, rank).set;
    if (now.length && !now.some((b) => b.auto)) {
      // unknown now for the base's own sake; it stays so unless the commit makes a bitmap of it record
      if (!layerSet(baseAfter, name, rank).set.some((b) => b.auto)) continue;
      disabledOnly = true;
      problems.push(`in ${f.base.file} every bitmap covering checkpoint '${name}' is disabled, so what it took after that, while it was the active layer, may be in none of them; the commit would make '${name}' record again and read ok`);
      continue;
    }
    if (f.base.bitmaps.some((b) => recording.has(b.name) && !b.inconsistent && rank.get(b.name)! >= r)) continue;
    let origin = removed.length;
    if (!inBase.has(name)) for (let i = removed.length - 1; i >= 0; i--) if (removed[i].bitmaps.some((b) => b.name === name)) { origin = i; break; }
    const why = removed.slice(0, origin).map((l, i) => coverageProblem(l, i === 0 && !f.intermediate, name, rank, validIn(l), true)).find((x) => x !== null);
    if (why) problems.push(`checkpoint '${name}': ${why}, and no bitmap of the base for it records through the commit, so the commit would bring those writes into the base with nothing marking them`);
  }
  if (!problems.length) return;
  const file = f.top.file;
  const next = disabledOnly
    ? `Remove such a checkpoint first (strata bitmap remove; the next backup from it must be full)${problems.length > 1 ? ', and run strata repair on the chain for the others' : ''}`
    : "Run strata repair on the chain first (it fills the layer's bitmaps from its allocation; a layer below a running VM's top needs the VM stopped)";
  throw new StrataError('E_CHECKPOINT_UNKNOWN', `${file}: ${problems.join('; ')}. ${next}`, { file });
}

/**
 * Why disabling base bitmap `name` during the commit could lose writes made in removed layer `l`,
 * or null. The active top must also have a recording bitmap for it (it takes writes during the copy).
 */
function coverageProblem(l: RemovedLayerFacts, active: boolean, name: string, rank: Map<string, number>, valid: LiveBitmapFacts[], several: boolean): string | null {
  const what = several ? `${l.file}` : 'the top';
  const tc = l.contents;
  if ('unreadable' in tc) return `what ${what} holds could not be read (${tc.unreadable})`;
  const r = rank.get(name)!;
  const counting = valid.filter((b) => rank.get(b.name)! >= r);
  if (counting.length === 0) {
    if (!active && tc.allocation.count === 0) return null; // nothing to copy from it, nothing written there
    if (tc.allocation.count === 0) return `${what} has no bitmap that would record new writes for it`;
    return `${what} has no bitmap for checkpoint '${name}' or a later one (it was made outside Strata?)`;
  }
  const missing = uncoveredBytes(tc.allocation, union(counting.map((b) => tc.bitmaps.get(b.name)!)));
  if (missing > 0) return `${what} holds ${humanBytes(missing)} written that none of its bitmaps for checkpoint '${name}' covers`;
  if (active && !counting.some((b) => b.recording)) return `none of the top's bitmaps for checkpoint '${name}' is recording`;
  return null;
}

/** The chain of format nodes from `device` down its backing edges: [{node, file}], top first. */
export async function nodeChain(qmp: QmpClient, device: string): Promise<{ node: string; file: string }[]> {
  const g = await blockGraph(qmp);
  const out: { node: string; file: string }[] = [];
  for (let n: string | undefined = device; n && !out.some((x) => x.node === n); n = g.edges.find((e) => e.parent === n && e.role === 'backing')?.child) {
    out.push({ node: n, file: g.nodes.find((x) => x.name === n)?.file ?? n });
  }
  return out;
}

/** A layer of the chain named by node name or by file path, or a typed refusal naming it. */
export function pick(chain: { node: string; file: string }[], which: string, what: string): number {
  let i = chain.findIndex((l) => l.node === which);
  if (i < 0 && which.startsWith('/')) i = chain.findIndex((l) => l.file === path.resolve(which));
  if (i < 0) {
    throw new StrataError('E_BAD_INPUT', `${what} ${which}: not a layer of ${chain[0].file}'s chain (its layers: ${chain.map((l) => l.file).join(', ')})`, { file: which.startsWith('/') ? which : chain[0].file });
  }
  return i;
}

export interface CommitPlanOptions {
  scheme?: CommitScheme;
  speed?: number;
  /** for reading the top's contents over a private NBD server */
  runtimeDir: string;
  /** the commit's top (node name or file; default: the device, an active commit) */
  top?: string;
  /** the layer committed into (node name or file; default: the top's backing) */
  base?: string;
}

async function readContents(qmp: QmpClient, node: string, bitmaps: LiveBitmapFacts[], runtimeDir: string): Promise<LayerContents> {
  try {
    const r = await readLiveNode(qmp, node, { bitmaps: bitmaps.filter((b) => !b.inconsistent && !b.busy).map((b) => b.name), allocation: true }, { runtimeDir });
    return { allocation: r.allocation!, bitmaps: new Map(r.bitmaps.map((b) => [b.name, b.extents])) };
  } catch (e) {
    return { unreadable: (e as Error).message };
  }
}

/** Read the facts from QEMU, decide, and lay out the journaled steps. Sends nothing that changes anything. */
export async function planCommitWithBitmaps(qmp: QmpClient, target: PlanTarget, device: string, jobId: string, opts: CommitPlanOptions): Promise<NewPlan & { effects: CommitEffects }> {
  const scheme = opts.scheme ?? 'seed';
  const nodes = await queryNamedNodes(qmp);
  const deviceNode = nodes.find((n) => n['node-name'] === device);
  if (!deviceNode) throw new StrataError('E_BAD_INPUT', `${qmp.path}: no block node named '${device}'`, { file: qmp.path });
  const chain = await nodeChain(qmp, device);
  const ti = opts.top === undefined ? 0 : pick(chain, opts.top, '--top');
  if (ti === chain.length - 1) throw new StrataError('E_BAD_INPUT', `${chain[ti].file}: has no backing node to commit into`, { file: chain[ti].file });
  const bi = opts.base === undefined ? ti + 1 : pick(chain, opts.base, '--base');
  if (bi <= ti) throw new StrataError('E_BAD_INPUT', `--base ${chain[bi].file}: not below the commit's top ${chain[ti].file} in the chain (${chain.map((l) => l.file).join(' -> ')})`, { file: chain[bi].file });
  const top = chain[ti].node;
  const base = chain[bi].node;
  const intermediate = ti > 0;
  const nodeOf = (name: string) => nodes.find((n) => n['node-name'] === name);
  const topNode = nodeOf(top);
  const baseNode = nodeOf(base);
  const topBitmaps = nodeBitmaps(topNode);
  const baseBitmaps = nodeBitmaps(baseNode);
  // Both schemes read the removed layers: libvirt's keeps the base recording, but a checkpoint made
  // in a removed layer, or one whose base bitmaps are all disabled, relies on the layers' own bitmaps.
  const contents = (node: string, bitmaps: LiveBitmapFacts[]): Promise<LayerContents> => readContents(qmp, node, bitmaps, opts.runtimeDir);
  const between: RemovedLayerFacts[] = [];
  for (const l of chain.slice(ti + 1, bi)) {
    const bitmaps = nodeBitmaps(nodeOf(l.node));
    between.push({ node: l.node, file: l.file, bitmaps, contents: await contents(l.node, bitmaps) });
  }
  const { effects, tempGranularity } = decideCommit({
    scheme,
    top: { node: top, file: topNode.file, bitmaps: topBitmaps },
    base: { node: base, file: baseNode.file, bitmaps: baseBitmaps },
    topContents: await contents(top, topBitmaps),
    ...(between.length ? { between } : {}),
    ...(intermediate ? { intermediate: { active: chain[0].file } } : {}),
  });
  // The active layer of an intermediate commit is open read-write too (its bitmaps in-use meanwhile).
  if (intermediate) effects.consistentBefore!.unshift({ file: chain[0].file, bitmaps: nodeBitmaps(deviceNode).filter((b) => !b.inconsistent).map((b) => b.name) });
  const sourcesOf = (name: string) => [{ ...chain[ti], bitmaps: topBitmaps }, ...between].filter((l) => l.bitmaps.some((b) => b.name === name && !b.inconsistent)).map((l) => ({ node: l.node, name }));
  const commitArgs: Record<string, unknown> = { device, ...(ti > 0 ? { 'top-node': top } : {}), ...(bi > ti + 1 || ti > 0 ? { 'base-node': base } : {}) };
  if (intermediate) {
    // QEMU writes an absolute backing path into the layer above the top unless told: keep it relative.
    const above = chain[ti - 1].file;
    if (above.startsWith('/') && baseNode.file.startsWith('/')) commitArgs['backing-file'] = path.relative(path.dirname(above), baseNode.file);
    commitArgs['auto-finalize'] = false;
  }
  if (opts.speed) commitArgs.speed = opts.speed;
  const plan = { kind: 'commit-with-bitmaps', summary: summarize(effects, top), target, effects, steps: [] as NewPlan['steps'] };
  if (intermediate) plan.steps = intermediateSteps(effects, { base, baseFile: baseNode.file, top, jobId, commitArgs, sourcesOf });
  else plan.steps = activeSteps(effects, { base, baseFile: baseNode.file, device, jobId, commitArgs, sourcesOf, tempGranularity });
  return plan;
}

type Action = { type: string; data: Record<string, unknown> };

function disableSteps(e: CommitEffects, base: string, baseFile: string): NewPlan['steps'] {
  return e.disabledDuringCommit.map((name) => ({
    label: `disable '${name}' in ${baseFile}`,
    spec: {
      kind: 'qmp' as const,
      command: { execute: 'block-dirty-bitmap-disable', arguments: { node: base, name } },
      undo: { execute: 'block-dirty-bitmap-enable', arguments: { node: base, name } },
      check: { bitmap: { node: base, name, recording: false } },
    },
  }));
}

/** The carried bitmaps missing in the base created there, and every removed layer's copy merged in. */
function carryActions(e: CommitEffects, base: string, sourcesOf: (name: string) => { node: string; name: string }[], disabled: (c: CommitEffects['carried'][number]) => boolean): { actions: Action[]; undo: Action[] } {
  const actions: Action[] = [];
  const undo: Action[] = [];
  // QEMU stores bitmaps created in one session newest first; adding them in reverse makes the
  // base's directory list them in the chain's creation order, which "changes since" relies on.
  for (const c of e.carried.filter((x) => x.created).reverse()) {
    actions.push({ type: 'block-dirty-bitmap-add', data: { node: base, name: c.name, granularity: c.granularity, persistent: c.persistent, disabled: disabled(c) } });
    undo.push({ type: 'block-dirty-bitmap-remove', data: { node: base, name: c.name } });
  }
  for (const c of e.carried) actions.push({ type: 'block-dirty-bitmap-merge', data: { node: base, target: c.name, bitmaps: sourcesOf(c.name) } });
  return { actions, undo };
}

/**
 * An intermediate commit: nothing writes the base but the commit itself, and nothing is pivoted.
 * The job is held at PENDING (auto-finalize off): the copy is complete, the removed layers still
 * exist and the base is still open read-write, so one transaction carries their bitmaps into the
 * base and enables what records again; job-finalize then drops the layers (and QEMU stores the
 * base's bitmaps as it reopens it read-only).
 */
function intermediateSteps(e: CommitEffects, o: { base: string; baseFile: string; top: string; jobId: string; commitArgs: Record<string, unknown>; sourcesOf: (name: string) => { node: string; name: string }[] }): NewPlan['steps'] {
  const steps = disableSteps(e, o.base, o.baseFile);
  steps.push({ label: `commit ${o.top} and the layers below it into ${o.baseFile}, until the copy is complete (PENDING)`, spec: { kind: 'job', jobId: o.jobId, start: { execute: 'block-commit', arguments: o.commitArgs }, until: 'pending' } });
  const { actions, undo } = carryActions(e, o.base, o.sourcesOf, (c) => !c.recordsAfter);
  for (const name of e.reEnabled) {
    actions.push({ type: 'block-dirty-bitmap-enable', data: { node: o.base, name } });
    undo.push({ type: 'block-dirty-bitmap-disable', data: { node: o.base, name } });
  }
  if (actions.length) {
    const created = e.carried.find((c) => c.created)?.name;
    steps.push({
      label: `carry ${e.carried.length ? e.carried.map((c) => `'${c.name}'`).join(', ') : 'no bitmap'} into ${o.baseFile}${e.reEnabled.length ? `; ${list(e.reEnabled)} record again` : ''}`,
      spec: {
        kind: 'qmp',
        command: { execute: 'transaction', arguments: { actions } },
        // A merge into a bitmap the base already had is not taken back: it only adds marks.
        undo: undo.length ? { execute: 'transaction', arguments: { actions: undo } } : 'nothing-to-undo',
        check: created ? { bitmap: { node: o.base, name: created, present: true } } : e.reEnabled.length ? { bitmap: { node: o.base, name: e.reEnabled[0], recording: true } } : null,
      },
    });
  }
  steps.push({ label: `finalize the commit: the removed layers leave the chain, the layer above ${o.top} now backs onto ${o.baseFile}`, spec: { kind: 'job-finalize', jobId: o.jobId } });
  return steps;
}

function activeSteps(
  effects: CommitEffects,
  o: { base: string; baseFile: string; device: string; jobId: string; commitArgs: Record<string, unknown>; sourcesOf: (name: string) => { node: string; name: string }[]; tempGranularity: number | null },
): NewPlan['steps'] {
  const { base, jobId, device, tempGranularity } = o;
  const baseNode = { file: o.baseFile };
  const temp = `${SWITCH_PREFIX}${jobId}`;
  const steps = disableSteps(effects, base, o.baseFile);
  steps.push({
    label: `commit ${device} into ${effects.removed && effects.removed.length > 1 ? o.baseFile : 'its backing'}, until READY`,
    spec: { kind: 'job', jobId, start: { execute: 'block-commit', arguments: o.commitArgs }, until: 'ready' },
  });
  if (tempGranularity !== null || effects.carried.length) {
    const { actions, undo } = carryActions(effects, base, o.sourcesOf, () => true);
    if (tempGranularity !== null) {
      actions.unshift({ type: 'block-dirty-bitmap-add', data: { node: base, name: temp, granularity: tempGranularity, persistent: false } });
      undo.unshift({ type: 'block-dirty-bitmap-remove', data: { node: base, name: temp } });
    }
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
    const actions: Action[] = [];
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
  return steps;
}

function mergeTargets(e: CommitEffects): string[] {
  return [...new Set([...e.reEnabled, ...e.carried.filter((c) => c.recordsAfter).map((c) => c.name)])];
}

const list = (names: string[]) => names.map((n) => `'${n}'`).join(', ');

function summarize(e: CommitEffects, device: string): string {
  const parts = [`commit ${device}${e.removed && e.removed.length > 1 ? ` and ${e.removed.length - 1} layer${e.removed.length > 2 ? 's' : ''} below it` : ''} into ${e.base}${e.intermediate ? ` (intermediate: the disk keeps running on ${e.active})` : ''} (${e.scheme === 'seed' ? "the seed thread's scheme" : "libvirt's scheme"})`];
  if (e.disabledDuringCommit.length) parts.push(`${list(e.disabledDuringCommit)} disabled during the commit`);
  if (e.keptRecording.length) parts.push(`${list(e.keptRecording.map((k) => k.name))} recording throughout`);
  if (e.carried.length) parts.push(`${list(e.carried.map((c) => c.name))} carried from ${e.removed && e.removed.length > 1 ? 'the removed layers' : 'the top'}`);
  if (e.lost.length) parts.push(`${list(e.lost.map((l) => l.name))} lost`);
  return parts.join('; ');
}
