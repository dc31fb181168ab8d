// Plays `strata backup` for the crash tests: the backup the CLI takes (its data in $STRATA_HOME),
// SIGKILLing itself (or sending itself $SIGNAL, e.g. SIGSTOP: a backup that is alive but paused)
// when the backup reaches the point CRASH_AT (take.ts TakeOptions.hook), so the moment is a step of
// the backup, not a time. ARGS: one JSON object of TakeOptions (image or live, repo, level).
import { takeBackup } from '../../electron/core/backup/take.ts';

const o = JSON.parse(process.argv[2]);
await takeBackup({
  level: null, since: null, compress: false, dryRun: false, ...o, dataDir: process.env.STRATA_HOME!,
  hook: (point) => {
    if (point === process.env.CRASH_AT) process.kill(process.pid, (process.env.SIGNAL ?? 'SIGKILL') as NodeJS.Signals);
  },
});
console.log('finished');
