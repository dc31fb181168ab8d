// The guest of the live repair tests, inside the QEMU that holds the node: its writes are backup
// jobs into the node (target), so they go through QEMU's block layer and its bitmaps see them, and
// they hold no permission that Strata's read-only NBD export conflicts with (a writable FUSE or NBD
// export would: QEMU runs one NBD server, and FUSE takes the resize permission that NBD unshares).
import type { QmpClient } from '../../electron/core/qmp/client.ts';

let n = 0;

/** Starts a backup job copying SOURCE (a qcow2 file) into NODE: sync top copies what SOURCE allocates, full copies everything. */
export async function startGuestJob(qmp: QmpClient, node: string, source: string, o: { sync: 'top' | 'full'; speed?: number }): Promise<string> {
  const id = `guest-${process.pid}-${++n}`;
  await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': `${id}-src`, 'read-only': true, file: { driver: 'file', filename: source } });
  await qmp.execute('blockdev-backup', { 'job-id': id, device: `${id}-src`, target: node, sync: o.sync, 'auto-dismiss': false, ...(o.speed ? { speed: o.speed } : {}) });
  return id;
}

/** Waits for the job to conclude (cancelling it first when asked), dismisses it, closes its source. */
export async function endGuestJob(qmp: QmpClient, id: string, cancel = false): Promise<void> {
  const concluded = qmp.waitEvent((e) => e.event === 'JOB_STATUS_CHANGE' && (e.data as any)?.id === id && (e.data as any)?.status === 'concluded', 120_000);
  const jobs = await qmp.execute<{ id: string; status: string }[]>('query-jobs');
  const mine = jobs.find((j) => j.id === id);
  if (cancel && mine?.status !== 'concluded') await qmp.execute('block-job-cancel', { device: id, force: true });
  if (mine?.status !== 'concluded') await concluded;
  else concluded.catch(() => {});
  await qmp.execute('job-dismiss', { id });
  await qmp.execute('blockdev-del', { 'node-name': `${id}-src` });
}

/** One guest write: what SOURCE allocates, copied into NODE; returns once it is on the node. */
export async function guestWrite(qmp: QmpClient, node: string, source: string): Promise<void> {
  await endGuestJob(qmp, await startGuestJob(qmp, node, source, { sync: 'top' }));
}

export async function progressOf(qmp: QmpClient, id: string): Promise<{ status: string; current: number; total: number }> {
  const j = (await qmp.execute<any[]>('query-jobs')).find((x) => x.id === id);
  return { status: j?.status ?? 'gone', current: j?.['current-progress'] ?? 0, total: j?.['total-progress'] ?? 0 };
}
