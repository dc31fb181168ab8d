// A commit plan whose QEMU is gone: Strata's own storage daemon for an offline image was killed (or
// died) in the middle of the plan. The files are then all there is:
//   - every bitmap the daemon had open read-write reads back in-use, but its stored contents are
//     those of the last store, before the daemon opened it; the journal proves what wrote the layer
//     meanwhile: nothing but the commit's own copies into the base, and those are marked in the
//     removed layers' bitmaps, which are still on disk. So each bitmap that was consistent when the
//     plan was made is restored from its stored contents (a scratch qcow2 Strata writes, then QEMU's
//     qemu-img removes the in-use copy and adds it back merged from the scratch, same flags);
//   - then, where the commit had got past its point of no return (an active commit completed, or an
//     intermediate commit's layers gone from the chain on disk), the removed layers' bitmaps are
//     carried into the base offline (qemu-img bitmap --merge from each layer that has it): the plan
//     is done; otherwise the chain on disk is the one before the commit and the plan is rolled back.
// The restoring is itself a journaled tool plan (kind commit-recovery), recovered like a repair.
// A VM's QEMU (no image of Strata's own) is never treated this way: the guest wrote its disk while
// it ran, so its in-use bitmaps miss writes; that plan is marked failed and strata repair removes them.
import path from 'node:path';
import { openLayer, withChain } from '../qcow2/chain.ts';
import type { Plan, NewPlan, StepSpec } from './types.ts';
import type { PlanStore } from '../store/plans.ts';
import { imageLockState } from '../daemon/image-lock.ts';
import { runRepairPlan } from '../repair/run.ts';
import { STORED_SCRATCH_COMMAND, restoreBitmapCommands } from '../repair/run.ts';
import { runPlan, type RunContext, type PlanOutcome } from './runner.ts';
import type { StorageDaemon } from '../daemon/storage-daemon.ts';
import { isStorageDaemonFor } from '../processes.ts';

export const COMMIT_RECOVERY_KIND = 'commit-recovery';

function bitmapsOf(file: string): { name: string; granularity: number; auto: boolean; inUse: boolean }[] {
  const l = openLayer(file, 'qcow2');
  try {
    return l.bitmaps.map((b) => ({ name: b.name, granularity: b.granularity, auto: b.auto, inUse: b.inUse }));
  } finally {
    l.file.close();
  }
}

const chainFiles = (image: string): string[] => withChain(image, (c) => c.layers.map((l) => l.path));

/** Did the commit pass its point of no return before QEMU went away? */
function pastNoReturn(plan: Plan): boolean {
  const e = plan.effects!;
  if (e.intermediate) return !chainFiles(e.active).includes(e.top);
  return plan.steps.some((s) => s.spec.kind === 'job-complete' && s.state === 'done');
}

/** The tool steps that restore the in-use bitmaps and, when `forward`, carry the removed layers' bitmaps into the base. */
export function offlineRecoverySteps(plan: Plan, forward: boolean, runtimeDir: string): NewPlan['steps'] {
  const e = plan.effects!;
  const qi = (...a: string[]) => ['qemu-img', 'bitmap', ...a];
  const keep: string[][] = [];
  const restore: NewPlan['steps'] = [];
  for (const layer of e.consistentBefore ?? []) {
    // in directory order: removing and adding again puts each at the end, so the order is kept
    for (const b of bitmapsOf(layer.file).filter((x) => x.inUse && layer.bitmaps.includes(x.name))) {
      const scratch = path.join(runtimeDir, `repair-restore-${plan.id}-${keep.length}.qcow2`);
      keep.push([STORED_SCRATCH_COMMAND, '--layer', layer.file, '--name', b.name, scratch]);
      const commands = restoreBitmapCommands(layer.file, b, scratch);
      restore.push({
        label: `restore '${b.name}' in ${layer.file} from its stored contents (left in-use by the killed QEMU; nothing but the plan wrote the layer)`,
        spec: { kind: 'tool', commands, undo: null, check: { layer: layer.file, bitmap: b.name, recording: b.auto } } satisfies StepSpec,
      });
    }
  }
  const steps: NewPlan['steps'] = [];
  if (keep.length) steps.push({ label: 'keep the stored contents of the bitmaps QEMU left in-use, in scratch files', spec: { kind: 'tool', commands: keep, undo: 'nothing-to-undo', check: null } });
  steps.push(...restore);
  if (forward) {
    const inBase = new Set(bitmapsOf(e.base).map((b) => b.name));
    for (const c of e.carried) {
      for (const from of c.from ?? [e.top]) {
        const add = !inBase.has(c.name);
        inBase.add(c.name);
        const commands = [qi(...(add ? ['--add', '-g', String(c.granularity)] : []), '--merge', c.name, '-b', from, '-F', 'qcow2', '-f', 'qcow2', e.base, c.name)];
        if (add && !c.recordsAfter) commands.push(qi('--disable', '-f', 'qcow2', e.base, c.name));
        steps.push({
          label: `carry '${c.name}' from ${from} into ${e.base}`,
          spec: { kind: 'tool', commands, undo: add ? [qi('--remove', '-f', 'qcow2', e.base, c.name)] : 'nothing-to-undo', check: add ? { layer: e.base, bitmap: c.name, present: true } : null },
        });
      }
    }
  }
  return steps;
}

/**
 * Finish or undo a commit plan on an offline image whose daemon is gone. Answers the resolution, or
 * null when this plan cannot be handled this way (a VM's, a daemon still alive, the image held).
 */
export async function recoverOfflineCommit(store: PlanStore, planId: number, runtimeDir: string): Promise<string | null> {
  const plan = store.get(planId);
  if (!plan || plan.state !== 'running' || !plan.target.image || !plan.effects?.consistentBefore) return null;
  if (isStorageDaemonFor(plan.target.daemonPid, plan.target.image)) return null;
  if ((await imageLockState(plan.target.image)) === 'locked') return null;
  const forward = pastNoReturn(plan);
  const steps = offlineRecoverySteps(plan, forward, runtimeDir);
  let how = 'nothing was left in-use';
  if (steps.length) {
    const id = store.create({ kind: COMMIT_RECOVERY_KIND, summary: `after QEMU went away: ${forward ? 'finish' : 'undo'} commit plan #${plan.id} offline`, target: { socket: '', image: plan.target.image, daemonPid: null }, steps });
    const r = await runRepairPlan({ store }, id);
    if (r.plan.state !== 'done') {
      const why = `QEMU went away during the plan, and the offline recovery (plan #${id}) did not finish: ${r.resolution}`;
      store.finish(plan.id, 'failed', why, why);
      return why;
    }
    how = `offline recovery plan #${id}: ${steps.map((s) => s.label).join('; ')}`;
  }
  const e = plan.effects;
  const resolution = forward
    ? `QEMU went away after the commit's point of no return; finished offline (${how}); the disk is ${e.active}`
    : `QEMU went away before the commit's point of no return; rolled back offline (${how}); the chain is as before, the disk is ${e.intermediate ? e.active : e.top}`;
  store.finish(plan.id, forward ? 'done' : 'rolled-back', forward ? null : 'QEMU went away', resolution);
  return resolution;
}

/**
 * Runs a commit plan on Strata's own daemon for an offline image. The plan is done only once the
 * daemon has stopped cleanly (SIGTERM: QEMU stores the bitmaps it holds): until then the journal
 * says running, so a kill in that window (of Strata or of the daemon) leaves the plan for the next
 * start, which finishes it through the daemon if it still runs, else from the files. A daemon that
 * dies before storing is handled here at once, from the files.
 */
export async function runOfflineCommit(ctx: Omit<RunContext, 'qmp' | 'holdOpen'>, planId: number, daemon: StorageDaemon, runtimeDir: string): Promise<PlanOutcome> {
  const out = await runPlan({ ...ctx, qmp: daemon.qmp, holdOpen: true }, planId);
  const held = out.plan.state === 'running' && out.plan.steps.every((s) => s.state === 'done');
  ctx.hook?.('before-daemon-stop');
  const exit = await daemon.stop();
  if (!held) return out;
  if (exit.code === 0 && exit.signal === null) {
    ctx.store.finish(planId, 'done', null, null);
    return { plan: ctx.store.get(planId)!, resolution: 'done' };
  }
  // The daemon died before it stored the bitmaps (they read back in-use): finish from the files.
  const resolution = (await recoverOfflineCommit(ctx.store, planId, runtimeDir)) ?? `qemu-storage-daemon ended with ${exit.signal ?? `exit ${exit.code}`} before storing the bitmaps; the next strata commit --yes finishes the plan`;
  return { plan: ctx.store.get(planId)!, resolution };
}
