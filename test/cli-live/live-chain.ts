// A running disk for the live snapshot and stream tests: a two-layer chain with checkpoints in
// libvirt's style (recording bitmaps of the same names in each layer), served by a
// qemu-storage-daemon that stands in for the VM, a raw copy of the disk taken when each checkpoint
// was made, and a guest writer (qemu-io over a writable NBD export of the disk's top node).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { tempDir, qemuImg, qemuIo, run, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon, type Daemon } from '../helpers/storage-daemon.ts';
import { rawCopy } from '../helpers/truth.ts';
import type { QmpClient } from '../../electron/core/qmp/client.ts';
import { withQmp, waitExit } from './helpers.ts';

export const MiB = 1024 * 1024;
export const SIZE = 16 * MiB;

export interface LiveChain {
  dir: string;
  home: string;
  base: string;
  mid: string;
  daemon: Daemon;
  /** checkpoint -> raw copy of the disk when it was made */
  truth: Record<string, string>;
  nbd: string;
  stop: () => Promise<void>;
}

/** base (A, b1 from the start) <- mid (b1, b2 recording), mid served as node 'disk'. */
export async function liveChain(t: Cleanup): Promise<LiveChain> {
  const dir = tempDir(t);
  const base = path.join(dir, 'base.qcow2');
  const mid = path.join(dir, 'mid.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, String(SIZE));
  qemuIo(base, ['write -P 0x41 0 1M']);
  qemuImg('bitmap', '--add', base, 'b1');
  const truth: Record<string, string> = { b1: rawCopy(base, path.join(dir, 'at-b1.raw')) };
  qemuIo(base, ['write -P 0x42 2M 1M']);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', mid);
  qemuImg('bitmap', '--add', mid, 'b1');
  qemuIo(mid, ['write -P 0x43 3M 512K']);
  qemuImg('bitmap', '--add', mid, 'b2');
  truth.b2 = rawCopy(mid, path.join(dir, 'at-b2.raw'));
  qemuIo(mid, ['write -P 0x44 4M 1M']);
  const daemon = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=disk,file.driver=file,file.filename=${mid}`]);
  const stop = async () => {
    daemon.child.kill('SIGTERM');
    await waitExit(daemon.child);
  };
  return { dir, home: path.join(dir, 'home'), base, mid, daemon, truth, nbd: path.join(dir, 'w.sock'), stop };
}

/** Exports `node` writable over NBD (export 'w'), for the writer and for raw copies of the running disk. */
export async function exportNode(q: QmpClient, nbd: string, node: string): Promise<void> {
  await q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: nbd } } });
  await q.execute('block-export-add', { type: 'nbd', id: 'w', name: 'w', 'node-name': node, writable: true });
}

export async function unexport(q: QmpClient): Promise<void> {
  const gone = q.waitEvent((e) => e.event === 'BLOCK_EXPORT_DELETED');
  await q.execute('block-export-del', { id: 'w' });
  await gone;
  await q.execute('nbd-server-stop');
}

export const nbdUri = (nbd: string) => `nbd+unix:///w?socket=${nbd}`;

/** The guest writes `cmds` (qemu-io) into the running disk through node `node`; one QMP session. */
export async function guestWrites(c: LiveChain, node: string, cmds: string[]): Promise<void> {
  await withQmp(c.daemon.socket, async (q) => {
    await exportNode(q, c.nbd, node);
    run('qemu-io', ['-f', 'raw', ...cmds.flatMap((x) => ['-c', x]), nbdUri(c.nbd)]);
    await unexport(q);
  });
}

/** A raw copy of the running disk as the guest sees it now (read through QEMU, not the files). */
export async function liveRawCopy(c: LiveChain, node: string, to: string): Promise<string> {
  await withQmp(c.daemon.socket, async (q) => {
    await exportNode(q, c.nbd, node);
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', nbdUri(c.nbd), to]);
    await unexport(q);
  });
  return to;
}

/** A writer that keeps writing (64 KiB-aligned, pattern `p`) until it has done `n` writes; started, not awaited. */
export function backgroundWriter(nbd: string, n: number, p: number): ChildProcess {
  const cmds: string[] = [];
  for (let i = 0; i < n; i++) cmds.push('-c', `write -P ${p} ${((i * 37) % (SIZE / 65536)) * 65536} 64k`);
  return spawn('qemu-io', ['-f', 'raw', ...cmds, nbdUri(nbd)], { stdio: 'ignore' });
}
