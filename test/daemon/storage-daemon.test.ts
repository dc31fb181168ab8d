// Strata's own qemu-storage-daemon on real images: opening the chain from the header, storing
// bitmaps on SIGTERM, refusing an image another QEMU holds, noticing a crash.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { StorageDaemon, TOP_NODE } from '../../electron/core/daemon/storage-daemon.ts';
import { imageLockState } from '../../electron/core/daemon/image-lock.ts';
import { inspect } from '../../electron/core/inspect.ts';
import { tempDir, type Cleanup } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { buildSeed } from '../core/seed-chain.ts';

/** Start Strata's daemon and always stop it when the test ends, even if the test expected a refusal. */
async function start(t: Cleanup, opts: Parameters<typeof StorageDaemon.start>[0]): Promise<StorageDaemon> {
  const d = await StorageDaemon.start(opts);
  t.onTestFinished(async () => {
    await d.stop();
  });
  return d;
}

test('read-only: the chain opens from the header, with every layer and bitmap', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { top, base } = buildSeed(dir);
  const d = await start(t, { image: top, runtimeDir: path.join(dir, 'run'), readOnly: true });
  const nodes = await d.qmp.execute<any[]>('query-named-block-nodes', { flat: true });
  const qcow2 = nodes.filter((n) => n.drv === 'qcow2');
  assert.deepEqual(qcow2.map((n) => n.file).sort(), [base, top].sort());
  const topNode = qcow2.find((n) => n['node-name'] === TOP_NODE);
  assert.deepEqual(topNode['dirty-bitmaps'].map((b: any) => b.name), ['bitmap3']);
  const exit = await d.stop();
  assert.equal(exit.code, 0);
  assert.equal(exit.expected, true);
});

test('read-write: a bitmap added over QMP is on disk after SIGTERM, not in-use', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { top } = buildSeed(dir);
  const d = await start(t, { image: top, runtimeDir: path.join(dir, 'run'), readOnly: false });
  await d.qmp.execute('block-dirty-bitmap-add', { node: TOP_NODE, name: 'fresh', persistent: true, granularity: 65536 });
  // While the daemon holds the image, its bitmaps read as in-use on disk and the lock is taken.
  assert.equal(await imageLockState(top), 'locked');
  assert.ok(inspect(top).layers[0].bitmaps.find((b) => b.name === 'bitmap3')!.flags.includes('in-use'));
  const exit = await d.stop();
  assert.equal(exit.code, 0);
  const layer = inspect(top).layers[0];
  assert.deepEqual(
    layer.bitmaps.map((b) => [b.name, b.flags]),
    [
      ['bitmap3', ['auto']],
      ['fresh', ['auto']],
    ],
  );
  assert.equal(await imageLockState(top), 'free');
});

test('an image held by another QEMU is refused before anything is written: a writer and a reader both', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { top } = buildSeed(dir);
  const sum = () => createHash('sha256').update(fs.readFileSync(top)).digest('hex');
  // Another QEMU (here a storage daemon, as a VM would) has the image open read-write: it holds
  // the lock by the time its monitor socket exists.
  const vm = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=vm,file.driver=file,file.filename=${top}`]);
  assert.equal(await imageLockState(top), 'locked');
  const refused = (e: any) => e.code === 'E_BAD_INPUT' && e.message.startsWith(top) && /in use by another QEMU/.test(e.message);
  // (the holder itself marked the bitmaps in-use when it opened the image: compare from there)
  let before = sum();
  await assert.rejects(start(t, { image: top, runtimeDir: path.join(dir, 'run'), readOnly: false }), refused);
  assert.equal(sum(), before, 'the refused open wrote nothing');
  assert.deepEqual(fs.readdirSync(path.join(dir, 'run')), [], 'nothing of the refused daemon is left in the runtime folder');
  vm.child.kill('SIGKILL');
  await new Promise((r) => vm.child.once('close', r));
  // A reader (a tool opened read-only without force-share) does not let anyone write under it:
  // the same refusal, not a tool failure.
  const reader = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=reader,read-only=on,file.driver=file,file.filename=${top}`]);
  before = sum();
  await assert.rejects(start(t, { image: top, runtimeDir: path.join(dir, 'run'), readOnly: false }), refused);
  reader.child.kill('SIGKILL');
  await new Promise((r) => reader.child.once('close', r));
  assert.equal(sum(), before, 'the refused open under a reader wrote nothing');
});

test('kill -9 of the daemon is reported as unexpected; the bitmaps it held read back in-use', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const { top } = buildSeed(dir);
  const d = await start(t, { image: top, runtimeDir: path.join(dir, 'run'), readOnly: false });
  const exited = new Promise<any>((r) => d.onExit(r));
  process.kill(d.pid!, 'SIGKILL');
  const e = await exited;
  assert.equal(e.expected, false);
  assert.equal(e.signal, 'SIGKILL');
  await assert.rejects(d.qmp.execute('query-version'), (err: any) => err.code === 'E_QMP_STATE' || err.code === 'E_QMP_INTERRUPTED');
  const r = inspect(top);
  assert.ok(r.layers[0].bitmaps[0].flags.includes('in-use'));
  assert.equal(r.checkpoints.find((c) => c.name === 'bitmap3')!.state, 'unknown');
});

test('a missing image and a broken one give typed errors naming the file', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const missing = path.join(dir, 'none.qcow2');
  await assert.rejects(start(t, { image: missing, runtimeDir: path.join(dir, 'run'), readOnly: true }), (e: any) => e.code === 'E_NOT_FOUND' && e.message.startsWith(missing));
  const { top, base } = buildSeed(dir);
  const fs = await import('node:fs');
  fs.rmSync(base);
  await assert.rejects(
    start(t, { image: top, runtimeDir: path.join(dir, 'run'), readOnly: true }),
    (e: any) => e.code === 'E_TOOL' && e.message.startsWith(top) && /base\.qcow2/.test(e.message),
  );
});
