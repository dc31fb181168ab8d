// A qemu-storage-daemon standing in for a running VM, for the backup tests: one QMP monitor for
// Strata, one for the test; guest writes are backup jobs into a node (test/repair/live-guest.ts: QEMU
// runs one NBD server, which Strata's live reads need), mirrored into a raw model of the disk whose
// copies are the truth at each point.
import { onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuImg, qemuIo, waitListening, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { restoreBackup } from '../../electron/core/backup/restore.ts';
import { guestWrite } from '../repair/live-guest.ts';
import { sameDisk } from './helpers.ts';

const SIZE = 64 * 1024 * 1024;

/** The VM on DISK (64 MiB) as node vm. */
export async function startVm(dir: string, disk: string) {
  const sock = path.join(dir, 'vm.qmp');
  const lookSock = path.join(dir, 'look.qmp');
  const vm = await startDaemon({ onTestFinished } as Cleanup, dir, [
    '--chardev', `socket,id=v,path=${sock},server=on,wait=off`, '--monitor', 'chardev=v',
    '--chardev', `socket,id=l,path=${lookSock},server=on,wait=off`, '--monitor', 'chardev=l',
    '--blockdev', `driver=qcow2,node-name=vm,file.driver=file,file.filename=${disk}`,
  ]);
  // listening, not just bound: a socket file exists a moment before QEMU listens on it
  for (const s of [sock, lookSock]) await waitListening(s, vm.child, () => `qemu-storage-daemon: ${vm.stderr()}`);
  const look = await QmpClient.connect(lookSock);
  onTestFinished(() => look.close());
  const model = path.join(dir, 'model.raw');
  qemuImg('create', '-q', '-f', 'raw', model, String(SIZE));
  let n = 0;
  return {
    sock,
    look,
    /** one guest write of `pattern` at [off, off+len) into NODE, and into the model */
    write: async (node: string, pattern: number, off: number, len: number) => {
      const src = path.join(dir, `w${++n}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', src, String(SIZE));
      qemuIo(src, [`write -P ${pattern} ${off} ${len}`]);
      await guestWrite(look, node, src);
      qemuIo(model, [`write -P ${pattern} ${off} ${len}`], ['-f', 'raw']);
    },
    truth: (name: string) => {
      const to = path.join(dir, `truth-${name}.raw`);
      fs.copyFileSync(model, to);
      return to;
    },
    bitmaps: async (node: string) => {
      const nodes = await look.execute<any[]>('query-named-block-nodes', { flat: true });
      return ((nodes.find((x) => x['node-name'] === node)?.['dirty-bitmaps'] ?? []) as any[]).map((b) => b.name as string).sort();
    },
    /** the VM's disk snapshotted outside Strata: a qemu-img-made overlay becomes the active layer */
    snapshot: async (file: string, base: string) => {
      qemuImg('create', '-q', '-f', 'qcow2', '-b', path.basename(base), '-F', 'qcow2', file);
      await look.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'ovl', backing: null, file: { driver: 'file', filename: file } });
      await look.execute('blockdev-snapshot', { node: 'vm', overlay: 'ovl' });
    },
    stop: async () => {
      vm.child.kill('SIGTERM');
      await new Promise((r) => vm.child.once('exit', r));
    },
  };
}

/** Restores `id` to a raw file and compares it with the truth. */
export async function restoresTo(repo: string, dir: string, id: string, truth: string): Promise<void> {
  const to = path.join(dir, `restored-${id}.raw`);
  await restoreBackup({ repo, id, to, format: 'raw', force: false });
  assert.ok(sameDisk(to, truth), `${id} restores the disk as it was`);
}
