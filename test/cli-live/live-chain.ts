// A running disk for the live snapshot and stream tests: a two-layer chain with checkpoints in
// libvirt's style (recording bitmaps of the same names in each layer), served by a
// qemu-storage-daemon that stands in for the VM, a raw copy of the disk taken when each checkpoint
// was made, and a guest writer (qemu-io over a writable NBD export of the disk's top node).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { tempDir, qemuImg, qemuIo, run, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon, type Daemon } from '../helpers/storage-daemon.ts';
import assert from 'node:assert/strict';
import { rawCopy, differingBlocks, sinceOf, missedBytes } from '../helpers/truth.ts';
import type { QmpClient } from '../../electron/core/qmp/client.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { PlanStore } from '../../electron/core/store/plans.ts';
import { ServicePlans } from '../../electron/core/plans/service-plans.ts';
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

/**
 * base (A, b1 from the start) <- mid (b1, b2 recording), mid served as node 'disk'. With `seed`, mid
 * has only b2 (the newest checkpoint continues in the overlay; b1 counts through it).
 */
export async function liveChain(t: Cleanup, o: { seed?: boolean } = {}): Promise<LiveChain> {
  const dir = tempDir(t);
  const base = path.join(dir, 'base.qcow2');
  const mid = path.join(dir, 'mid.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', base, String(SIZE));
  qemuIo(base, ['write -P 0x41 0 1M']);
  qemuImg('bitmap', '--add', base, 'b1');
  const truth: Record<string, string> = { b1: rawCopy(base, path.join(dir, 'at-b1.raw')) };
  qemuIo(base, ['write -P 0x42 2M 1M']);
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', mid);
  if (o.seed) {
    qemuImg('bitmap', '--add', mid, 'b2');
    truth.b2 = rawCopy(mid, path.join(dir, 'at-b2.raw'));
    qemuIo(mid, ['write -P 0x43 3M 512K']);
  } else {
    qemuImg('bitmap', '--add', mid, 'b1');
    qemuIo(mid, ['write -P 0x43 3M 512K']);
    qemuImg('bitmap', '--add', mid, 'b2');
    truth.b2 = rawCopy(mid, path.join(dir, 'at-b2.raw'));
  }
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

/** A writer that keeps writing (64 KiB blocks in 8..12 MiB, pattern `p`) until it has done `n` writes; started, not awaited. */
export function backgroundWriter(nbd: string, n: number, p: number): ChildProcess {
  const cmds: string[] = [];
  for (let i = 0; i < n; i++) cmds.push('-c', `write -P ${p} ${8 * MiB + ((i * 37) % 64) * 65536} 64k`);
  return spawn('qemu-io', ['-f', 'raw', ...cmds, nbdUri(nbd)], { stdio: 'ignore' });
}

export const total = (l: { length: number }[]) => l.reduce((a, x) => a + x.length, 0);

/** A file's bitmaps as qemu-img info reports them, in directory order: name -> flags. */
export const flags = (img: string): Record<string, string[]> =>
  Object.fromEntries((JSON.parse(run('qemu-img', ['info', '-U', '--output=json', img]))['format-specific'].data.bitmaps ?? []).map((b: any) => [b.name, b.flags]));

/**
 * After the daemon stored everything: each checkpoint ok in `top`'s chain, covering every block that
 * changed since its copy; `exact` ones (64 KiB-aligned writes of new patterns) mark no more than that.
 */
export function assertTruth(c: LiveChain, top: string, truth: Record<string, string>, exact: string[] = Object.keys(truth)) {
  const now = rawCopy(top, path.join(c.dir, 'now.raw'));
  for (const [name, copy] of Object.entries(truth)) {
    const since = sinceOf(top, name);
    assert.equal(since.state, 'ok', `${name}: ${since.problems.join('; ')}`);
    const changed = differingBlocks(copy, now);
    assert.equal(missedBytes(changed, since.extents), 0, `since ${name} covers every changed block`);
    if (exact.includes(name)) assert.equal(total(since.extents), total(changed), `since ${name} is not larger than what changed`);
  }
  run('qemu-img', ['check', '-q', top]);
}

/** What QEMU shows: named nodes' bitmaps (name:rec|off), every node's file, the backing edges (parent->child). */
export const graph = (socket: string) =>
  withQmp(socket, async (q) => {
    const nodes = await q.execute<any[]>('query-named-block-nodes', { flat: true });
    const g = await q.execute<any>('x-debug-query-block-graph');
    const name = new Map(g.nodes.map((n: any) => [n.id, n.name]));
    return {
      bitmaps: Object.fromEntries(nodes.filter((n) => !n['node-name'].startsWith('#')).map((n) => [n['node-name'], (n['dirty-bitmaps'] ?? []).map((b: any) => `${b.name}:${b.recording ? 'rec' : 'off'}`).sort()])),
      files: Object.fromEntries(nodes.map((n) => [n['node-name'], n.file])),
      backing: g.edges.filter((e: any) => e.name === 'backing').map((e: any) => `${name.get(e.parent)}->${name.get(e.child)}`),
    };
  });


/** live-child.ts (a Strata running one live plan, killed at CRASH_AT or not) with `args`; its JSON line, exit code or signal. */
export function liveCore(c: LiveChain, args: string[], env: Record<string, string>) {
  const child = path.join(import.meta.dirname, 'live-child.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', child, ...args], { encoding: 'utf8', env: { ...process.env, STRATA_HOME: c.home, ...env }, timeout: 60000 });
  return { signal: r.signal, code: r.status, out: r.stdout.trim() ? JSON.parse(r.stdout.trim().split('\n').pop()!) : null, err: r.stderr };
}

/** What the app does at start: every unfinished plan finished or rolled back (ServicePlans.recoverAll). */
export async function appStart(c: LiveChain) {
  const db = openDb(path.join(c.home, 'strata.db'));
  try {
    const plans = new ServicePlans(new PlanStore(db), () => {}, { runtimeDir: path.join(c.home, 'run'), connection: () => { throw new Error('no connection is asked for'); } });
    return await plans.recoverAll();
  } finally {
    db.close();
  }
}

