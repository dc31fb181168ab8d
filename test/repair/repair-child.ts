// Plays `strata repair --yes` for the crash tests: plans the repair of IMAGE as the CLI does,
// journals it in $STRATA_HOME/strata.db and runs it, SIGKILLing itself at CRASH_AT; at HIDE_AT it
// moves IMAGE away (to IMAGE.away) so that the step's tool fails.
import fs from 'node:fs';
import path from 'node:path';
import { openDb } from '../../electron/core/store/db.ts';
import { PlanStore } from '../../electron/core/store/plans.ts';
import { openForRepair, gatherFacts } from '../../electron/core/repair/facts.ts';
import { planRepair, toNewPlan } from '../../electron/core/repair/plan.ts';
import { runRepairPlan } from '../../electron/core/repair/run.ts';

const image = path.resolve(process.argv[2]);
const home = process.env.STRATA_HOME!;
const opened = openForRepair(image);
const plan = planRepair(opened.contents, gatherFacts(opened, { lock: 'free', previous: null }), path.join(home, 'run'), 'crash');
opened.chain.close();
const store = new PlanStore(openDb(path.join(home, 'strata.db')));
const id = store.create(toNewPlan(plan));
const hook = (p: string) => {
  if (p === process.env.CRASH_AT) process.kill(process.pid, 'SIGKILL');
  if (p === process.env.HIDE_AT) fs.renameSync(image, image + '.away');
};
const out = await runRepairPlan({ store, hook }, id);
console.log(JSON.stringify({ state: out.plan.state }));
