// QEMU stores bitmaps created while it had the image open newest first, so the bitmap directory is
// creation order only across sessions. A VM that makes seed-style checkpoints in one run (disable
// 'a' and add 'b' in one transaction) leaves the directory as [b, a]. "Changes since a" must still
// hold what was written while 'b' recorded: the old rule ("a and every bitmap listed after it")
// answered 'a' alone, a false clean.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { QmpClient } from '../../electron/core/qmp/client.ts';
import { tempDir, qemuImg, qemuIo, run } from '../helpers/qemu.ts';
import { startDaemon } from '../helpers/storage-daemon.ts';
import { rawCopy, differingBlocks, sinceOf, missedBytes } from '../helpers/truth.ts';
import { clusters } from '../core/seed-chain.ts';
import { inspect } from '../../electron/core/inspect.ts';

test('checkpoints made in one QEMU session: directory [b, a], and "since a" still covers what b recorded', { timeout: 60000 }, async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'vm.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', img, '512K');
  qemuIo(img, ['write -P 1 0 64k']);
  const d = await startDaemon(t, dir, ['--blockdev', `driver=qcow2,node-name=disk,file.driver=file,file.filename=${img}`]);
  const qmp = await QmpClient.connect(d.socket);
  const nbdSock = path.join(dir, 'nbd.sock');
  await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: nbdSock } } });
  await qmp.execute('block-export-add', { type: 'nbd', id: 'e', 'node-name': 'disk', name: 'disk', writable: true });
  const write = (cmd: string) => run('qemu-io', ['-f', 'raw', '-c', cmd, `nbd+unix:///disk?socket=${nbdSock}`]);

  await qmp.execute('block-dirty-bitmap-add', { node: 'disk', name: 'a', persistent: true });
  const atA = rawCopy(img, path.join(dir, 'at-a.raw')); // nothing written since the open: the file is the disk
  write('write -P 2 128k 64k'); // while 'a' records
  await qmp.execute('transaction', {
    actions: [
      { type: 'block-dirty-bitmap-disable', data: { node: 'disk', name: 'a' } },
      { type: 'block-dirty-bitmap-add', data: { node: 'disk', name: 'b', persistent: true } },
    ],
  });
  write('write -P 3 320k 64k'); // while only 'b' records
  await qmp.close();
  d.child.kill('SIGTERM');
  if (d.child.exitCode === null) await new Promise((r) => d.child.once('exit', r));

  const names = inspect(img).layers[0].bitmaps.map((b) => b.name);
  assert.deepEqual(names, ['b', 'a'], 'QEMU stored the newer bitmap first');
  const s = sinceOf(img, 'a');
  assert.equal(s.state, 'ok', s.problems.join('; '));
  const changed = differingBlocks(atA, rawCopy(img, path.join(dir, 'now.raw')));
  assert.equal(clusters(changed), '--1--1--');
  assert.equal(missedBytes(changed, s.extents), 0, `since a = ${clusters(s.extents)}`);
  // 'b' is listed first, so "since b" also counts 'a' (listed after it): more than needed, never less.
  assert.equal(missedBytes([{ start: 320 * 1024, length: 64 * 1024 }], sinceOf(img, 'b').extents), 0);
  const report = inspect(img).checkpoints.find((c) => c.name === 'a')!;
  assert.equal(report.dirtyBytes, 128 * 1024, 'the checkpoint list agrees with since');

  // The same layer below an overlay (seed style: a new checkpoint 'c' in the top). Listed after 'a'
  // or not, 'b' holds writes made after 'a' was disabled: without it, "since a" would be a false clean.
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'vm.qcow2', '-F', 'qcow2', top);
  qemuImg('bitmap', '--add', top, 'c');
  qemuIo(top, ['write -P 4 448k 64k']);
  const viaTop = sinceOf(top, 'a');
  assert.equal(viaTop.state, 'ok', viaTop.problems.join('; '));
  const changedTop = differingBlocks(atA, rawCopy(top, path.join(dir, 'now-top.raw')));
  assert.equal(clusters(changedTop), '--1--1-1');
  assert.equal(missedBytes(changedTop, viaTop.extents), 0, `since a = ${clusters(viaTop.extents)}`);
});
