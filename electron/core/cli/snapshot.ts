// strata snapshot: a new overlay on an offline image that keeps every checkpoint (the checkpoint
// bitmaps created in the new top in the same journaled plan). Without --yes only the plan is printed.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { imageLockState } from '../daemon/image-lock.ts';
import { withChain } from '../qcow2/chain.ts';
import { ChainContents } from '../checkpoints.ts';
import { planSnapshot, snapshotToNewPlan, SNAPSHOT_KIND, type SnapshotPlan } from '../repair/snapshot.ts';
import { printOrApply, recoverLeft, withPlanStore, writeStepsAndOutcome, type PlanOutcome } from './offline-plan.ts';
import { StrataError } from '../errors.ts';


export const SNAPSHOT_HELP = `Usage: strata snapshot IMAGE NEW_TOP [--checkpoint NAME] [--yes] [--json]
       strata snapshot --socket PATH --node NODE NEW_TOP [--new-node NAME] [--checkpoint NAME] [--yes] [--json]

Creates NEW_TOP, a qcow2 overlay on IMAGE (the chain's active layer, offline), and in the same
journaled plan a recording bitmap of the same name and granularity in NEW_TOP for each valid
recording bitmap of IMAGE (libvirt's recipe), so "changes since" every checkpoint still covers every
write. --checkpoint NAME also adds a new checkpoint marking the snapshot time. Refused while another
process holds IMAGE's lock. Without --yes the plan is printed and nothing is written.

With --socket PATH --node NODE the snapshot is taken live on a running QEMU's disk (NODE: its top
node): NEW_TOP is created with the layer NODE holds as its backing file, opened in that QEMU as node
NAME (default: NEW_TOP's file name without extension), and one QMP transaction switches the disk
over to it (blockdev-snapshot) and adds its bitmaps, so no write goes untracked. The old top's
bitmaps stay as they are. The disk's top node is NAME afterwards.`;

function write(out: Out, p: SnapshotPlan, json: boolean, applied: boolean, outcome: PlanOutcome | null): void {
  if (json) {
    out.write(
      JSON.stringify(
        {
          image: p.image,
          active: applied ? p.newTop : p.image,
          bitmaps: p.bitmaps,
          notCarried: p.notCarried,
          refused: p.refused,
          plan: p.steps.map((s) => ({ label: s.label, commands: s.spec.commands, undo: s.spec.undo })),
          before: p.before,
          after: p.after,
          applied,
          outcome,
        },
        null,
        2,
      ) + '\n',
    );
    return;
  }
  out.write(`Snapshot ${p.image} -> ${p.newTop}\n`);
  for (const n of p.notCarried) out.write(`  not carried: ${n.name}: ${n.why}\n`);
  for (const v of p.after) out.write(`  ${v.name}: ${p.before.find((b) => b.name === v.name)?.state ?? 'new'} -> ${v.state}\n`);
  writeStepsAndOutcome(out, p.steps, outcome, p.refused);
}

export async function cmdSnapshot(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['yes'], options: ['checkpoint', 'socket', 'node', 'new-node'] });
  if (a.flags.has('help')) return out.write(SNAPSHOT_HELP + '\n');
  if (a.options.has('socket') || a.options.has('node') || a.options.has('new-node')) return (await import('./live-op.ts')).cmdSnapshotLive(a, out);
  if (a.positionals.length !== 2) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata snapshot --help');
  const image = path.resolve(a.positionals[0]);
  const newTop = path.resolve(a.positionals[1]);
  const apply = a.flags.has('yes');
  const json = a.flags.has('json');
  await withPlanStore(apply, async (store) => {
    // A snapshot into NEW_TOP that a killed Strata left unfinished is finished, and that is all.
    if (await recoverLeft(store, SNAPSHOT_KIND, newTop, json, out, 'snapshot', (done) => (done ? newTop : image))) return;
    if (fs.existsSync(newTop)) throw new StrataError('E_BAD_INPUT', `${newTop}: already exists; a snapshot creates a new file`, { file: newTop });
    const lock = await imageLockState(image);
    const plan = withChain(image, (c) => planSnapshot(new ChainContents(c), newTop, { checkpoint: a.options.get('checkpoint') ?? null, lock }));
    await printOrApply({ store, apply, image, file: newTop, what: 'snapshot', plan, toNewPlan: snapshotToNewPlan, write: (applied, outcome) => write(out, plan, json, applied, outcome) });
  });
}

