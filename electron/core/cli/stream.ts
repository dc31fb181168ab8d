// strata stream: the data of the layers below the top pulled into it (offline), keeping every
// checkpoint: their bitmaps are carried into the top in the same journaled plan. Without --yes only
// the plan is printed.
import path from 'node:path';
import { parseArgs } from './args.ts';
import type { Out } from './output.ts';
import { imageLockState } from '../daemon/image-lock.ts';
import { withChain } from '../qcow2/chain.ts';
import { ChainContents } from '../checkpoints.ts';
import { planStream, streamToNewPlan, STREAM_KIND, type StreamPlan } from '../repair/stream.ts';
import { printOrApply, recoverLeft, withPlanStore, writeStepsAndOutcome, type PlanOutcome } from './offline-plan.ts';
import { StrataError } from '../errors.ts';

export const STREAM_HELP = `Usage: strata stream TOP [--base LAYER] [--yes] [--json]
       strata stream --socket PATH --node NODE [--base LAYER] [--yes] [--json]

Pulls into TOP (the chain's active layer, offline) the data of every layer between it and LAYER, or
of every layer below it without --base (TOP becomes standalone); those layers leave TOP's chain (their
files are not deleted). In the same journaled plan every valid bitmap of those layers is carried into
TOP (created there if missing, merged from each copy), so "changes since" every checkpoint still
covers every write. Refused while another process holds TOP's lock. Without --yes the plan is printed
and nothing is written.

With --socket PATH --node NODE the stream runs live on a running QEMU's disk (NODE: its top node;
LAYER: a node name or a file of its chain): one transaction carries the bitmaps of the layers that
leave the chain into NODE, then block-stream pulls their data in while the guest writes (NODE's
bitmaps keep recording; QEMU does not mark what the stream copies). QEMU writes LAYER's file name,
absolute, as NODE's new backing file.`;

function write(out: Out, p: StreamPlan, json: boolean, applied: boolean, outcome: PlanOutcome | null): void {
  if (json) {
    const plan = p.steps.map((s) => ({ label: s.label, commands: s.spec.commands, undo: s.spec.undo }));
    out.write(JSON.stringify({ image: p.image, active: p.image, base: p.base, removed: p.removed, carried: p.carried, notCarried: p.notCarried, refused: p.refused, plan, before: p.before, after: p.after, applied, outcome }, null, 2) + '\n');
    return;
  }
  out.write(`Stream ${p.removed.map((f) => path.basename(f)).join(', ') || 'nothing'} into ${p.image}${p.base ? ` (it stays backed by ${p.base})` : ' (it becomes standalone)'}\n`);
  for (const c of p.carried) out.write(`  ${c.created ? 'carried' : 'merged'}: ${c.name} from ${c.from.map((f) => path.basename(f)).join(', ')}\n`);
  for (const n of p.notCarried) out.write(`  not carried: ${n.name} (${path.basename(n.layer)}): ${n.why}\n`);
  for (const v of p.after) {
    const was = p.before.find((b) => b.name === v.name);
    out.write(`  ${v.name}: ${was?.state ?? 'new'}${was?.drawing ? ` ${was.drawing}` : ''} -> ${v.state}${v.drawing ? ` ${v.drawing}` : ''}\n`);
  }
  writeStepsAndOutcome(out, p.steps, outcome, p.refused);
}

export async function cmdStream(argv: string[], out: Out): Promise<void> {
  const a = parseArgs(argv, { flags: ['yes'], options: ['base', 'socket', 'node'] });
  if (a.flags.has('help')) return out.write(STREAM_HELP + '\n');
  if (a.options.has('socket') || a.options.has('node')) return (await import('./live-op.ts')).cmdStreamLive(a, out);
  if (a.positionals.length !== 1) throw new StrataError('E_BAD_INPUT', 'wrong arguments; see strata stream --help');
  const image = path.resolve(a.positionals[0]);
  const baseOpt = a.options.get('base');
  const apply = a.flags.has('yes');
  const json = a.flags.has('json');
  await withPlanStore(apply, async (store) => {
    if (await recoverLeft(store, STREAM_KIND, image, json, out, 'stream', () => image)) return;
    const lock = await imageLockState(image);
    const plan = withChain(image, (c) => planStream(new ChainContents(c), { base: baseOpt === undefined ? null : path.resolve(baseOpt), lock }));
    await printOrApply({ store, apply, image, file: image, what: 'stream', plan, toNewPlan: streamToNewPlan, write: (applied, outcome) => write(out, plan, json, applied, outcome) });
  });
}
