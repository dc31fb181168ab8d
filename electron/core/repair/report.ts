// One repair as the CLI and the app both run it: the findings of a chain, the plan with its exact
// tool invocations and "changes since" every checkpoint before and after, and, when asked, the plan
// journaled and applied (a repair a killed Strata left unfinished on the same image is finished
// first). The answer is the stable JSON shape of `strata repair --json`.
import fs from 'node:fs';
import { imageLockState } from '../daemon/image-lock.ts';
import { openForRepair, gatherFacts } from './facts.ts';
import { planRepair, toNewPlan, REPAIR_KIND, type RepairPlan, type CheckpointView } from './plan.ts';
import { unrepairable, type Finding, type PrevLayer } from './findings.ts';
import { runRepairPlan, recoverRepairPlan } from './run.ts';
import type { Db } from '../store/db.ts';
import { PlanStore } from '../store/plans.ts';
import { History } from '../store/history.ts';
import { StrataError } from '../errors.ts';
import { backupExpectations } from './backup-expectations.ts';
import { openPartialChain } from '../qcow2/chain.ts';

/** The layers that can be read (the image itself at least). */
function chainFiles(image: string): string[] {
  try {
    const c = openPartialChain(image);
    try {
      return c.layers.map((l) => l.path);
    } finally {
      c.close();
    }
  } catch {
    return [image];
  }
}

export interface RepairReport {
  image: string;
  findings: {
    code: string;
    layers: string[];
    bitmaps: string[];
    message: string;
    repairable: boolean;
    problem: boolean;
    consequence?: string;
    /** backup-checkpoint-missing: the repository whose next backup will be full */
    repository?: string;
  }[];
  plan: { label: string; commands: string[][]; undo: unknown }[];
  before: CheckpointView[];
  after: CheckpointView[];
  consequences: string[];
  remaining: { code: string; layers: string[]; bitmaps: string[]; message: string }[];
  applied: boolean;
  outcomes: { id: number; state: string; resolution: string }[];
  recovered: string[];
  /** what cannot be repaired, in words (empty when everything found can be) */
  unrepairable: string[];
}

export interface Result {
  plan: RepairPlan;
  applied: boolean;
  outcome: { id: number; state: string; resolution: string } | null;
}

/** A finding as `strata repair --json` shows it (the offline and the live repair alike). */
export function findingJson(f: Finding): RepairReport['findings'][number] {
  return { code: f.code, layers: f.layers, bitmaps: f.bitmaps, message: f.message, repairable: f.repairable, problem: f.problem, ...(f.consequence ? { consequence: f.consequence } : {}) };
}

export function remainingJson(f: Finding): RepairReport['remaining'][number] {
  return { code: f.code, layers: f.layers, bitmaps: f.bitmaps, message: f.message };
}

function previousScan(db: Db | null, image: string): PrevLayer[] | null {
  if (!db) return null;
  return new History(db).scans(image, 1)[0]?.layers ?? null;
}

/** One look at the image (read-only) and, with apply, its plan journaled and run: no second pass. */
export async function lookAndMaybeApply(image: string, o: { apply: boolean; backing: string | null; db: Db | null; runtimeDir: string }): Promise<Result> {
  if (!fs.existsSync(image)) throw new StrataError('E_NOT_FOUND', `${image}: no such file`, { file: image });
  // The reader first: a bad image is refused with its typed error before any QEMU tool looks at it.
  const opened = openForRepair(image);
  let plan: RepairPlan;
  try {
    const lock = await imageLockState(image);
    const facts = gatherFacts(opened, { lock, previous: previousScan(o.db, image), chosenBacking: o.backing });
    plan = planRepair(opened.contents, facts, o.runtimeDir, `${process.pid}-${Date.now().toString(36)}`);
  } finally {
    opened.chain.close();
  }
  if (!o.apply || plan.steps.length === 0) return { plan, applied: false, outcome: null };
  const store = new PlanStore(o.db!);
  fs.mkdirSync(o.runtimeDir, { recursive: true });
  const id = store.create(toNewPlan(plan));
  const out = await runRepairPlan({ store, allocations: plan.allocations }, id);
  return { plan, applied: out.plan.state === 'done', outcome: { id, state: out.plan.state, resolution: out.resolution } };
}


/** The whole run: recovery of interrupted repairs, the look, the plan, and with apply the repair. */
export async function repairImage(image: string, o: { apply: boolean; backing: string | null; db: Db | null; runtimeDir: string }): Promise<{ report: RepairReport; results: Result[] }> {
  const recovered: string[] = [];
  if (o.db) {
    const store = new PlanStore(o.db);
    for (const p of store.unfinished().filter((x) => x.kind === REPAIR_KIND && x.target.image === image)) {
      if (!o.apply) {
        recovered.push(`repair plan #${p.id} was interrupted; run with --yes to finish it`);
        continue;
      }
      const r = await recoverRepairPlan({ store }, p.id);
      recovered.push(`repair plan #${p.id} (interrupted): ${r.resolution}`);
    }
  }
  let r = await lookAndMaybeApply(image, { apply: o.apply, backing: o.backing, db: o.db, runtimeDir: o.runtimeDir });
  const results = [r];
  // A backing file put back: the rest of the chain can be read now, and repaired in the same run.
  if (r.applied && r.plan.actions.some((x) => x.kind === 'rebase-unsafe')) {
    r = await lookAndMaybeApply(image, { apply: o.apply, backing: null, db: o.db, runtimeDir: o.runtimeDir });
    results.push(r);
  }
  const first = results[0].plan;
  // what cannot be repaired now, and what the plan would still leave (never silently)
  const bad = [...unrepairable(first.found), ...unrepairable(r.plan.remaining).filter((x) => !first.found.some((f) => f.code === x.code && f.layers.join() === x.layers.join()))];
  const report: RepairReport = {
    image,
    findings: first.found.map(findingJson),
    plan: results.flatMap((x) => x.plan.steps.map((s) => ({ label: s.label, commands: s.spec.commands, undo: s.spec.undo }))),
    before: first.before,
    after: r.plan.after.length ? r.plan.after : r.plan.before,
    consequences: results.flatMap((x) => x.plan.consequences),
    remaining: r.plan.remaining.map(remainingJson),
    applied: results.some((x) => x.applied),
    outcomes: results.map((x) => x.outcome).filter((x): x is NonNullable<typeof x> => x !== null),
    recovered,
    unrepairable: bad.map((f) => `${f.code} (${f.message})`),
  };
  // What backup repositories expect of this disk (a fact to act on, never a reason for exit 2).
  if (o.db) report.findings.push(...backupExpectations(o.db, chainFiles(image), report.after).map(({ backup: _b, ...f }) => f));
  return { report, results };
}
