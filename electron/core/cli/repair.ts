// strata repair: what is wrong with a chain's checkpoints and the plan that repairs it. Without
// --yes only the findings and the plan are printed; no image is opened for writing. With --yes the
// plan is journaled in SQLite before its first step and run with QEMU's own tools; a repair a
// killed Strata left unfinished on the same image is finished first.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { defaultDataDir } from '../paths.ts';
import type { CheckpointView } from '../repair/plan.ts';
import { repairImage, type Result } from '../repair/report.ts';
import { openDb } from '../store/db.ts';
import { StrataError } from '../errors.ts';

export const REPAIR_HELP = `Usage: strata repair IMAGE [--backing PATH] [--yes] [--json]
       strata repair --socket PATH --node NODE [--yes] [--json]

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
  backup-checkpoint-missing
                           a backup repository's latest checkpoint is gone from the chain (or stays
                           unknown): its next backup will be full; reported, nothing to repair

Prints every finding, "changes since" each checkpoint before and after, and the exact tool
invocations. Without --yes nothing is written. Exit 2 when something found cannot be repaired.

With --socket and --node, the layer a running QEMU writes (NODE, its qcow2 node) is repaired live,
without pausing the guest: the missing checkpoint bitmaps are added recording first, then the node's
own allocation is read over NBD and merged into them through QEMU from a scratch image Strata
writes. Only that finding (untracked-overlay, or a gap in that layer) is repaired live; the others
are reported and need the VM stopped. Without --yes only queries are sent.`;

export async function cmdRepair(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['yes'], options: ['backing', 'socket', 'node'] });
  if (a.flags.has('help')) return out.write(REPAIR_HELP + '\n');
  if (a.options.has('socket') || a.options.has('node')) return (await import('./repair-live.ts')).cmdRepairLive(a, out);
  if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata repair --help');
  const image = path.resolve(a.positionals[0]);
  const apply = a.flags.has('yes');
  const dataDir = defaultDataDir();
  const dbFile = path.join(dataDir, 'strata.db');
  // Without --yes the history is only read, and only if it exists.
  const db = apply || fs.existsSync(dbFile) ? openDb(dbFile) : null;
  try {
    const { report, results } = await repairImage(image, { apply, backing: a.options.get('backing') ?? null, db, runtimeDir: path.join(dataDir, 'run') });
    const { unrepairable: bad, ...shape } = report;
    if (a.flags.has('json')) out.write(JSON.stringify(shape, null, 2) + '\n');
    else writeText(out, results, report.recovered, apply);
    const failed = results.find((x) => x.outcome && x.outcome.state !== 'done');
    if (failed) throw new StrataError('E_TOOL', `${image}: the repair did not finish (plan #${failed.outcome!.id} ${failed.outcome!.state}: ${failed.outcome!.resolution}); see strata history --plans`, { file: image });
    if (bad.length) throw new StrataError('E_CHECKPOINT_UNKNOWN', `${image}: cannot be repaired: ${bad.join('; ')}`, { file: image });
  } finally {
    db?.close();
  }
}

export function shortCommand(c: string[]): string {
  // qemu-io gets thousands of -c commands for a big allocation: the text shows a few (--json has all).
  const shown = c[0] === 'qemu-io' && c.length > 14 ? [...c.slice(0, 11), `… ${(c.length - 12) / 2} more -c commands …`, c[c.length - 1]] : c;
  return shown.map((x) => (/^[\w@%+=:,./-]+$/.test(x) ? x : `'${x.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function writeViews(out: Out, title: string, vs: CheckpointView[]): void {
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
