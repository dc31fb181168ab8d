// The part every offline chain operation of the CLI shares (snapshot, stream): a plan of the same
// kind on the same image that a killed Strata left unfinished is finished first, and that is all;
// otherwise the new plan is journaled, run, and its outcome reported.
import path from 'node:path';
import type { Out } from './output.ts';
import { defaultDataDir } from '../paths.ts';
import { runRepairPlan, recoverRepairPlan } from '../repair/run.ts';
import { openDb } from '../store/db.ts';
import { PlanStore } from '../store/plans.ts';
import type { NewPlan } from '../plans/types.ts';
import type { RepairStep } from '../repair/plan.ts';
import { StrataError } from '../errors.ts';

export interface PlanOutcome {
  id: number;
  state: string;
  resolution: string;
}

/** Opens the journal (only when the plan is applied) for `fn`, and closes it. */
export async function withPlanStore<T>(apply: boolean, fn: (store: PlanStore | null) => Promise<T>): Promise<T> {
  const db = apply ? openDb(path.join(defaultDataDir(), 'strata.db')) : null;
  try {
    return await fn(db ? new PlanStore(db) : null);
  } finally {
    db?.close();
  }
}

/**
 * Finishes the plans of `kind` on `image` a crash left running; prints one line (or JSON) each.
 * `activeAfter` names the active image once such a plan is done. Answers whether there were any.
 */
export async function recoverLeft(store: PlanStore | null, kind: string, image: string, json: boolean, out: Out, what: string, activeAfter: (done: boolean) => string): Promise<boolean> {
  const left = store?.unfinished().filter((x) => x.kind === kind && x.target.image === image) ?? [];
  for (const p of left) {
    const r = await recoverRepairPlan({ store: store! }, p.id);
    const done = r.plan.state === 'done';
    out.write(json ? JSON.stringify({ recovered: p.id, state: r.plan.state, resolution: r.resolution, active: activeAfter(done) }) + '\n' : `${what} plan #${p.id} (interrupted): ${r.resolution}\n`);
  }
  return left.length > 0;
}

/** Journals the plan before its first step, then runs it. */
export async function journalAndRun(store: PlanStore, plan: NewPlan): Promise<PlanOutcome> {
  const id = store.create(plan);
  const r = await runRepairPlan({ store }, id);
  return { id, state: r.plan.state, resolution: r.resolution };
}

export function failUnlessDone(o: PlanOutcome, file: string, what: string): void {
  if (o.state !== 'done') throw new StrataError('E_TOOL', `${file}: the ${what} did not finish (${o.resolution})`, { file });
}

/** The steps with their exact commands, then the outcome, or that nothing was changed. */
export function writeStepsAndOutcome(out: Out, steps: RepairStep[], outcome: PlanOutcome | null, refused: string | null): void {
  if (steps.length) out.write('\nSteps and the exact commands:\n');
  steps.forEach((s, i) => {
    out.write(`${i + 1}. ${s.label}\n`);
    for (const c of s.spec.commands) out.write(`     ${c.join(' ')}\n`);
  });
  if (outcome) out.write(`\nPlan #${outcome.id}: ${outcome.state}\n`);
  else if (!refused) out.write('\nNothing was changed. Run again with --yes to apply.\n');
}

/**
 * Without --yes (or when refused) prints the plan, and a refusal is an E_BAD_INPUT naming the image;
 * with --yes journals and runs it, prints the outcome, and fails unless it finished.
 */
export async function printOrApply<P extends { refused: string | null }>(o: {
  store: PlanStore | null;
  apply: boolean;
  image: string;
  /** the file the outcome is about (the active image afterwards) */
  file: string;
  what: string;
  plan: P;
  toNewPlan: (p: P) => NewPlan;
  write: (applied: boolean, outcome: PlanOutcome | null) => void;
}): Promise<void> {
  if (!o.apply || o.plan.refused) {
    o.write(false, null);
    if (o.plan.refused) throw new StrataError('E_BAD_INPUT', o.plan.refused, { file: o.image });
    return;
  }
  const outcome = await journalAndRun(o.store!, o.toNewPlan(o.plan));
  o.write(outcome.state === 'done', outcome);
  failUnlessDone(outcome, o.file, o.what);
}
