// Plays `strata commit IMAGE --yes` (offline, Strata's own daemon) for the kill-QEMU tests: starts
// the daemon read-write, plans the commit (TOP, BASE, SCHEME, SPEED from the environment), journals
// it in $STRATA_HOME/strata.db and runs it; at the hook point CRASH_AT it SIGKILLs the daemon, not
// itself, and waits until the kernel shows it dead (a zombie or gone) before the plan goes on; at
// SELF_AT it SIGKILLs itself (Strata killed, its daemon left running). The plan runs as the CLI runs
// it (runOfflineCommit: done once the daemon has stored the bitmaps). Prints one JSON line.
import fs from 'node:fs';
import path from 'node:path';
import { StorageDaemon, TOP_NODE } from '../../electron/core/daemon/storage-daemon.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { PlanStore } from '../../electron/core/store/plans.ts';
import { planCommitWithBitmaps } from '../../electron/core/plans/commit-with-bitmaps.ts';
import { runOfflineCommit } from '../../electron/core/plans/offline-recovery.ts';

const image = path.resolve(process.argv[2]);
const home = process.env.STRATA_HOME!;
const runtimeDir = path.join(home, 'run');
const env = process.env;
const daemon = await StorageDaemon.start({ image, runtimeDir, readOnly: false });
const pid = daemon.pid!;
const plan = await planCommitWithBitmaps(daemon.qmp, { socket: daemon.socket, image, daemonPid: pid }, TOP_NODE, `strata-commit-kill-${process.pid}`, {
  runtimeDir,
  top: env.TOP || undefined,
  base: env.BASE || undefined,
  scheme: (env.SCHEME as 'seed' | 'libvirt') || 'seed',
  speed: Number(env.SPEED ?? 0) || undefined,
});
const store = new PlanStore(openDb(path.join(home, 'strata.db')));
const id = store.create(plan);
const dead = () => {
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
};
let killed = false;
const hook = (p: string) => {
  if (p === env.CRASH_AT && !killed) {
    killed = true;
    process.kill(pid, 'SIGKILL');
    while (!dead()); // no QMP command may reach QEMU after this point
  }
  if (p === env.SELF_AT) process.kill(process.pid, 'SIGKILL');
};
const out = await runOfflineCommit({ store, hook }, id, daemon, runtimeDir);
console.log(JSON.stringify({ killed, state: store.get(id)!.state, resolution: out.resolution, steps: out.plan.steps.map((s) => s.label) }));
