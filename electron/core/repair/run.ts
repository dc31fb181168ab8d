// Running a journaled repair plan: QEMU tool invocations (argument arrays, never a shell) on offline
// files, each step's state written before and after it runs. A failed step rolls back the done
// steps that can be undone (in reverse); after an irreversible one (a bitmap removed) the plan stops
// and says so. After a crash (recoverRepairPlan) the step that was running is read back from the
// files with Strata's own reader: it took effect or it is run again (every step can be run twice:
// `qemu-img create` starts the scratch over, a merge sets bits already set), and the plan goes on.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
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

function runTool(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { maxBuffer: 16 << 20, timeout: 30 * 60_000 }, (err, out, stderr) => {
      // qemu-io exits 0 even when a command fails; its commands are all -q, so any output is an error.
      if (!err && argv[0] === 'qemu-io' && (String(out) + String(stderr)).trim()) {
        return reject(new StrataError('E_TOOL', `qemu-io failed on ${argv[argv.length - 1]}: ${(String(stderr) + String(out)).trim().split('\n').slice(0, 2).join(' ')}`, { file: argv[argv.length - 1] }));
      }
      if (!err) return resolve();
      const e = err as NodeJS.ErrnoException;
      const file = argv[argv.length - 1];
      if (e.code === 'ENOENT') return reject(new StrataError('E_TOOL', `${argv[0]} is not installed (Debian/Ubuntu: qemu-utils; Fedora: qemu-img)`));
      reject(new StrataError('E_TOOL', `${argv[0]} ${argv[1]} failed on ${file}: ${String(stderr).trim().split('\n').slice(-2).join(' ') || e.message}`, { file }));
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

async function runFrom(ctx: RepairRunContext, plan: Plan): Promise<RepairOutcome> {
  try {
    for (const step of plan.steps) {
      if (step.state !== 'pending') continue;
      const spec = step.spec;
      if (spec.kind !== 'tool') throw new StrataError('E_INTERNAL', `plan #${plan.id}: step ${step.index} is not a tool step`);
      ctx.hook?.(`before-step-${step.index}`);
      step.state = 'running';
      ctx.store.step(plan.id, step.index, 'running');
      // A bitmap this step creates that exists already was made by someone else since the plan was
      // laid out: the step fails, and its undo (which would remove it) must not run.
      let ownUndo = Array.isArray(spec.undo);
      try {
        ctx.hook?.(`running-step-${step.index}`);
        const c = spec.check;
        if (c?.bitmap !== undefined && c.present === true && checkTool({ layer: c.layer, bitmap: c.bitmap, present: true }) === true) {
          ownUndo = false;
          throw new StrataError('E_BUSY', `${c.layer}: a bitmap named '${c.bitmap}' appeared since the plan was made; look again`, { file: c.layer });
        }
        await runAll(spec.commands, ctx.allocations);
        ctx.hook?.(`ran-step-${step.index}`);
        if (checkTool(spec.check) === false) throw new StrataError('E_TOOL', `${step.label}: the tool succeeded but ${spec.check!.layer} does not show the change`, { file: spec.check!.layer });
      } catch (e) {
        step.state = 'failed';
        ctx.store.step(plan.id, step.index, 'failed', (e as Error).message);
        // One invocation may have done part of its work (qemu-img bitmap --add then a failed --merge
        // stores an empty bitmap): its own undo runs too, where it has one.
        if (ownUndo) await runAll(spec.undo as string[][]).catch(() => {});
        const irreversible = plan.steps.some((s) => s.state === 'done' && s.spec.kind === 'tool' && s.spec.undo === null);
        if (irreversible) {
          const error = `${step.label} failed after an irreversible step: ${(e as Error).message}`;
          ctx.store.finish(plan.id, 'failed', error, 'the steps after the failure were not run; run strata repair again to see the chain as it is');
          return { plan: ctx.store.get(plan.id)!, resolution: error };
        }
        return await rollBack(ctx, plan, `${step.label} failed: ${(e as Error).message}`);
      }
      step.state = 'done';
      ctx.store.step(plan.id, step.index, 'done');
      ctx.hook?.(`after-step-${step.index}`);
    }
    ctx.store.finish(plan.id, 'done', null, 'done');
    return { plan: ctx.store.get(plan.id)!, resolution: 'done' };
  } finally {
    removeScratch(plan);
  }
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
  const out = await runFrom(ctx, plan);
  const resolution = out.plan.state === 'done' ? `resumed after a restart and finished: ${plan.steps.map((s) => s.label).join('; ')}` : out.resolution;
  ctx.store.finish(plan.id, out.plan.state === 'running' ? 'failed' : (out.plan.state as 'done' | 'rolled-back' | 'failed'), out.plan.error, resolution);
  return { plan: ctx.store.get(plan.id)!, resolution };
}
