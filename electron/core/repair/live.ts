// Live repair of an untracked overlay on a running QEMU: the layer a VM writes (a block node held
// read-write) gets the checkpoint bitmaps it lacks, filled from its allocation, without pausing the
// guest and without losing a write made meanwhile. The order is what makes it correct:
//
//   1. block-dirty-bitmap-add of each missing checkpoint bitmap on the node (persistent, recording,
//      the granularity of the checkpoint below): from now on every guest write is tracked.
//   2. only then the node's own allocation is read over NBD (qemu:allocation-depth = 1), and Strata
//      writes it as the one bitmap of a brand-new scratch qcow2 in its own folder (scratch.ts).
//   3. the scratch is opened read-only in that QEMU (blockdev-add), its bitmap merged into each new
//      bitmap (a cross-node merge source), the scratch node deleted, the file removed.
//
// A write before step 1 is in the allocation read in step 2; a write after step 1 is in the bitmap;
// so nothing is lost. The actions are the offline rules' (findings.ts: only a layer above every layer
// holding the checkpoint, i.e. provably made after it, is filled from its allocation); the others are
// reported and left to the offline repair with the VM stopped.
//
// Every step is journaled (plan kind 'repair-live') before it runs. A crash after step 1 and before
// step 3 leaves a recording bitmap that under-reports; it never looks valid (the checkpoint math
// calls a checkpoint unknown while a layer's bitmaps do not cover its allocation), and the next
// `strata repair --socket … --yes`, or the app's start, runs steps 2 and 3 again (each can run twice:
// the allocation read later is a superset, a merge sets bits already set) or, failing that, rolls the
// plan back, which removes the bitmap.
import fs from 'node:fs';
import path from 'node:path';
import type { QmpClient } from '../qmp/client.ts';
import { plainFileOf, queryNamedNodes } from '../qmp/named-nodes.ts';
import { readHeldLayer } from '../connections/live-layers.ts';
import { readLiveNode } from '../bitmaps/live-contents.ts';
import { ChainContents, type LiveLayerFacts } from '../checkpoints.ts';
import type { ExtentList } from '../extents.ts';
import { openForRepair, gatherFacts, type OpenedChain } from './facts.ts';
import { planRepair, roundOut, SCRATCH_BITMAP, type RepairPlan, type CheckpointView } from './plan.ts';
import { findingJson, remainingJson } from './report.ts';
import type { Db } from '../store/db.ts';
import { PlanStore } from '../store/plans.ts';
import { writeBitmapScratch } from './scratch.ts';
import { rollBackSteps, runSteps, failAndRollBack, finishRecovered } from './run.ts';
import { unrepairable, type Finding, type RepairAction } from './findings.ts';
import type { NewPlan, Plan, PlanStep, QmpCall, StepSpec } from '../plans/types.ts';
import { QmpExecuteError } from '../qmp/errors.ts';
import { StrataError } from '../errors.ts';

export const LIVE_REPAIR_KIND = 'repair-live';
/** `strata:write-live-allocation-bitmap --node N --granularity G --name B SCRATCH`: step 2 (Strata does it itself) */
export const LIVE_SCRATCH_COMMAND = 'strata:write-live-allocation-bitmap';
/** `strata:merge-scratch-bitmap --node N --scratch-node S --name B --into X [--into Y] SCRATCH`: step 3 */
export const LIVE_MERGE_COMMAND = 'strata:merge-scratch-bitmap';

export interface LiveTarget {
  /** the QMP socket, as the user gave it (resolved) */
  socket: string;
  node: string;
}

export interface LiveRepairPlan extends Omit<RepairPlan, 'steps'> {
  /** QMP steps (the bitmaps added) and Strata's own steps (the fill) */
  steps: { label: string; spec: StepSpec }[];
  node: string;
  /** the file the node holds (the layer) */
  file: string;
}

/** The node as QEMU shows it, refused when the live repair cannot work on it. */
async function liveNode(qmp: QmpClient, t: LiveTarget): Promise<{ file: string }> {
  const nodes = await queryNamedNodes(qmp, t.socket);
  const n = nodes.find((x) => x['node-name'] === t.node);
  if (!n) {
    const named = nodes.filter((x) => !String(x['node-name']).startsWith('#')).map((x) => `${x['node-name']} (${x.file})`);
    throw new StrataError('E_BAD_INPUT', `${t.socket}: no block node named '${t.node}' (named nodes: ${named.join(', ') || 'none'})`, { file: t.socket });
  }
  const file = plainFileOf(n) ?? String(n.file);
  if (n.drv !== 'qcow2') throw new StrataError('E_BAD_INPUT', `${t.socket}: node '${t.node}' is a ${n.drv} node; the repair needs the qcow2 node of the layer (its bitmaps live there)`, { file: t.socket });
  if (n.ro === true) throw new StrataError('E_BAD_INPUT', `${t.socket}: node '${t.node}' (${file}) is read-only: a persistent bitmap added to it would be lost at close; repair the layer QEMU writes`, { file: t.socket });
  if (!path.isAbsolute(file) || !fs.existsSync(file)) throw new StrataError('E_BAD_INPUT', `${t.socket}: node '${t.node}' holds '${file}', which is not a file Strata can read`, { file: t.socket });
  return { file };
}

/**
 * What the live route repairs: the node's own layer only, by bitmaps filled from its allocation:
 * new ones (an untracked overlay, a gap), or a recording one that does not cover it (what a crash
 * between steps 1 and 3 leaves, or a bitmap added live by someone else after the layer was written).
 */
const liveRepairable = (file: string, recording: Set<string>) => (a: RepairAction) =>
  a.layer === file && (a.kind === 'bitmaps-from-allocation' || (a.kind === 'merge-allocation' && recording.has(a.bitmap.name)));

/** What a finding the live route leaves out says to the user. */
function liveFindings(found: Finding[], only: (a: RepairAction) => boolean): Finding[] {
  return found.map((f) =>
    f.repairable && f.repair && !only(f.repair)
      ? { ...f, repairable: false, consequence: `not repaired live (only a missing checkpoint bitmap of the node's own layer is): run strata repair IMAGE with the VM stopped` }
      : f,
  );
}

/**
 * The findings of the chain as that QEMU sees it (the node's bitmaps and allocation read live, the
 * layers below from their files, which QEMU holds read-only) and the live plan. Only queries.
 */
export async function planLiveRepair(qmp: QmpClient, t: LiveTarget, runtimeDir: string, tag: string): Promise<LiveRepairPlan> {
  return withLiveChain(qmp, t, runtimeDir, ({ file, live, opened, contents }) => {
    const facts = gatherFacts({ ...opened, chain: contents.chain, contents }, { lock: 'free', previous: null });
    const only = liveRepairable(file, new Set(live.bitmaps.filter((b) => b.recording && !b.inconsistent && !b.busy).map((b) => b.name)));
    const p = planRepair(contents, facts, runtimeDir, tag, only);
    const scratchNode = `strata-repair-${tag}`;
    const steps: LiveRepairPlan['steps'] = [];
    const specs = p.actions.flatMap((a) => (a.kind === 'bitmaps-from-allocation' ? a.bitmaps : []));
    const filled = [...specs, ...p.actions.flatMap((a) => (a.kind === 'merge-allocation' ? [a.bitmap] : []))];
    for (const b of specs) {
      const add: QmpCall = { execute: 'block-dirty-bitmap-add', arguments: { node: t.node, name: b.name, granularity: b.granularity, persistent: true } };
      steps.push({
        label: `add the recording bitmap '${b.name}' (granularity ${b.granularity}) to node '${t.node}' (${path.basename(file)}): from now on every guest write is tracked`,
        spec: { kind: 'qmp', command: add, undo: { execute: 'block-dirty-bitmap-remove', arguments: { node: t.node, name: b.name } }, check: { bitmap: { node: t.node, name: b.name, present: true } } },
      });
    }
    const grans = [...new Set(filled.map((b) => b.granularity))];
    grans.forEach((g, k) => {
      const scratch = path.join(runtimeDir, `repair-${tag}-${k}.qcow2`);
      const into = filled.filter((b) => b.granularity === g).map((b) => b.name);
      steps.push({
        label: `read what node '${t.node}' allocates itself (NBD qemu:allocation-depth, after the bitmaps record) and write it at ${g}-byte granularity as a bitmap into the scratch image ${path.basename(scratch)} (a new file in Strata's folder)`,
        spec: { kind: 'tool', commands: [[LIVE_SCRATCH_COMMAND, '--node', t.node, '--granularity', String(g), '--name', SCRATCH_BITMAP, scratch]], undo: 'nothing-to-undo', check: null },
      });
      steps.push({
        label: `open the scratch read-only in that QEMU, merge its bitmap into ${into.map((x) => `'${x}'`).join(', ')}, close it and delete the file`,
        spec: { kind: 'tool', commands: [[LIVE_MERGE_COMMAND, '--node', t.node, '--scratch-node', `${scratchNode}-${k}`, '--name', SCRATCH_BITMAP, ...into.flatMap((x) => ['--into', x]), scratch]], undo: 'nothing-to-undo', check: null },
      });
    });
    return { ...p, found: liveFindings(p.found, only), steps, scratch: steps.flatMap((s) => (s.spec.kind === 'tool' ? s.spec.commands.map((c) => c[c.length - 1]) : [])), node: t.node, file };
  });
}

export interface LiveChain {
  /** the file the node holds */
  file: string;
  /** the node's own layer as that QEMU shows it (bitmaps and allocation read live) */
  live: LiveLayerFacts;
  opened: OpenedChain;
  /** the chain with the node's layer's live facts in place of its file's */
  contents: ChainContents;
}

/**
 * The chain as a running QEMU sees it: the node's own layer read live (its bitmaps and what it
 * allocates), the layers below from their files (QEMU holds them read-only, so their bitmaps on
 * disk are what it has). Only queries; refused when the node cannot be read that way.
 */
export async function withLiveChain<T>(qmp: QmpClient, t: LiveTarget, runtimeDir: string, fn: (c: LiveChain) => T): Promise<T> {
  const { file } = await liveNode(qmp, t);
  const live = await readHeldLayer(qmp, { file, connection: t.socket, label: t.socket, kind: 'socket', node: t.node, readOnly: false }, runtimeDir);
  if (live.error) throw new StrataError('E_QMP_EXECUTE', `${t.socket}: the live state of node '${t.node}' could not be read: ${live.error}`, { file: t.socket });
  const opened = openForRepair(file);
  try {
    return fn({ file, live, opened, contents: new ChainContents(opened.chain, new Map([[file, live]])) });
  } finally {
    opened.chain.close();
  }
}

/**
 * What a node allocates itself, read now over NBD (qemu:allocation-depth = 1) and rounded out to
 * `granularity`: every cluster written in that layer since it was made. Callers that must not lose
 * a write start a recording bitmap on the node first (see the order argued at the top of this file).
 */
export async function liveOwnAllocation(qmp: QmpClient, node: string, granularity: number, runtimeDir: string): Promise<{ extents: ExtentList; virtualSize: number }> {
  const r = await readLiveNode(qmp, node, { bitmaps: [], allocation: true }, { runtimeDir });
  return { extents: roundOut(r.allocation!, granularity, r.virtualSize), virtualSize: r.virtualSize };
}

export function liveToNewPlan(p: LiveRepairPlan, socket: string): NewPlan {
  const codes = [...new Set(p.found.filter((x) => x.repairable).map((x) => x.code))];
  return {
    kind: LIVE_REPAIR_KIND,
    summary: `live repair of node '${p.node}' (${path.basename(p.file)}): ${codes.join(', ') || 'nothing to repair'} (${p.steps.length} steps)`,
    target: { socket, image: p.file, daemonPid: null },
    steps: p.steps.map((s) => ({ label: s.label, spec: s.spec })),
  };
}

export interface LiveRunContext {
  qmp: QmpClient;
  store: PlanStore;
  runtimeDir: string;
  /** crash injection for tests: before-step-N, running-step-N, after-step-N; awaited */
  hook?: (point: string) => void | Promise<void>;
}

export interface LiveOutcome {
  plan: Plan;
  resolution: string;
}

const opt = (argv: string[], k: string) => argv[argv.indexOf(k) + 1];
const opts = (argv: string[], k: string) => argv.flatMap((x, i) => (x === k ? [argv[i + 1]] : []));

/** Step 2: the node's own allocation, read after its new bitmaps record, as a scratch bitmap. */
async function writeLiveScratch(ctx: LiveRunContext, argv: string[]): Promise<void> {
  const scratch = argv[argv.length - 1];
  const g = Number(opt(argv, '--granularity'));
  const r = await liveOwnAllocation(ctx.qmp, opt(argv, '--node'), g, ctx.runtimeDir);
  fs.rmSync(scratch, { force: true }); // a run a crash interrupted starts over
  fs.mkdirSync(path.dirname(scratch), { recursive: true });
  writeBitmapScratch(scratch, r.virtualSize, opt(argv, '--name'), g, r.extents);
}

/** Step 3: the scratch's bitmap merged into the new bitmaps through QEMU; the scratch gone again. */
async function mergeScratch(ctx: LiveRunContext, argv: string[], tag: { plan: number; step: number }): Promise<void> {
  const scratch = argv[argv.length - 1];
  const node = opt(argv, '--node');
  const scratchNode = opt(argv, '--scratch-node');
  const x = (execute: string, args: Record<string, unknown>) => ctx.qmp.execute(execute, args, { tag });
  // a scratch node a crashed run left open is closed first
  const nodes = await queryNamedNodes(ctx.qmp);
  if (nodes.some((n) => n['node-name'] === scratchNode)) await x('blockdev-del', { 'node-name': scratchNode });
  if (!fs.existsSync(scratch)) throw new StrataError('E_INTERNAL', `${scratch}: the scratch image is missing; the step that writes it runs again first`, { file: scratch });
  await x('blockdev-add', { driver: 'qcow2', 'node-name': scratchNode, 'read-only': true, file: { driver: 'file', filename: scratch } });
  let primary: unknown = null;
  try {
    await x('transaction', {
      actions: opts(argv, '--into').map((target) => ({ type: 'block-dirty-bitmap-merge', data: { node, target, bitmaps: [{ node: scratchNode, name: opt(argv, '--name') }] } })),
    });
  } catch (e) {
    primary = e;
  }
  try {
    await x('blockdev-del', { 'node-name': scratchNode });
  } catch (e) {
    primary ??= e;
  }
  fs.rmSync(scratch, { force: true });
  if (primary) throw primary instanceof QmpExecuteError ? new StrataError('E_QMP_EXECUTE', `${ctx.qmp.path}: ${primary.message}`, { file: ctx.qmp.path, cause: primary }) : primary;
}

async function bitmapPresent(qmp: QmpClient, node: string, name: string): Promise<boolean> {
  const n = (await queryNamedNodes(qmp)).find((x) => x['node-name'] === node);
  return ((n?.['dirty-bitmaps'] ?? []) as any[]).some((b) => b.name === name);
}

async function runStep(ctx: LiveRunContext, plan: Plan, step: PlanStep, recovering: boolean): Promise<void> {
  const tag = { plan: plan.id, step: step.index };
  const spec = step.spec;
  if (spec.kind === 'qmp') {
    const c = spec.check && 'bitmap' in spec.check ? spec.check.bitmap : undefined;
    if (c && (await bitmapPresent(ctx.qmp, c.node, c.name))) {
      // After a crash in this step the bitmap is ours; otherwise someone made it since the plan was laid out.
      if (recovering) return;
      throw new StrataError('E_BUSY', `${ctx.qmp.path}: a bitmap named '${c.name}' appeared on node '${c.node}' since the plan was made; look again`, { file: ctx.qmp.path });
    }
    await ctx.qmp.execute(spec.command.execute, spec.command.arguments, { tag });
    if (c && !(await bitmapPresent(ctx.qmp, c.node, c.name))) throw new StrataError('E_QMP_EXECUTE', `${step.label}: QEMU accepted the command but node '${c.node}' shows no bitmap '${c.name}'`, { file: ctx.qmp.path });
    return;
  }
  if (spec.kind !== 'tool') throw new StrataError('E_INTERNAL', `plan #${plan.id}: step ${step.index} is not a live repair step`);
  for (const c of spec.commands) {
    if (c[0] === LIVE_SCRATCH_COMMAND) await writeLiveScratch(ctx, c);
    else if (c[0] === LIVE_MERGE_COMMAND) await mergeScratch(ctx, c, tag);
    else throw new StrataError('E_INTERNAL', `plan #${plan.id}: unknown live repair command ${c[0]}`);
  }
}

/** Takes the done steps back, newest first: the bitmaps added are removed (unfilled, they are not valid). */
function rollBack(ctx: LiveRunContext, plan: Plan, why: string): Promise<LiveOutcome> {
  return rollBackSteps(ctx.store, plan, why, (s) => {
    if (s.spec.kind !== 'qmp' || s.spec.undo === null || s.spec.undo === 'nothing-to-undo') return null;
    const undo = s.spec.undo;
    return ctx.qmp.execute(undo.execute, undo.arguments, { tag: { plan: plan.id, step: s.index } }).then(
      () => {},
      (e) => {
        // the plan runner's test too: a client that is no longer ready lost its QEMU
        if (ctx.qmp.state === 'ready') throw e;
        // Nothing can be undone in a QEMU that cannot be reached; say what that leaves.
        const name = String(undo.arguments?.name ?? '?');
        throw new StrataError(
          (e as StrataError).code,
          `${e.message}. If that QEMU died, bitmap '${name}' died with it (QEMU had not stored it); if it still runs, '${name}' stays in it unfilled and reads unknown, never ok: run strata repair --socket ${plan.target.socket} --node ${String(undo.arguments?.node ?? '?')} again`,
          { file: plan.target.socket, cause: e },
        );
      },
    );
  });
}

function removeScratch(plan: Plan): void {
  for (const s of plan.steps) {
    if (s.spec.kind !== 'tool') continue;
    for (const c of s.spec.commands) if (path.basename(c[c.length - 1]).startsWith('repair-')) fs.rmSync(c[c.length - 1], { force: true });
  }
}

function runFrom(ctx: LiveRunContext, plan: Plan, interrupted: ReadonlySet<number>): Promise<LiveOutcome> {
  return runSteps(plan, {
    store: ctx.store,
    hook: ctx.hook,
    run: (step) => runStep(ctx, plan, step, interrupted.has(step.index)),
    failed: (step, e) => failAndRollBack(ctx.store, plan, step, e, (why) => rollBack(ctx, plan, why)),
    cleanup: () => removeScratch(plan),
  });
}

export function runLiveRepairPlan(ctx: LiveRunContext, planId: number): Promise<LiveOutcome> {
  const plan = ctx.store.get(planId);
  if (!plan) throw new StrataError('E_BAD_INPUT', `no plan #${planId}`);
  return runFrom(ctx, plan, new Set());
}

/**
 * Finishes a live repair a crash left running, on the QEMU it was made for: the step that was
 * running is run again (an added bitmap found present is taken as done), then the rest. A fill
 * that cannot be finished rolls the plan back, which removes the bitmaps it added.
 */
export async function recoverLiveRepairPlan(ctx: LiveRunContext, planId: number): Promise<LiveOutcome> {
  const plan = ctx.store.get(planId);
  if (!plan) throw new StrataError('E_BAD_INPUT', `no plan #${planId}`);
  if (plan.state !== 'running') return { plan, resolution: plan.resolution ?? plan.state };
  const interrupted = new Set<number>();
  for (const s of plan.steps.filter((x) => x.state === 'running')) {
    interrupted.add(s.index);
    s.state = 'pending';
    ctx.store.step(plan.id, s.index, 'pending', 'after a restart: run again');
  }
  return finishRecovered(ctx.store, plan, await runFrom(ctx, plan, interrupted));
}

export interface LiveRepairReport {
  socket: string;
  node: string;
  image: string;
  findings: ReturnType<typeof findingJson>[];
  /** a QMP step has `qmp` (the command) and no commands; Strata's own steps have commands */
  plan: { label: string; commands: string[][]; undo: unknown; qmp?: QmpCall }[];
  before: CheckpointView[];
  after: CheckpointView[];
  consequences: string[];
  remaining: ReturnType<typeof remainingJson>[];
  applied: boolean;
  outcomes: { id: number; state: string; resolution: string }[];
  recovered: string[];
  unrepairable: string[];
}

/**
 * The whole live run, as the CLI does it: interrupted live repairs on this socket finished first
 * (with apply), the look, the plan, and with apply the plan journaled and run.
 */
export async function repairLive(
  qmp: QmpClient,
  t: LiveTarget,
  o: { apply: boolean; db: Db | null; runtimeDir: string; hook?: LiveRunContext['hook'] },
): Promise<{ report: LiveRepairReport; plan: LiveRepairPlan }> {
  const recovered: string[] = [];
  const store = o.db ? new PlanStore(o.db) : null;
  for (const p of store?.unfinished().filter((x) => x.kind === LIVE_REPAIR_KIND && x.target.socket === t.socket) ?? []) {
    if (!o.apply) {
      recovered.push(`live repair plan #${p.id} was interrupted (its bitmaps may not yet hold the layer's allocation, so the checkpoints read unknown); run with --yes to finish it`);
      continue;
    }
    const r = await recoverLiveRepairPlan({ qmp, store: store!, runtimeDir: o.runtimeDir }, p.id);
    recovered.push(`live repair plan #${p.id} (interrupted): ${r.resolution}`);
  }
  const plan = await planLiveRepair(qmp, t, o.runtimeDir, `${process.pid}-${Date.now().toString(36)}`);
  let outcome: LiveRepairReport['outcomes'][number] | null = null;
  if (o.apply && plan.steps.length) {
    fs.mkdirSync(o.runtimeDir, { recursive: true });
    const id = store!.create(liveToNewPlan(plan, t.socket));
    const out = await runLiveRepairPlan({ qmp, store: store!, runtimeDir: o.runtimeDir, hook: o.hook }, id);
    outcome = { id, state: out.plan.state, resolution: out.resolution };
  }
  const report: LiveRepairReport = {
    socket: t.socket,
    node: t.node,
    image: plan.file,
    findings: plan.found.map(findingJson),
    plan: plan.steps.map((s) =>
      s.spec.kind === 'qmp' ? { label: s.label, commands: [], undo: s.spec.undo, qmp: s.spec.command } : { label: s.label, commands: s.spec.kind === 'tool' ? s.spec.commands : [], undo: s.spec.kind === 'tool' ? s.spec.undo : null },
    ),
    before: plan.before,
    after: plan.after,
    consequences: plan.consequences,
    remaining: plan.remaining.map(remainingJson),
    applied: outcome?.state === 'done',
    outcomes: outcome ? [outcome] : [],
    recovered,
    unrepairable: unrepairable(plan.found).map((f) => `${f.code} (${f.message})`),
  };
  return { report, plan };
}
