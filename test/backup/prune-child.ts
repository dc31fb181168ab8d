// Plays `strata prune --repo REPO --keep-last N --yes` for the crash tests: the journaled prune the
// CLI runs, in $STRATA_HOME/strata.db, SIGKILLing itself as the step CRASH_AT begins (its journal
// state already written, nothing of the step done).
import path from 'node:path';
import { openDb } from '../../electron/core/store/db.ts';
import { journaledPrune } from '../../electron/core/backup/activity.ts';

const [repo, keepLast] = process.argv.slice(2);
const db = openDb(path.join(process.env.STRATA_HOME!, 'strata.db'));
const plan = await journaledPrune(db, repo, { keepLast: Number(keepLast), keepDaily: 0, keepWeekly: 0 }, null, (step) => {
  if (step === process.env.CRASH_AT) process.kill(process.pid, 'SIGKILL');
});
console.log(JSON.stringify(plan));
