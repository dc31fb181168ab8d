// Running a journaled plan, and finishing one a crash interrupted. Every step's state is written
// before and after it runs. After a crash the step that was running is read back from QEMU itself
// (bitmap flags, query-jobs): until something irreversible has happened (a job completed) the plan
// is rolled back; once it has, or while its job still runs, the plan is resumed.
import type { QmpClient } from '../qmp/client.ts';
import { JobEngine } from '../jobs/engine.ts';
import { queryNamedNodes } from '../qmp/named-nodes.ts';
import type { PlanStore } from '../store/plans.ts';
import type { Plan, PlanStep, QmpCall, StepCheck } from './types.ts';
import { StrataError } from '../errors.ts';

export interface RunContext {
  qmp: QmpClient;
  store: PlanStore;
  /** crash injection for tests: called at named points (after-step-N, job-running, ...) */
  hook?: (point: string) => void;
}

export interface PlanOutcome {
  plan: Plan;
  /** what was done, in plain words (shown to the user after a recovery) */
  resolution: string;
}

const engines = new WeakMap<QmpClient, JobEngine>();
function engineFor(qmp: QmpClient): JobEngine {
  let e = engines.get(qmp);
  if (!e) {
    e = new JobEngine(qmp, { connection: 'plan' });
    engines.set(qmp, e);
  }
  return e;
}

async function send(qmp: QmpClient, c: QmpCall): Promise<void> {
  await qmp.execute(c.execute, c.arguments);
}

/** Does QEMU show the step's effect? null when the step has no check. */
async function checkEffect(qmp: QmpClient, check: StepCheck | null): Promise<boolean | null> {
  if (!check) return null;
  const nodes = await queryNamedNodes(qmp);
  const node = nodes.find((n) => n['node-name'] === check.bitmap.node);
  const bm = node?.['dirty-bitmaps']?.find((b: any) => b.name === check.bitmap.name);
  if (check.bitmap.present !== undefined && !!bm !== check.bitmap.present) return false;
  if (check.bitmap.recording !== undefined && (!bm || bm.recording !== check.bitmap.recording)) return false;
  return true;
}

async function runJobStep(ctx: RunContext, plan: Plan, step: PlanStep, adopt: boolean): Promise<void> {
  if (step.spec.kind !== 'job') throw new Error('not a job step');
  const spec = step.spec;
  const engine = engineFor(ctx.qmp);
  if (adopt) await engine.sync();
  else {
    // The id is in the journal before QEMU hears of the job: a restart can look it up.
    ctx.store.note(plan.id, step.index, `starting job ${spec.jobId}`);
    await engine.start({ type: spec.start.execute, ...spec.start.arguments } as any, spec.jobId);
    ctx.store.note(plan.id, step.index, `started job ${spec.jobId}`);
  }
  const running = await engine.waitFor(spec.jobId, (j) => j.state !== 'created' && j.state !== 'undefined');
  if (running.state === 'running') ctx.hook?.('job-running');
  let j = await engine.waitFor(spec.jobId, (x) => x.state === 'concluded' || (spec.completeAtReady && (x.state === 'ready' || x.state === 'standby')));
  if (j.state !== 'concluded') {
    ctx.hook?.('job-ready');
    await engine.verb(spec.jobId, 'complete');
    j = await engine.waitFor(spec.jobId, (x) => x.state === 'concluded');
  }
  // A concluded job's error is only readable before dismiss (auto-dismiss is off).
  const err = j.error;
  ctx.store.note(plan.id, step.index, err ? `job ${spec.jobId} failed: ${err}` : `job ${spec.jobId} concluded`);
  await engine.verb(spec.jobId, 'dismiss');
  if (err) throw new StrataError('E_QMP_EXECUTE', `${step.label}: ${err}`);
}

async function runStep(ctx: RunContext, plan: Plan, step: PlanStep, adopt = false): Promise<void> {
  if (step.spec.kind === 'qmp') await send(ctx.qmp, step.spec.command);
  else await runJobStep(ctx, plan, step, adopt);
}

const irreversibleDone = (plan: Plan) => plan.steps.some((s) => s.state === 'done' && (s.spec.kind === 'job' || (s.spec.kind === 'qmp' && !s.spec.undo)));

async function rollBack(ctx: RunContext, plan: Plan, why: string): Promise<PlanOutcome> {
  const undone: string[] = [];
  for (const s of [...plan.steps].reverse()) {
    if (s.state !== 'done' || s.spec.kind !== 'qmp' || !s.spec.undo) continue;
    try {
      await send(ctx.qmp, s.spec.undo);
    } catch (e) {
      const error = `${why}; undoing "${s.label}" failed too: ${(e as Error).message}`;
      ctx.store.step(plan.id, s.index, 'failed', (e as Error).message);
      ctx.store.finish(plan.id, 'failed', error, `stopped while rolling back: ${undone.join(', ') || 'nothing undone'}`);
      return { plan: ctx.store.get(plan.id)!, resolution: error };
    }
    s.state = 'undone';
    ctx.store.step(plan.id, s.index, 'undone');
    undone.push(s.label);
  }
  const resolution = `rolled back (${why}): ${undone.length ? `undid ${undone.join('; ')}` : 'nothing had been changed'}`;
  ctx.store.finish(plan.id, 'rolled-back', why, resolution);
  return { plan: ctx.store.get(plan.id)!, resolution };
}

async function runFrom(ctx: RunContext, plan: Plan, adoptIndex: number | null): Promise<PlanOutcome> {
  for (const step of plan.steps) {
    if (step.state !== 'pending' && step.index !== adoptIndex) continue;
    ctx.hook?.(`before-step-${step.index}`);
    step.state = 'running';
    ctx.store.step(plan.id, step.index, 'running');
    try {
      await runStep(ctx, plan, step, step.index === adoptIndex);
    } catch (e) {
      step.state = 'failed';
      ctx.store.step(plan.id, step.index, 'failed', (e as Error).message);
      if (irreversibleDone(plan)) {
        const error = `${step.label} failed after an irreversible step: ${(e as Error).message}`;
        ctx.store.finish(plan.id, 'failed', error, 'the steps after the failure were not run; their state is shown in the plan');
        return { plan: ctx.store.get(plan.id)!, resolution: error };
      }
      return rollBack(ctx, plan, `${step.label} failed: ${(e as Error).message}`);
    }
    step.state = 'done';
    ctx.store.step(plan.id, step.index, 'done');
    ctx.hook?.(`after-step-${step.index}`);
  }
  ctx.store.finish(plan.id, 'done', null, null);
  return { plan: ctx.store.get(plan.id)!, resolution: 'done' };
}

export function runPlan(ctx: RunContext, planId: number): Promise<PlanOutcome> {
  const plan = ctx.store.get(planId);
  if (!plan) throw new StrataError('E_BAD_INPUT', `no plan #${planId}`);
  return runFrom(ctx, plan, null);
}

/** Finish a plan a crash left running, from what QEMU shows now. */
export async function recoverPlan(ctx: RunContext, planId: number): Promise<PlanOutcome> {
  const plan = ctx.store.get(planId);
  if (!plan) throw new StrataError('E_BAD_INPUT', `no plan #${planId}`);
  if (plan.state !== 'running') return { plan, resolution: plan.resolution ?? plan.state };
  let adopt: number | null = null;
  for (const s of plan.steps.filter((x) => x.state === 'running')) {
    if (s.spec.kind === 'qmp') {
      const took = await checkEffect(ctx.qmp, s.spec.check);
      // Without a check we cannot know: treat it as done so that its undo runs (undo is idempotent
      // for bitmap enable/disable), never as silently skipped.
      s.state = took === false ? 'pending' : 'done';
      ctx.store.step(plan.id, s.index, s.state, `after a restart: ${took === false ? 'QEMU shows no effect' : 'QEMU shows it took effect'}`);
      continue;
    }
    const jobId = s.spec.jobId;
    const jobs = await ctx.qmp.execute<any[]>('query-jobs');
    const j = jobs.find((x) => x.id === jobId);
    if (j) {
      adopt = s.index; // still known to QEMU: follow it to its end
    } else if (s.note?.includes('concluded') && !s.note.includes('failed')) {
      s.state = 'done';
      ctx.store.step(plan.id, s.index, 'done', 'after a restart: the job had concluded and been dismissed');
    } else if (s.note?.startsWith('started')) {
      s.state = 'failed';
      ctx.store.step(plan.id, s.index, 'failed', 'after a restart: QEMU no longer knows the job (it restarted?)');
      return rollBack(ctx, plan, `the job of "${s.label}" was lost`);
    } else {
      s.state = 'pending';
      ctx.store.step(plan.id, s.index, 'pending', 'after a restart: the job had not been started');
    }
  }
  if (adopt === null && !irreversibleDone(plan)) return rollBack(ctx, plan, 'Strata stopped before the plan could finish');
  const out = await runFrom(ctx, plan, adopt);
  const resolution = out.plan.state === 'done' ? `resumed after a restart and finished: ${plan.steps.map((s) => s.label).join('; ')}` : out.resolution;
  ctx.store.finish(plan.id, out.plan.state === 'running' ? 'failed' : (out.plan.state as any), out.plan.error, resolution);
  return { plan: ctx.store.get(plan.id)!, resolution };
}
