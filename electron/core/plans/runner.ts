// Running a journaled plan, and finishing one a crash interrupted. Every step's state is written
// before and after it runs, and a job step's phase (starting, started, ready, concluded, dismissed)
// at each change. After a crash the step that was running is read back from QEMU itself (bitmap
// flags, query-jobs) and from those typed columns: until something irreversible has happened (a
// pivot, a job that concluded) the plan is rolled back; once it has, or while its job still runs,
// the plan is resumed.
import type { QmpClient, TrafficTag } from '../qmp/client.ts';
import { JobEngine } from '../jobs/engine.ts';
import { queryNamedNodes } from '../qmp/named-nodes.ts';
import { blockGraph } from '../connections/block-graph.ts';
import type { PlanStore } from '../store/plans.ts';
import { isIrreversible, jobUntil, type Plan, type PlanStep, type QmpCall, type StepCheck } from './types.ts';
import { StrataError } from '../errors.ts';
import { QmpExecuteError } from '../qmp/errors.ts';
import { runAll as runTools, checkTool } from '../repair/run.ts';
import { openLayer, allocationExtents } from '../qcow2/chain.ts';
import { imageLockState } from '../daemon/image-lock.ts';
import fs from 'node:fs';
import path from 'node:path';

export interface RunContext {
  qmp: QmpClient;
  store: PlanStore;
  /** the connection's one job engine (the connection manager's); a private one when absent (CLI, tests) */
  engine?: JobEngine;
  /** crash injection for tests: called at named points (after-step-N, job-running, ...) */
  hook?: (point: string) => unknown;
  /**
   * Every step done is not yet the end: the plan stays running for the caller to finish (an offline
   * commit is done only once Strata's daemon has stored its bitmaps; offline-commit.ts).
   */
  holdOpen?: boolean;
}

export interface PlanOutcome {
  plan: Plan;
  /** what was done, in plain words (shown to the user after a recovery) */
  resolution: string;
}

const engines = new WeakMap<QmpClient, JobEngine>();
function engineOf(ctx: RunContext): JobEngine {
  if (ctx.engine) return ctx.engine;
  let e = engines.get(ctx.qmp);
  if (!e) {
    e = new JobEngine(ctx.qmp, { connection: ctx.qmp.path });
    engines.set(ctx.qmp, e);
  }
  return e;
}

async function send(qmp: QmpClient, c: QmpCall, tag: TrafficTag): Promise<void> {
  await qmp.execute(c.execute, c.arguments, { tag });
}

/** Does QEMU show the step's effect? null when the step has no check. */
async function checkEffect(qmp: QmpClient, check: StepCheck | null): Promise<boolean | null> {
  if (!check) return null;
  if ('node' in check) {
    const { nodes, edges } = await blockGraph(qmp);
    if (nodes.some((n) => n.name === check.node.name) !== check.node.present) return false;
    if (check.node.backing !== undefined && !edges.some((e) => e.parent === check.node.name && e.role === 'backing' && e.child === check.node.backing)) return false;
    return true;
  }
  const nodes = await queryNamedNodes(qmp);
  const node = nodes.find((n) => n['node-name'] === check.bitmap.node);
  const bm = node?.['dirty-bitmaps']?.find((b: any) => b.name === check.bitmap.name);
  if (check.bitmap.present !== undefined && !!bm !== check.bitmap.present) return false;
  if (check.bitmap.recording !== undefined && (!bm || bm.recording !== check.bitmap.recording)) return false;
  return true;
}

const readyOrDone = (s: string) => s === 'ready' || s === 'standby' || s === 'concluded';

/** Follows a job to its conclusion (completing it at READY when asked), records its phase, dismisses it. */
async function concludeJob(ctx: RunContext, plan: Plan, step: PlanStep, jobId: string, complete: boolean, finalize = false): Promise<void> {
  const engine = engineOf(ctx);
  let j = await engine.waitFor(jobId, (x) => x.state === 'concluded' || (complete && (x.state === 'ready' || x.state === 'standby')) || (finalize && x.state === 'pending'));
  if (j.state !== 'concluded') {
    if (j.state === 'pending') await engine.verb(jobId, 'finalize');
    else {
      await ctx.hook?.('job-ready');
      await engine.verb(jobId, 'complete');
    }
    j = await engine.waitFor(jobId, (x) => x.state === 'concluded');
  }
  // A concluded job's error is only readable before dismiss (auto-dismiss is off).
  const err = j.error;
  ctx.store.phase(plan.id, step.index, err ? 'failed' : 'concluded', err ? `job ${jobId} failed: ${err}` : `job ${jobId} concluded`);
  await engine.verb(jobId, 'dismiss');
  if (!err) ctx.store.phase(plan.id, step.index, 'dismissed', `job ${jobId} concluded and was dismissed`);
  if (err) throw new StrataError('E_QMP_EXECUTE', `${step.label}: ${err}`);
}

async function runJobStep(ctx: RunContext, plan: Plan, step: PlanStep, adopt: boolean): Promise<void> {
  if (step.spec.kind !== 'job') throw new Error('not a job step');
  const spec = step.spec;
  const engine = engineOf(ctx);
  if (adopt) await engine.sync();
  else {
    // The id is in the journal before QEMU hears of the job: a restart can look it up.
    ctx.store.phase(plan.id, step.index, 'starting', `starting job ${spec.jobId}`);
    await engine.start({ type: spec.start.execute, ...spec.start.arguments } as any, spec.jobId, { plan: plan.id, step: step.index });
    ctx.store.phase(plan.id, step.index, 'started', `started job ${spec.jobId}`);
  }
  const running = await engine.waitFor(spec.jobId, (j) => j.state !== 'created' && j.state !== 'undefined');
  if (running.state === 'running') await ctx.hook?.('job-running');
  const until = jobUntil(spec);
  if (until === 'pending') {
    const j = await engine.waitFor(spec.jobId, (x) => x.state === 'pending' || x.state === 'concluded');
    if (j.state === 'concluded') {
      ctx.store.phase(plan.id, step.index, 'failed', `job ${spec.jobId} ended before it was PENDING${j.error ? `: ${j.error}` : ''}`);
      await engine.verb(spec.jobId, 'dismiss').catch(() => {});
      throw new StrataError('E_QMP_EXECUTE', `${step.label}: the job ended before its copy was complete${j.error ? `: ${j.error}` : ''}`);
    }
    ctx.store.phase(plan.id, step.index, 'ready', `job ${spec.jobId} is PENDING`);
    await ctx.hook?.('job-pending');
    return;
  }
  if (until === 'ready') {
    const j = await engine.waitFor(spec.jobId, (x) => readyOrDone(x.state));
    if (j.state === 'concluded') {
      ctx.store.phase(plan.id, step.index, 'failed', `job ${spec.jobId} ended before READY${j.error ? `: ${j.error}` : ''}`);
      await engine.verb(spec.jobId, 'dismiss').catch(() => {});
      throw new StrataError('E_QMP_EXECUTE', `${step.label}: the job ended before it was READY${j.error ? `: ${j.error}` : ''}`);
    }
    ctx.store.phase(plan.id, step.index, 'ready', `job ${spec.jobId} is READY`);
    await ctx.hook?.('job-ready');
    return;
  }
  await concludeJob(ctx, plan, step, spec.jobId, until === 'ready-then-complete');
}

/** The job-complete (job-finalize) step: the job an earlier step left READY (PENDING) is completed (finalized), concluded, dismissed. */
async function runCompleteStep(ctx: RunContext, plan: Plan, step: PlanStep, adopt: boolean): Promise<void> {
  if (step.spec.kind !== 'job-complete' && step.spec.kind !== 'job-finalize') throw new Error('not a job-complete step');
  // After a restart the engine has not seen the job yet: adopt it from query-jobs.
  const engine = engineOf(ctx);
  if (adopt || !engine.get(step.spec.jobId)) await engine.sync();
  await ctx.hook?.('before-complete');
  await concludeJob(ctx, plan, step, step.spec.jobId, step.spec.kind === 'job-complete', step.spec.kind === 'job-finalize');
}

async function runStep(ctx: RunContext, plan: Plan, step: PlanStep, adopt = false): Promise<void> {
  if (step.spec.kind === 'qmp') await send(ctx.qmp, step.spec.command, { plan: plan.id, step: step.index });
  else if (step.spec.kind === 'job') await runJobStep(ctx, plan, step, adopt);
  else if (step.spec.kind === 'tool') {
    // A file Strata makes next to the chain for QEMU to open (a live snapshot's overlay).
    await runTools(step.spec.commands);
    if (checkTool(step.spec.check) === false) throw new StrataError('E_TOOL', `${step.label}: the tool succeeded but ${step.spec.check!.layer} does not show the change`, { file: step.spec.check!.layer });
  }
  else await runCompleteStep(ctx, plan, step, adopt);
}

const irreversibleDone = (plan: Plan) => plan.steps.some((s) => s.state === 'done' && isIrreversible(s.spec));

/** Takes back one done step. A READY job is cancelled (no pivot) and dismissed. */
async function undoStep(ctx: RunContext, plan: Plan, s: PlanStep): Promise<boolean> {
  if (s.spec.kind === 'qmp') {
    if (s.spec.undo === null) return false;
    if (s.spec.undo !== 'nothing-to-undo') await send(ctx.qmp, s.spec.undo, { plan: plan.id, step: s.index });
    return true;
  }
  if (s.spec.kind === 'tool') {
    if (s.spec.undo === null) return false;
    if (s.spec.undo !== 'nothing-to-undo') await runTools(s.spec.undo);
    return true;
  }
  if (s.spec.kind !== 'job' || (jobUntil(s.spec) !== 'ready' && jobUntil(s.spec) !== 'pending')) return false;
  const jobs = await ctx.qmp.execute<{ id: string; status: string }[]>('query-jobs');
  if (!jobs.some((j) => j.id === (s.spec as { jobId: string }).jobId)) return true;
  const engine = engineOf(ctx);
  const jobId = s.spec.jobId;
  await engine.sync();
  if (engine.get(jobId)?.state !== 'concluded') {
    await engine.verb(jobId, 'cancel');
    await engine.waitFor(jobId, (x) => x.state === 'concluded');
  }
  await engine.verb(jobId, 'dismiss');
  return true;
}

async function rollBack(ctx: RunContext, plan: Plan, why: string): Promise<PlanOutcome> {
  const undone: string[] = [];
  for (const s of [...plan.steps].reverse()) {
    if (s.state !== 'done') continue;
    let did: boolean;
    try {
      did = await undoStep(ctx, plan, s);
    } catch (e) {
      const error = `${why}; undoing "${s.label}" failed too: ${(e as Error).message}`;
      ctx.store.step(plan.id, s.index, 'failed', (e as Error).message);
      ctx.store.finish(plan.id, 'failed', error, `stopped while rolling back: ${undone.join(', ') || 'nothing undone'}`);
      return { plan: ctx.store.get(plan.id)!, resolution: error };
    }
    if (!did) continue;
    s.state = 'undone';
    if (s.spec.kind === 'job') ctx.store.phase(plan.id, s.index, 'cancelled', `job ${s.spec.jobId} cancelled before the switch-over`);
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
    await ctx.hook?.(`before-step-${step.index}`);
    step.state = 'running';
    ctx.store.step(plan.id, step.index, 'running');
    try {
      await runStep(ctx, plan, step, step.index === adoptIndex);
    } catch (e) {
      if (ctx.qmp.state === 'closed') {
        // QEMU went away (killed, crashed): nothing can be undone or checked over QMP. The step stays
        // running and the plan unfinished, for the next start to finish or undo from what is left.
        ctx.store.step(plan.id, step.index, 'running', `QEMU went away during this step: ${(e as Error).message}`);
        return { plan: ctx.store.get(plan.id)!, resolution: `QEMU went away during "${step.label}" (${(e as Error).message}); the next start finishes or undoes the plan` };
      }
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
    await ctx.hook?.(`after-step-${step.index}`);
  }
  if (ctx.holdOpen) return { plan: ctx.store.get(plan.id)!, resolution: 'every step done; the plan ends when its daemon has stored the bitmaps' };
  ctx.store.finish(plan.id, 'done', null, null);
  return { plan: ctx.store.get(plan.id)!, resolution: 'done' };
}

/**
 * Before its first step a plan leaves a mark in its QEMU: an object (a `secret`, invisible to the
 * guest) named for the plan, which lives exactly as long as that QEMU process. A restart that finds
 * the mark gone knows the QEMU at the socket is another one (restarted, or replaced by a VM started
 * again on the same socket): what the plan did in the old one's memory (bitmaps merged, a node
 * added, a job) is gone, and none of it may be taken as done there. A QEMU that refuses the mark
 * leaves the plan without one; recovery then reads the steps back as before.
 */
async function markSession(ctx: RunContext, plan: Plan): Promise<void> {
  if (!plan.target.socket || plan.target.session) return;
  const id = `strata-plan-${plan.id}-${process.pid}-${Date.now().toString(36)}`;
  try {
    await ctx.qmp.execute('object-add', { 'qom-type': 'secret', id, data: 'strata' }, { tag: { plan: plan.id } });
  } catch {
    return;
  }
  plan.target = { ...plan.target, session: id };
  ctx.store.retarget(plan.id, plan.target);
}

/** The mark removed once the plan has ended (best effort: it dies with QEMU anyway). */
async function unmarkSession(ctx: RunContext, out: PlanOutcome): Promise<PlanOutcome> {
  const id = out.plan.target.session;
  if (id && out.plan.state !== 'running' && ctx.qmp.state === 'ready') await ctx.qmp.execute('object-del', { id }, { tag: { plan: out.plan.id } }).catch(() => {});
  return out;
}

/** Is the QEMU at the socket the one the plan marked? null: the plan has no mark. */
async function sameSession(ctx: RunContext, plan: Plan): Promise<boolean | null> {
  if (!plan.target.session) return null;
  try {
    const objects = await ctx.qmp.execute<{ name: string }[]>('qom-list', { path: '/objects' });
    return objects.some((o) => o.name === plan.target.session);
  } catch (e) {
    // QEMU makes /objects with its first object: a QEMU without it has no mark either
    if (e instanceof QmpExecuteError && e.errorClass === 'DeviceNotFound') return false;
    throw e;
  }
}

/**
 * A plan whose QEMU is gone: nothing is run or undone in the QEMU at the socket now. A file the plan
 * made for the old QEMU (a live snapshot's overlay) is removed when nothing holds it and it holds no
 * data (so no guest write went into it); else it is kept and named.
 */
async function endForeign(ctx: RunContext, plan: Plan): Promise<PlanOutcome> {
  const files: string[] = [];
  for (const s of [...plan.steps].reverse()) {
    if (s.spec.kind !== 'tool' || (s.state !== 'done' && s.state !== 'running') || !Array.isArray(s.spec.undo) || !s.spec.check) continue;
    const file = s.spec.check.layer;
    if (!fs.existsSync(file)) continue;
    let empty = false;
    try {
      const l = openLayer(file, null);
      try {
        empty = allocationExtents(l).count === 0;
      } finally {
        l.file.close();
      }
    } catch {
      empty = false; // unreadable: not Strata's to judge, kept
    }
    if (empty && (await imageLockState(file)) === 'free') {
      await runTools(s.spec.undo);
      ctx.store.step(plan.id, s.index, 'undone', 'after a restart: the QEMU it was made for is gone, and the file holds no data: removed');
      files.push(`removed ${path.basename(file)}, which held no data`);
    } else files.push(`kept ${file} (it is in use or holds data written through it)`);
  }
  const error = `the QEMU at ${plan.target.socket} is not the one plan #${plan.id} ran on (its mark is gone: QEMU was restarted or replaced); what the plan did in that QEMU's memory went with it, and nothing of it is run again in this one`;
  const resolution = `${error}${files.length ? `; ${files.join('; ')}` : ''}. Look at the chain (strata repair) before going on`;
  ctx.store.finish(plan.id, 'failed', error, resolution);
  return { plan: ctx.store.get(plan.id)!, resolution };
}

export async function runPlan(ctx: RunContext, planId: number): Promise<PlanOutcome> {
  const plan = ctx.store.get(planId);
  if (!plan) throw new StrataError('E_BAD_INPUT', `no plan #${planId}`);
  await markSession(ctx, plan);
  return unmarkSession(ctx, await runFrom(ctx, plan, null));
}

/** Finish a plan a crash left running, from what QEMU shows now and the steps' journaled phases. */
export async function recoverPlan(ctx: RunContext, planId: number): Promise<PlanOutcome> {
  const plan = ctx.store.get(planId);
  if (!plan) throw new StrataError('E_BAD_INPUT', `no plan #${planId}`);
  if (plan.state !== 'running') return { plan, resolution: plan.resolution ?? plan.state };
  if ((await sameSession(ctx, plan)) === false) return endForeign(ctx, plan);
  return unmarkSession(ctx, await resume(ctx, plan));
}

async function resume(ctx: RunContext, plan: Plan): Promise<PlanOutcome> {
  let adopt: number | null = null;
  // A job QEMU still runs (or holds at READY) is followed forward, not rolled back.
  let forward = false;
  const held = plan.steps.filter((x) => x.state === 'done' && x.spec.kind === 'job' && x.phase === 'ready');
  if (held.length) {
    const jobs = await ctx.qmp.execute<{ id: string; status: string }[]>('query-jobs');
    forward = held.some((x) => jobs.some((j) => j.id === (x.spec as { jobId: string }).jobId && (j.status === 'ready' || j.status === 'standby' || j.status === 'pending')));
  }
  for (const s of plan.steps.filter((x) => x.state === 'running')) {
    if (s.spec.kind === 'qmp') {
      const took = await checkEffect(ctx.qmp, s.spec.check);
      // Without a check we cannot know: treat it as done so that its undo runs (undo is idempotent
      // for bitmap enable/disable), never as silently skipped.
      s.state = took === false ? 'pending' : 'done';
      ctx.store.step(plan.id, s.index, s.state, `after a restart: ${took === false ? 'QEMU shows no effect' : 'QEMU shows it took effect'}`);
      continue;
    }
    if (s.spec.kind === 'tool') {
      // Read back from the file: made (its undo runs on a rollback) or not (run again). A plan that
      // will be rolled back (nothing irreversible done, no job held) also takes back a half-done
      // step: its undo (removing the file it creates) is safe to run on whatever it left.
      const took = checkTool(s.spec.check);
      const undoAnyway = took === false && !forward && !irreversibleDone(plan) && Array.isArray(s.spec.undo);
      s.state = took === false && !undoAnyway ? 'pending' : 'done';
      ctx.store.step(plan.id, s.index, s.state, `after a restart: ${took === false ? `the file shows no effect${undoAnyway ? '; what the step may have left is taken back' : ''}` : 'the file shows it took effect'}`);
      continue;
    }
    const jobId = s.spec.jobId;
    const jobs = await ctx.qmp.execute<{ id: string; status: string }[]>('query-jobs');
    const j = jobs.find((x) => x.id === jobId);
    const readyStep = s.spec.kind === 'job' && jobUntil(s.spec) === 'ready';
    const pendingStep = s.spec.kind === 'job' && jobUntil(s.spec) === 'pending';
    if (j && ((readyStep && (j.status === 'ready' || j.status === 'standby')) || (pendingStep && j.status === 'pending'))) {
      const held = j.status.toUpperCase();
      s.state = 'done';
      forward = true;
      ctx.store.phase(plan.id, s.index, 'ready', `after a restart: job ${jobId} is ${held}`);
      ctx.store.step(plan.id, s.index, 'done', `after a restart: the job is ${held}`);
    } else if (j) {
      adopt = s.index; // still known to QEMU: follow it to where the step ends
      forward = true;
    } else if (s.phase === 'dismissed' || s.phase === 'concluded') {
      // 'concluded' is written only for a job that ended without an error, just before its dismiss.
      s.state = 'done';
      ctx.store.step(plan.id, s.index, 'done', 'after a restart: the job had concluded and been dismissed');
    } else if (s.phase === null || s.phase === 'starting') {
      // Journaled as about to start, and QEMU has no such job: it was never started.
      s.state = 'pending';
      ctx.store.step(plan.id, s.index, 'pending', 'after a restart: the job had not been started');
    } else {
      s.state = 'failed';
      ctx.store.step(plan.id, s.index, 'failed', `after a restart: QEMU no longer knows job ${jobId} (it was ${s.phase}; did QEMU restart?)`);
      if (irreversibleDone(plan) || s.spec.kind === 'job-complete' || s.spec.kind === 'job-finalize') {
        const error = `the job of "${s.label}" was lost after it was ${s.phase}: check the chain before going on`;
        ctx.store.finish(plan.id, 'failed', error, error);
        return { plan: ctx.store.get(plan.id)!, resolution: error };
      }
      return rollBack(ctx, plan, `the job of "${s.label}" was lost`);
    }
  }
  if (!forward && !irreversibleDone(plan)) return rollBack(ctx, plan, 'Strata stopped before the plan could finish');
  const out = await runFrom(ctx, plan, adopt);
  if ((out.plan.state as string) === 'running') return out; // QEMU went away again: left for the next start
  const resolution = out.plan.state === 'done' ? `resumed after a restart and finished: ${plan.steps.map((s) => s.label).join('; ')}` : out.resolution;
  ctx.store.finish(plan.id, out.plan.state === 'running' ? 'failed' : (out.plan.state as any), out.plan.error, resolution);
  return { plan: ctx.store.get(plan.id)!, resolution };
}
