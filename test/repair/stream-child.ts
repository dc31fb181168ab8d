// Plays `strata stream TOP --yes` for the crash tests: plans the stream as the CLI does, journals it
// in $STRATA_HOME/strata.db and runs it, SIGKILLing itself at CRASH_AT; at HIDE_AT it moves the
// base (BASE) away, so that the copy of its data fails.
import fs from 'node:fs';
import path from 'node:path';
import { openDb } from '../../electron/core/store/db.ts';
import { PlanStore } from '../../electron/core/store/plans.ts';
import { openChain } from '../../electron/core/qcow2/chain.ts';
import { ChainContents } from '../../electron/core/checkpoints.ts';
import { planStream, streamToNewPlan } from '../../electron/core/repair/stream.ts';
import { runRepairPlan } from '../../electron/core/repair/run.ts';

const image = path.resolve(process.argv[2]);
const home = process.env.STRATA_HOME!;
const chain = openChain(image);
const plan = planStream(new ChainContents(chain), { base: null, lock: 'free' });
chain.close();
const store = new PlanStore(openDb(path.join(home, 'strata.db')));
const id = store.create(streamToNewPlan(plan));
const hook = (p: string) => {
  if (p === process.env.CRASH_AT) process.kill(process.pid, 'SIGKILL');
  if (p === process.env.HIDE_AT) fs.renameSync(process.env.BASE!, process.env.BASE! + '.away');
};
const out = await runRepairPlan({ store, hook }, id);
console.log(JSON.stringify({ state: out.plan.state, steps: plan.steps.length }));
