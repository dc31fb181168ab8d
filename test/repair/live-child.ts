// Plays `strata repair --socket SOCK --node NODE --yes` for the live repair tests, with the journal
// in $STRATA_HOME/strata.db. At each point named in WRITES ("point=SOURCE,…") the guest first writes
// into the node: a backup job (sync: top) through the monitor GUEST copies what the qcow2 SOURCE
// allocates into it, through QEMU's block layer (so the node's bitmaps see it). At CRASH_AT it
// SIGKILLs itself; at QEMU_KILL_AT it SIGKILLs the QEMU (QEMU_PID) and goes on.
import path from 'node:path';
import { openDb } from '../../electron/core/store/db.ts';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { repairLive } from '../../electron/core/repair/live.ts';
import { guestWrite } from './live-guest.ts';
import { processAlive } from '../../electron/core/processes.ts';

const [socket, node] = process.argv.slice(2);
const home = process.env.STRATA_HOME!;
const writes = (process.env.WRITES ?? '').split(',').filter(Boolean).map((w) => w.split('='));
const guest = writes.length ? await QmpClient.connect(process.env.GUEST!) : null;
const hook = async (point: string) => {
  for (const [at, source] of writes) if (at === point) await guestWrite(guest!, node, source);
  if (point === process.env.CRASH_AT) process.kill(process.pid, 'SIGKILL');
  if (point === process.env.QEMU_KILL_AT) {
    // the VM's QEMU dies here (SIGKILL), and this Strata goes on as if nothing happened
    const pid = Number(process.env.QEMU_PID);
    process.kill(pid, 'SIGKILL');
    while (processAlive(pid)) await new Promise((r) => setTimeout(r, 10));
  }
};
const db = openDb(path.join(home, 'strata.db'));
const qmp = await QmpClient.connect(socket);
const { report } = await repairLive(qmp, { socket, node }, { apply: true, db, runtimeDir: path.join(home, 'run'), hook });
await qmp.close();
await guest?.close();
console.log(JSON.stringify(report));
