// Plays a Strata that runs a live snapshot or stream (the CLI's own core functions) and, for the
// tests, SIGKILLs itself at a named point of the plan (CRASH_AT), or lets the guest write while the
// plan runs (WRITE_DURING: a writer starts when the snapshot's overlay is open, or when the stream
// job runs, and keeps writing through the switch-over or the job). Prints one JSON line when it is
// not killed.
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { defaultDataDir } from '../../electron/core/paths.ts';
import { snapshotLive } from '../../electron/core/repair/snapshot-live.ts';
import { streamLive } from '../../electron/core/repair/stream-live.ts';
import { exportNode, unexport, backgroundWriter } from './live-chain.ts';
import { waitExit } from './helpers.ts';
import { processAlive } from '../../electron/core/processes.ts';

const [op, socket, node, nbd, newTop] = process.argv.slice(2);
const qmp = await QmpClient.connect(socket);
const db = openDb(path.join(defaultDataDir(), 'strata.db'));
let writer: ChildProcess | null = null;
let duringJob: boolean | null = null;
const hook = async (point: string) => {
  if (point === process.env.CRASH_AT) process.kill(process.pid, 'SIGKILL');
  if (point === process.env.QEMU_KILL_AT) {
    // the VM's QEMU dies here (SIGKILL), and this Strata goes on as if nothing happened
    const pid = Number(process.env.QEMU_PID);
    process.kill(pid, 'SIGKILL');
    while (processAlive(pid)) await new Promise((r) => setTimeout(r, 10));
  }
  if (process.env.WRITE_DURING && point === (op === 'snapshot' ? 'after-step-1' : 'job-running')) {
    await exportNode(qmp, nbd, node);
    const count = async () => ((await qmp.execute<any[]>('query-named-block-nodes', { flat: true })).find((n) => n['node-name'] === node)['dirty-bitmaps'] as any[]).find((b) => b.name === 'b2').count;
    const before = await count();
    writer = backgroundWriter(nbd, Number(process.env.WRITE_DURING), 0x55);
    // The plan goes on once the guest's writes reach the node (and while the writer goes on).
    while ((await count()) === before) await new Promise((r) => setImmediate(r));
    // A stream job still running once the guest's writes reach the top: they happened during it.
    if (op === 'stream') duringJob = (await qmp.execute<{ status: string }[]>('query-jobs')).some((j) => j.status === 'running');
  }
};
const runtimeDir = path.join(defaultDataDir(), 'run');
const r =
  op === 'snapshot'
    ? await snapshotLive(qmp, { socket, node }, newTop, { apply: true, db, runtimeDir, checkpoint: 'c3', hook })
    : await streamLive(qmp, { socket, node }, { apply: true, db, runtimeDir, base: process.env.BASE, speed: Number(process.env.SPEED ?? 0), hook });
if (writer) {
  const exited = (writer as ChildProcess).exitCode;
  await waitExit(writer);
  await unexport(qmp);
  console.error(`writer still running at the end of the plan: ${exited === null}`);
}
console.log(JSON.stringify({ state: r.outcome?.state, resolution: r.outcome?.resolution, writerCode: (writer as ChildProcess | null)?.exitCode ?? null, duringJob }));
db.close();
await qmp.close();
process.exit(0);
