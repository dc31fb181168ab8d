// strata repair: what is wrong with a chain's checkpoints and the plan that repairs it. Without
// --yes only the findings and the plan are printed; no image is opened for writing. With --yes the
// plan is journaled in SQLite before its first step and run with QEMU's own tools; a repair a
// killed Strata left unfinished on the same image is finished first.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { defaultDataDir } from '../paths.ts';
import { imageLockState } from '../daemon/image-lock.ts';
import { openForRepair, gatherFacts } from '../repair/facts.ts';
import { planRepair, toNewPlan, REPAIR_KIND, type RepairPlan, type CheckpointView } from '../repair/plan.ts';
import { unrepairable, type PrevLayer } from '../repair/findings.ts';
import { runRepairPlan, recoverRepairPlan } from '../repair/run.ts';
import { openDb, type Db } from '../store/db.ts';
import { PlanStore } from '../store/plans.ts';
import { History } from '../store/history.ts';
import { StrataError } from '../errors.ts';

export const REPAIR_HELP = `Usage: strata repair IMAGE [--backing PATH] [--yes] [--json]

Finds what breaks the checkpoints of IMAGE's chain and repairs what can be repaired:
  untracked-overlay, gap   a layer without the checkpoint bitmaps of the layers below it (made
                           outside Strata): the bitmaps are created in it, filled from its
                           allocation (it was created after those checkpoints, so everything
                           allocated in it is a correct, conservative "changes since")
  uncovered-allocation     a layer written before its bitmaps were created: its allocation is
                           merged into its newest bitmap
  in-use-crashed           bitmaps left in-use by a crash (no process holds the image lock):
                           removed; where the checkpoint lives lower too, refilled from allocation
  in-use-live              held by a running QEMU: not a problem, nothing is done
  disabled-newest          the active layer's newest bitmap disabled: its allocation is merged in
                           and it is enabled (refused for a layer without a backing file)
  stale-bitmaps            bitmaps QEMU will discard (autoclear bit cleared): dropped
  backing-missing          the backing file is not at its recorded path: candidates next to the
                           image are listed; --backing PATH picks one (qemu-img rebase -u)
  layer-disappeared, backing-written-after-overlay
                           from the scan history; reported, never repaired silently

Prints every finding, "changes since" each checkpoint before and after, and the exact tool
invocations. Without --yes nothing is written. Exit 2 when something found cannot be repaired.`;

interface Result {
  plan: RepairPlan;
  applied: boolean;
  outcome: { id: number; state: string; resolution: string } | null;
}

function previousScan(db: Db | null, image: string): PrevLayer[] | null {
  if (!db) return null;
  return new History(db).scans(image, 1)[0]?.layers ?? null;
}

async function lookAndMaybeApply(image: string, o: { apply: boolean; backing: string | null; db: Db | null; runtimeDir: string }): Promise<Result> {
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

export async function cmdRepair(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['yes'], options: ['backing'] });
  if (a.flags.has('help')) return out.write(REPAIR_HELP + '\n');
  if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata repair --help');
  const image = path.resolve(a.positionals[0]);
  const apply = a.flags.has('yes');
  const json = a.flags.has('json');
  const dataDir = defaultDataDir();
  const runtimeDir = path.join(dataDir, 'run');
  const dbFile = path.join(dataDir, 'strata.db');
  // Without --yes the history is only read, and only if it exists.
  const db = apply || fs.existsSync(dbFile) ? openDb(dbFile) : null;
  try {
    const recovered: string[] = [];
    if (db) {
      const store = new PlanStore(db);
      for (const p of store.unfinished().filter((x) => x.kind === REPAIR_KIND && x.target.image === image)) {
        if (!apply) {
          recovered.push(`repair plan #${p.id} was interrupted; run with --yes to finish it`);
          continue;
        }
        const r = await recoverRepairPlan({ store }, p.id);
        recovered.push(`repair plan #${p.id} (interrupted): ${r.resolution}`);
      }
    }
    let r = await lookAndMaybeApply(image, { apply, backing: a.options.get('backing') ?? null, db, runtimeDir });
    const results = [r];
    // A backing file put back: the rest of the chain can be read now, and repaired in the same run.
    if (r.applied && r.plan.actions.some((x) => x.kind === 'rebase-unsafe')) {
      r = await lookAndMaybeApply(image, { apply, backing: null, db, runtimeDir });
      results.push(r);
    }
    const first = results[0].plan;
    // what cannot be repaired now, and what the plan would still leave (never silently)
    const bad = [...unrepairable(first.found), ...unrepairable(r.plan.remaining).filter((x) => !first.found.some((f) => f.code === x.code && f.layers.join() === x.layers.join()))];
    const failed = results.find((x) => x.outcome && x.outcome.state !== 'done');
    if (json) {
      out.write(
        JSON.stringify(
          {
            image,
            findings: first.found.map((f) => ({ code: f.code, layers: f.layers, bitmaps: f.bitmaps, message: f.message, repairable: f.repairable, problem: f.problem, ...(f.consequence ? { consequence: f.consequence } : {}) })),
            plan: results.flatMap((x) => x.plan.steps.map((s) => ({ label: s.label, commands: s.spec.commands, undo: s.spec.undo }))),
            before: first.before,
            after: r.plan.after.length ? r.plan.after : r.plan.before,
            consequences: results.flatMap((x) => x.plan.consequences),
            remaining: r.plan.remaining.map((f) => ({ code: f.code, layers: f.layers, bitmaps: f.bitmaps, message: f.message })),
            applied: results.some((x) => x.applied),
            outcomes: results.map((x) => x.outcome).filter((x) => x !== null),
            recovered,
          },
          null,
          2,
        ) + '\n',
      );
    } else {
      writeText(out, results, recovered, apply);
    }
    if (failed) throw new StrataError('E_TOOL', `${image}: the repair did not finish (plan #${failed.outcome!.id} ${failed.outcome!.state}: ${failed.outcome!.resolution}); see strata history --plans`, { file: image });
    if (bad.length) throw new StrataError('E_CHECKPOINT_UNKNOWN', `${image}: cannot be repaired: ${bad.map((f) => `${f.code} (${f.message})`).join('; ')}`, { file: image });
  } finally {
    db?.close();
  }
}

function shortCommand(c: string[]): string {
  // qemu-io gets thousands of -c commands for a big allocation: the text shows a few (--json has all).
  const shown = c[0] === 'qemu-io' && c.length > 14 ? [...c.slice(0, 11), `… ${(c.length - 12) / 2} more -c commands …`, c[c.length - 1]] : c;
  return shown.map((x) => (/^[\w@%+=:,./-]+$/.test(x) ? x : `'${x.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function writeViews(out: Out, title: string, vs: CheckpointView[]): void {
  out.write(`${title}\n`);
  const w = Math.max(4, ...vs.map((v) => v.name.length));
  for (const v of vs) out.write(`  ${v.name.padEnd(w)}  ${v.drawing ?? (v.state === 'gone' ? 'gone' : 'unknown')}${v.state === 'ok' ? `  ${v.dirtyBytes} bytes` : ''}\n`);
}

function writeText(out: Out, results: Result[], recovered: string[], apply: boolean): void {
  for (const line of recovered) out.write(`${line}\n`);
  const first = results[0].plan;
  if (!first.found.length) out.write(`${first.image}: no findings; every checkpoint is as Strata expects\n`);
  for (const f of first.found) {
    out.write(`[${f.code}] ${f.repairable ? 'repairable' : f.problem ? 'NOT repairable' : 'note'}: ${f.message}\n`);
    if (f.consequence) out.write(`    ${f.consequence}\n`);
  }
  for (const r of results) {
    const p = r.plan;
    if (!p.steps.length) continue;
    out.write('\n');
    writeViews(out, 'Changes since each checkpoint, now:', p.before);
    if (p.after.length) writeViews(out, 'After the repair:', p.after);
    out.write('\nSteps and the exact commands:\n');
    p.steps.forEach((s, i) => {
      out.write(`${i + 1}. ${s.label}\n`);
      for (const c of s.spec.commands) out.write(`     ${shortCommand(c)}\n`);
    });
    for (const c of p.consequences.filter((x) => x.startsWith('checkpoint '))) out.write(`  note: ${c}\n`);
    if (r.outcome) out.write(`\nPlan #${r.outcome.id}: ${r.outcome.state}${r.outcome.state === 'done' ? '' : ` (${r.outcome.resolution})`}\n`);
  }
  if (!apply && first.steps.length) out.write('\nNothing was changed. Run again with --yes to apply.\n');
}
