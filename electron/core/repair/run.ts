// Running a journaled repair plan: QEMU tool invocations (argument arrays, never a shell) on offline
// files, each step's state written before and after it runs. A failed step rolls back the done
// steps that can be undone (in reverse); after an irreversible one (a bitmap removed) the plan stops
// and says so. After a crash (recoverRepairPlan) the step that was running is read back from the
// files with Strata's own reader: it took effect or it is run again (every step can be run twice:
// `qemu-img create` starts the scratch over, a merge sets bits already set), and the plan goes on.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PlanStore } from '../store/plans.ts';
import type { Plan, PlanStep, ToolCheck } from '../plans/types.ts';
import { openLayer, allocationExtents, findBitmap, bitmapExtents } from '../qcow2/chain.ts';
import { writeBitmapScratch } from './scratch.ts';
import { roundOut, SCRATCH_COMMAND } from './plan.ts';
import { REMOVE_COMMAND } from './snapshot.ts';
import { StrataError } from '../errors.ts';
import type { ExtentList } from '../extents.ts';

export interface RepairRunContext {
  store: PlanStore;
  /**
   * Layer allocations read while planning, in this same process (the layers are offline and
   * unchanged since); a recovery after a crash has none and reads them again.
   */
  allocations?: Map<string, ExtentList>;
  /** crash injection for tests: before-step-N, running-step-N (journaled as running), ran-step-N (its commands ran), after-step-N */
  hook?: (point: string) => void;
}

export interface RepairOutcome {
  plan: Plan;
  resolution: string;
}

/** The image an invocation works on: its last absolute path (qemu-img bitmap ... FILE NAME, check/rebase ... FILE). */
function fileOf(argv: string[]): string {
  return [...argv].reverse().find((a) => path.isAbsolute(a)) ?? argv[argv.length - 1];
}

/** Errors of a tool that a signal ended (it may have left the image half written). */
const killedTools = new WeakSet<Error>();

function runTool(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { maxBuffer: 16 << 20, timeout: 30 * 60_000 }, (err, out, stderr) => {
      const file = fileOf(argv);
      // qemu-io exits 0 even when a command fails; its commands are all -q, so any output is an error.
      if (!err && argv[0] === 'qemu-io' && (String(out) + String(stderr)).trim()) {
        return reject(new StrataError('E_TOOL', `qemu-io failed on ${file}: ${(String(stderr) + String(out)).trim().split('\n').slice(0, 2).join(' ')}`, { file }));
      }
      if (!err) return resolve();
      const e = err as NodeJS.ErrnoException & { signal?: string | null };
      if (e.code === 'ENOENT') return reject(new StrataError('E_TOOL', `${argv[0]} is not installed (Debian/Ubuntu: qemu-utils; Fedora: qemu-img)`));
      const why = e.signal ? `killed by ${e.signal} (it may have written part of its change)` : String(stderr).trim().split('\n').slice(-2).join(' ') || e.message;
      const failure = new StrataError('E_TOOL', `${argv[0]} ${argv[1]} failed on ${file}: ${why}`, { file });
      if (e.signal) killedTools.add(failure);
      reject(failure);
    });
  });
}

/** The step Strata does itself (plan.ts SCRATCH_COMMAND): a new scratch qcow2 from a layer's allocation. */
function writeAllocationScratch(argv: string[], known: Map<string, ExtentList> | undefined): void {
  const opt = (k: string) => argv[argv.indexOf(k) + 1];
  const scratch = argv[argv.length - 1];
  const layer = openLayer(opt('--layer'), 'qcow2');
  try {
    const g = Number(opt('--granularity'));
    fs.rmSync(scratch, { force: true }); // a run a crash interrupted starts over
    fs.mkdirSync(path.dirname(scratch), { recursive: true });
    const alloc = known?.get(layer.path) ?? allocationExtents(layer);
    writeBitmapScratch(scratch, layer.virtualSize, opt('--name'), g, roundOut(alloc, g, layer.virtualSize));
  } finally {
    layer.file.close();
  }
}

/**
 * `strata:write-stored-bitmap --layer L --name N SCRATCH`: a new scratch qcow2 holding bitmap N as
 * L stores it on disk (also when flagged in-use: the contents QEMU last stored, which a QEMU killed
 * before storing again never replaced). Used only where the journal proves nothing wrote L meanwhile.
 */
export const STORED_SCRATCH_COMMAND = 'strata:write-stored-bitmap';
/** `strata:remove-bitmap-if-present LAYER NAME`: qemu-img bitmap --remove, only while the layer has it (a re-run step). */
export const REMOVE_IF_PRESENT_COMMAND = 'strata:remove-bitmap-if-present';

function writeStoredScratch(argv: string[]): void {
  const opt = (k: string) => argv[argv.indexOf(k) + 1];
  const scratch = argv[argv.length - 1];
  const layer = openLayer(opt('--layer'), 'qcow2');
  try {
    const bm = findBitmap(layer, opt('--name'));
    if (!bm) throw new StrataError('E_NO_BITMAP', `${layer.path}: no bitmap '${opt('--name')}' to keep`, { file: layer.path });
    fs.rmSync(scratch, { force: true });
    fs.mkdirSync(path.dirname(scratch), { recursive: true });
    writeBitmapScratch(scratch, layer.virtualSize, bm.name, bm.granularity, bitmapExtents(layer, bm));
  } finally {
    layer.file.close();
  }
}

/** Runs a tool step's commands (QEMU tools, and Strata's own strata:* steps) in order. */
export async function runAll(cmds: string[][], known?: Map<string, ExtentList>): Promise<void> {
  for (const c of cmds) {
    if (c[0] === SCRATCH_COMMAND) writeAllocationScratch(c, known);
    else if (c[0] === STORED_SCRATCH_COMMAND) writeStoredScratch(c);
    else if (c[0] === REMOVE_IF_PRESENT_COMMAND) {
      if (checkTool({ layer: c[1], bitmap: c[2], present: true })) await runTool(['qemu-img', 'bitmap', '--remove', '-f', 'qcow2', c[1], c[2]]);
    } else if (c[0] === REMOVE_COMMAND) fs.rmSync(c[1], { force: true });
    else await runTool(c);
  }
}

/** Does the file show the step's effect? null when the step has no check. */
export function checkTool(check: ToolCheck | null): boolean | null {
  if (!check) return null;
  let l;
  try {
    l = openLayer(check.layer, 'qcow2');
  } catch {
    return false;
  }
  try {
    if (check.stale !== undefined && l.bitmapsStale !== check.stale) return false;
    if (check.backing !== undefined && l.backingFile !== check.backing) return false;
    if (check.bitmap !== undefined) {
      const b = l.bitmaps.find((x) => x.name === check.bitmap);
      if (check.present !== undefined && !!b !== check.present) return false;
      if (check.recording !== undefined && (!b || b.auto !== check.recording || b.inUse)) return false;
    }
    return true;
  } finally {
    l.file.close();
  }
}

/** The scratch images a plan's steps create (qemu-img create ... FILE SIZE). */
export function scratchFiles(plan: Plan): string[] {
  const out: string[] = [];
  for (const s of plan.steps) {
    if (s.spec.kind !== 'tool') continue;
    for (const c of s.spec.commands) if (c[0] === SCRATCH_COMMAND || c[0] === STORED_SCRATCH_COMMAND) out.push(c[c.length - 1]);
  }
  return out;
}

function removeScratch(plan: Plan): void {
  for (const f of scratchFiles(plan)) {
    // only Strata's own files: named repair-*.qcow2 by the planner
    if (path.basename(f).startsWith('repair-')) fs.rmSync(f, { force: true });
  }
}

const isTool = (s: PlanStep): s is PlanStep & { spec: { kind: 'tool' } } => s.spec.kind === 'tool';

async function rollBack(ctx: RepairRunContext, plan: Plan, why: string): Promise<RepairOutcome> {
  return rollBackSteps(ctx.store, plan, why, (s) => {
    if (!isTool(s)) return null;
    const spec = s.spec as Extract<PlanStep['spec'], { kind: 'tool' }>;
    if (spec.undo === null) return null;
    return spec.undo === 'nothing-to-undo' ? Promise.resolve() : runAll(spec.undo);
  });
}

/**
 * Takes back a plan's done steps, newest first, journaling each; `undo` returns null for a step
 * with nothing to take back (irreversible), else the taking back. A failed undo stops the plan.
 */
export async function rollBackSteps(store: PlanStore, plan: Plan, why: string, undo: (s: PlanStep) => Promise<void> | null): Promise<RepairOutcome> {
  const undone: string[] = [];
  for (const s of [...plan.steps].reverse()) {
    if (s.state !== 'done') continue;
    try {
      const taking = undo(s);
      if (!taking) continue;
      await taking;
    } catch (e) {
      const error = `${why}; undoing "${s.label}" failed too: ${(e as Error).message}`;
      store.step(plan.id, s.index, 'failed', (e as Error).message);
      store.finish(plan.id, 'failed', error, `stopped while rolling back: ${undone.join('; ') || 'nothing undone'}`);
      return { plan: store.get(plan.id)!, resolution: error };
    }
    s.state = 'undone';
    store.step(plan.id, s.index, 'undone');
    undone.push(s.label);
  }
  const resolution = `rolled back (${why}): ${undone.length ? `undid ${undone.join('; ')}` : 'nothing had been changed'}`;
  store.finish(plan.id, 'rolled-back', why, resolution);
  return { plan: store.get(plan.id)!, resolution };
}

/**
 * Bitmap B of LAYER put back from SCRATCH (written by STORED_SCRATCH_COMMAND): the copy there removed
 * first when `removeFirst`, then added again merged from the scratch, disabled if it was. Removing and
 * adding puts it at the end of the directory: restore in directory order to keep the order.
 */
export function restoreBitmapCommands(layer: string, b: { name: string; granularity: number; auto: boolean }, scratch: string, removeFirst = true): string[][] {
  const qi = (...a: string[]) => ['qemu-img', 'bitmap', ...a];
  const cmds = removeFirst ? [[REMOVE_IF_PRESENT_COMMAND, layer, b.name]] : [];
  cmds.push(qi('--add', '-g', String(b.granularity), '--merge', b.name, '-b', scratch, '-F', 'qcow2', '-f', 'qcow2', layer, b.name));
  if (!b.auto) cmds.push(qi('--disable', '-f', 'qcow2', layer, b.name));
  return cmds;
}

/** A layer's bitmaps as a step found them: the consistent ones, which a killed tool must not cost. */
interface KeptBitmaps {
  layer: string;
  bitmaps: { name: string; granularity: number; auto: boolean }[];
}

/** The layer a tool step writes, and its consistent bitmaps before it runs (null: a stale or unreadable layer, nothing to keep). */
function keptBefore(spec: Extract<PlanStep['spec'], { kind: 'tool' }>): KeptBitmaps | null {
  const tool = spec.commands.find((c) => c[0] === 'qemu-img');
  if (!tool) return null;
  const layer = spec.check?.layer ?? fileOf(tool);
  try {
    const l = openLayer(layer, 'qcow2');
    try {
      if (l.bitmapsStale) return null;
      return { layer, bitmaps: l.bitmaps.filter((b) => !b.inUse).map((b) => ({ name: b.name, granularity: b.granularity, auto: b.auto })) };
    } finally {
      l.file.close();
    }
  } catch {
    return null;
  }
}

/**
 * After a qemu-img killed while it had the layer open read-write: the bitmaps that were consistent
 * before it and now read in-use (or the whole directory stale) are put back from their stored
 * contents. Nothing but that tool wrote the layer meanwhile (the repair runs on an offline image),
 * and a killed qemu-img never replaced a bitmap's stored data, so those are its contents before the
 * step. Stale: `qemu-img check -r leaks` drops the directory, then every bitmap is added back.
 * Answers the names restored; throws when a restore fails (the next repair then sees them in-use).
 */
async function restoreKept(kept: KeptBitmaps): Promise<string[]> {
  const l = openLayer(kept.layer, 'qcow2');
  let stale: boolean;
  let damaged: KeptBitmaps['bitmaps'];
  try {
    stale = l.bitmapsStale;
    damaged = kept.bitmaps.filter((b) => stale || l.bitmaps.some((x) => x.name === b.name && x.inUse));
  } finally {
    l.file.close();
  }
  if (!damaged.length) return [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-restore-'));
  try {
    const cmds: string[][] = [];
    damaged.forEach((b, i) => cmds.push([STORED_SCRATCH_COMMAND, '--layer', kept.layer, '--name', b.name, path.join(dir, `repair-restore-${i}.qcow2`)]));
    if (stale) cmds.push(['qemu-img', 'check', '-q', '-r', 'leaks', '-f', 'qcow2', kept.layer]);
    damaged.forEach((b, i) => cmds.push(...restoreBitmapCommands(kept.layer, b, path.join(dir, `repair-restore-${i}.qcow2`), !stale)));
    await runAll(cmds);
    return damaged.map((b) => b.name);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** One kind of tool plan's steps, for the shared loop (runSteps): this run's, the offline's or the live repair's. */
export interface StepRunner {
  store: PlanStore;
  /** crash injection for tests: before-step-N, running-step-N, after-step-N */
  hook?: (point: string) => void | Promise<void>;
  /** runs one step; throws when it fails */
  run(step: PlanStep): Promise<void>;
  /** a step failed: journal it and end the plan (rolled back, or stopped and saying so) */
  failed(step: PlanStep, e: Error): Promise<RepairOutcome>;
  /** always, at the end: scratch files removed */
  cleanup(): void;
}

/**
 * The loop every tool plan runs: each pending step journaled running before it runs and done after
 * it; the first failure ends the plan (the runner's `failed` rolls back or stops); done at the end.
 */
export async function runSteps(plan: Plan, r: StepRunner): Promise<RepairOutcome> {
  try {
    for (const step of plan.steps) {
      if (step.state !== 'pending') continue;
      await r.hook?.(`before-step-${step.index}`);
      step.state = 'running';
      r.store.step(plan.id, step.index, 'running');
      try {
        await r.hook?.(`running-step-${step.index}`);
        await r.run(step);
      } catch (e) {
        return await r.failed(step, e as Error);
      }
      step.state = 'done';
      r.store.step(plan.id, step.index, 'done');
      await r.hook?.(`after-step-${step.index}`);
    }
    r.store.finish(plan.id, 'done', null, 'done');
    return { plan: r.store.get(plan.id)!, resolution: 'done' };
  } finally {
    r.cleanup();
  }
}

/** A step journaled failed, then the plan rolled back from it. */
export function failAndRollBack(store: PlanStore, plan: Plan, step: PlanStep, e: Error, rollBack: (why: string) => Promise<RepairOutcome>): Promise<RepairOutcome> {
  step.state = 'failed';
  store.step(plan.id, step.index, 'failed', e.message);
  return rollBack(`${step.label} failed: ${e.message}`);
}

/** The end of a recovery: the plan finished with what its run did, the resolution saying it was resumed. */
export function finishRecovered(store: PlanStore, plan: Plan, out: RepairOutcome): RepairOutcome {
  const resolution = out.plan.state === 'done' ? `resumed after a restart and finished: ${plan.steps.map((s) => s.label).join('; ')}` : out.resolution;
  store.finish(plan.id, out.plan.state === 'running' ? 'failed' : (out.plan.state as 'done' | 'rolled-back' | 'failed'), out.plan.error, resolution);
  return { plan: store.get(plan.id)!, resolution };
}

function runFrom(ctx: RepairRunContext, plan: Plan): Promise<RepairOutcome> {
  // A bitmap a step creates that exists already was made by someone else since the plan was laid
  // out: the step fails, and its undo (which would remove it) must not run.
  let appeared = false;
  let kept: KeptBitmaps | null = null;
  const toolSpec = (step: PlanStep) => {
    if (step.spec.kind !== 'tool') throw new StrataError('E_INTERNAL', `plan #${plan.id}: step ${step.index} is not a tool step`);
    return step.spec;
  };
  return runSteps(plan, {
    store: ctx.store,
    hook: ctx.hook,
    run: async (step) => {
      appeared = false;
      const spec = toolSpec(step);
      const c = spec.check;
      if (c?.bitmap !== undefined && c.present === true && checkTool({ layer: c.layer, bitmap: c.bitmap, present: true }) === true) {
        appeared = true;
        throw new StrataError('E_BUSY', `${c.layer}: a bitmap named '${c.bitmap}' appeared since the plan was made; look again`, { file: c.layer });
      }
      kept = keptBefore(spec);
      await runAll(spec.commands, ctx.allocations);
      ctx.hook?.(`ran-step-${step.index}`);
      if (checkTool(spec.check) === false) throw new StrataError('E_TOOL', `${step.label}: the tool succeeded but ${spec.check!.layer} does not show the change`, { file: spec.check!.layer });
    },
    failed: async (step, e) => {
      if (step.spec.kind !== 'tool') return failAndRollBack(ctx.store, plan, step, e, (why) => rollBack(ctx, plan, why));
      const spec = step.spec;
      // A qemu-img killed with the layer open read-write leaves its bitmaps in-use (or the directory
      // stale): those that were consistent before the step get their stored contents back first.
      let restored = '';
      if (killedTools.has(e) && kept) {
        restored = await restoreKept(kept).then(
          (names) => (names.length ? `; the bitmaps it left in-use restored from their stored contents: ${names.join(', ')}` : ''),
          (x: Error) => `; restoring the bitmaps it left in-use failed too (${x.message}): strata repair will remove them`,
        );
        if (restored) e = new StrataError('E_TOOL', e.message + restored, { file: (e as StrataError).file });
      }
      // A tool killed after it wrote its change (or most of it): an irreversible step the file shows
      // done is journaled done, so the plan says what happened instead of "nothing changed".
      if (spec.undo === null && !appeared && checkTool(spec.check) === true) {
        step.state = 'done';
        ctx.store.step(plan.id, step.index, 'done', `the tool failed (${e.message}) but the file shows the change`);
        const error = `${step.label}: ${e.message}; the file shows the change was made, so it stays`;
        ctx.store.finish(plan.id, 'failed', error, 'the steps after it were not run; run strata repair again to see the chain as it is');
        return { plan: ctx.store.get(plan.id)!, resolution: error };
      }
      // One invocation may have done part of its work (qemu-img bitmap --add then a failed --merge
      // stores an empty bitmap): its own undo runs too, where it has one.
      const undoOwn = Array.isArray(spec.undo) && !appeared ? spec.undo : null;
      return failAndRollBack(ctx.store, plan, step, e, async (why) => {
        if (undoOwn) await runAll(undoOwn).catch(() => {});
        if (plan.steps.some((s) => s.state === 'done' && s.spec.kind === 'tool' && s.spec.undo === null)) {
          const error = `${step.label} failed after an irreversible step: ${e.message}`;
          ctx.store.finish(plan.id, 'failed', error, 'the steps after the failure were not run; run strata repair again to see the chain as it is');
          return { plan: ctx.store.get(plan.id)!, resolution: error };
        }
        return rollBack(ctx, plan, why);
      });
    },
    cleanup: () => removeScratch(plan),
  });
}

export function runRepairPlan(ctx: RepairRunContext, planId: number): Promise<RepairOutcome> {
  const plan = ctx.store.get(planId);
  if (!plan) throw new StrataError('E_BAD_INPUT', `no plan #${planId}`);
  return runFrom(ctx, plan);
}

/** Finish a repair plan a crash left running: the running step is read back from the files, then the plan goes on. */
export async function recoverRepairPlan(ctx: RepairRunContext, planId: number): Promise<RepairOutcome> {
  const plan = ctx.store.get(planId);
  if (!plan) throw new StrataError('E_BAD_INPUT', `no plan #${planId}`);
  if (plan.state !== 'running') return { plan, resolution: plan.resolution ?? plan.state };
  for (const s of plan.steps.filter((x) => x.state === 'running')) {
    const took = s.spec.kind === 'tool' ? checkTool(s.spec.check) : null;
    // Without a check the step is run again: every repair step can be run twice.
    s.state = took === true ? 'done' : 'pending';
    ctx.store.step(plan.id, s.index, s.state, `after a restart: ${took === true ? 'the file shows it took effect' : took === false ? 'the file shows no effect: run again' : 'run again'}`);
  }
  return finishRecovered(ctx.store, plan, await runFrom(ctx, plan));
}
