// Checkpoints of a chain a connected QEMU holds open: read as that QEMU sees them. On disk its
// bitmaps read in-use while it runs and their contents are stale; before, the chain view called
// every checkpoint unknown ("in-use: … or one crashed") for Strata's own daemon and every VM.
// A qemu-storage-daemon stands in for the VM; a second monitor on it plays the guest's writes.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createService, type Service } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { tempDir, waitListening, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { buildSeed, clusters } from './seed-chain.ts';

async function call(s: Service, channel: string, arg?: unknown): Promise<any> {
  const r = await dispatch(s, channel, arg);
  if (!r.ok) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}

const K = 65536;

/** A "VM": the seed's top open read-write as node disk0; its guest writes through a second monitor. */
async function setup(t: Cleanup) {
  const dir = tempDir(t);
  const { top, base } = buildSeed(dir);
  const guestSock = path.join(dir, 'guest.qmp');
  const vm = await startDaemon(t, dir, [
    '--blockdev',
    `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${top}`,
    '--chardev',
    `socket,id=g,path=${guestSock},server=on,wait=off`,
    '--monitor',
    'chardev=g',
  ]);
  await waitListening(guestSock, vm.child, vm.stderr);
  const guest = await QmpClient.connect(guestSock);
  t.onTestFinished(() => guest.close());
  const service = createService({ dataDir: path.join(dir, 'data'), mode: 'browser' });
  t.onTestFinished(() => service.close());
  const conn = await call(service, 'connection:add-socket', { path: vm.socket });
  /** The guest writes `len` bytes at `off` (through its own NBD export, gone again afterwards). */
  const write = async (off: number, len: number) => {
    const nbd = path.join(dir, 'guest-nbd.sock');
    await guest.execute('nbd-server-start', { addr: { type: 'unix', data: { path: nbd } } });
    await guest.execute('block-export-add', { type: 'nbd', id: 'w', 'node-name': 'disk0', name: 'w', writable: true });
    execFileSync('qemu-io', ['-f', 'raw', '-c', `write -P 0x55 ${off} ${len}`, `nbd+unix:///w?socket=${nbd}`], { stdio: 'ignore' });
    await guest.execute('block-export-del', { id: 'w' });
    await guest.execute('nbd-server-stop');
  };
  const checkpoints = async () => {
    const r = await call(service, 'chain:inspect', { path: top });
    return { report: r, by: Object.fromEntries(r.checkpoints.map((c: any) => [c.name, c])) as Record<string, any> };
  };
  const since = async (checkpoint: string) =>
    clusters((await call(service, 'contents:extents', { source: { kind: 'since', image: top, checkpoint }, start: 0, end: 8 * K, limit: 100 })).extents);
  return { dir, top, base, vm, guest, service, conn, write, checkpoints, since };
}

test('a VM holds the chain read-write: its checkpoints are read live, ok, and follow its writes', { timeout: 60000 }, async (t) => {
  const { top, conn, guest, write, checkpoints, since } = await setup(t);
  const { report, by } = await checkpoints();
  assert.deepEqual(
    report.layers.map((l: any) => [path.basename(l.path), l.live?.holder, l.live?.error]),
    [
      ['top.qcow2', `the QEMU at ${path.basename(conn.socket)}`, null],
      ['base.qcow2', `the QEMU at ${path.basename(conn.socket)}`, null],
    ],
  );
  assert.ok(report.heldBy.some((h: any) => h.file === top && h.node === 'disk0' && !h.readOnly));
  // The seed's example, exactly as the thread draws it, although every bitmap of top.qcow2 is in-use on disk.
  assert.deepEqual(
    Object.values(by).map((c: any) => [c.name, c.state, c.dirtyBytes, c.problems]),
    [
      ['bitmap1', 'ok', 5 * K, []],
      ['bitmap2', 'ok', 4 * K, []],
      ['bitmap3', 'ok', 3 * K, []],
    ],
  );
  assert.equal(await since('bitmap1'), '--11111-');
  assert.equal(await since('bitmap2'), '---1111-');

  // The guest writes the last cluster; a checkpoint of its own, transient, then the first cluster.
  await write(7 * K, K);
  await guest.execute('block-dirty-bitmap-add', { node: 'disk0', name: 'nightly', persistent: false });
  await write(0, K);
  const after = await checkpoints();
  assert.deepEqual(
    Object.values(after.by).map((c: any) => [c.name, c.state, c.dirtyBytes]),
    [
      ['bitmap1', 'ok', 7 * K],
      ['bitmap2', 'ok', 6 * K],
      ['bitmap3', 'ok', 5 * K],
      ['nightly', 'ok', 1 * K],
    ],
  );
  const nightly = after.report.layers[0].bitmaps.find((b: any) => b.name === 'nightly');
  assert.deepEqual(nightly.flags, ['auto', 'transient']);
  // The inspector's "changes since" is the same live answer (after its 2 s of reuse).
  await new Promise((r) => setTimeout(r, 2100));
  assert.equal(await since('bitmap2'), '1--11111');
  assert.equal(await since('nightly'), '1-------');
});

test('held but not readable live (the VM runs its own NBD server): unknown, and says why; a crash left inconsistent: unknown', { timeout: 60000 }, async (t) => {
  const { dir, guest, checkpoints, vm, top, service } = await setup(t);
  await guest.execute('nbd-server-start', { addr: { type: 'unix', data: { path: path.join(dir, 'theirs.sock') } } });
  const { report, by } = await checkpoints();
  assert.match(report.layers[0].live.error, /NBD server/);
  for (const c of Object.values(by)) {
    assert.equal(c.state, 'unknown', c.name);
    assert.equal(c.dirtyBytes, null);
  }
  assert.match(by.bitmap3.problems.join('\n'), /in-use on disk because the QEMU at .* holds top\.qcow2 open, and its live state could not be read \(.*NBD server/);
  await guest.execute('nbd-server-stop');

  // kill -9: the bitmaps stay in-use on disk; a new QEMU finds them inconsistent.
  vm.child.kill('SIGKILL');
  await new Promise((r) => vm.child.once('exit', r));
  const vm2 = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=disk0,file.driver=file,file.filename=${top}`]);
  await call(service, 'connection:add-socket', { path: vm2.socket });
  const again = await checkpoints();
  assert.equal(again.report.layers[0].live.error, null);
  assert.equal(again.by.bitmap3.state, 'unknown');
  assert.match(again.by.bitmap3.problems.join('\n'), /bitmap 'bitmap3' in top\.qcow2 is inconsistent in the QEMU at .*: .*remove it and take a new checkpoint/);
  // The base was only read by the dead QEMU (a backing is read-only): its checkpoints keep their facts,
  // but every checkpoint needs the top's bitmap3, so none is ok.
  assert.deepEqual(Object.values(again.by).map((c: any) => c.state), ['unknown', 'unknown', 'unknown']);
});
