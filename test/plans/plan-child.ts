// Plays the Strata core for the crash tests: runs the seed's plan and SIGKILLs itself at a named
// point (CRASH_AT), or recovers every unfinished plan. Prints one JSON line.
import path from 'node:path';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { PlanStore } from '../../electron/core/store/plans.ts';
import { planCommitWithBitmaps } from '../../electron/core/plans/commit-with-bitmaps.ts';
import { runPlan, recoverPlan } from '../../electron/core/plans/runner.ts';

const [mode, dbPath, socket] = process.argv.slice(2);
const qmp = await QmpClient.connect(socket);
const store = new PlanStore(openDb(dbPath));
if (mode === 'run') {
  const crashAt = process.env.CRASH_AT;
  const plan = await planCommitWithBitmaps(qmp, { socket, image: null, daemonPid: null }, 'top', 'strata-commit-1', {
    speed: Number(process.env.SPEED ?? 0),
    runtimeDir: path.join(path.dirname(dbPath), 'run'),
  });
  const id = store.create(plan);
  const out = await runPlan({ qmp, store, hook: (p) => p === crashAt && process.kill(process.pid, 'SIGKILL') }, id);
  console.log(JSON.stringify({ state: out.plan.state, resolution: out.resolution }));
} else {
  const results = [];
  for (const p of store.unfinished()) results.push(await recoverPlan({ qmp, store }, p.id));
  console.log(JSON.stringify(results.map((r) => ({ state: r.plan.state, resolution: r.resolution, steps: r.plan.steps.map((s) => s.state) }))));
}
await qmp.close();
process.exit(0);
