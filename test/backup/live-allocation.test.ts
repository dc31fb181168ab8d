// A running VM's disk snapshotted outside Strata (blockdev-snapshot onto a qemu-img-made overlay)
// after its last backup: the overlay has no checkpoint bitmap, but it sits above the layer that has
// it, so the inc stays an inc, its changes proven from the overlay's allocation read live. A
// qemu-storage-daemon stands in for the VM; its guest writes are backup jobs into the node (QEMU's
// block layer, so bitmaps see them; QEMU runs one NBD server, which Strata's live read needs), and
// the same writes go into a raw model of the disk, copied at every backup as the truth. Writes are
// placed between the backup's steps: after the look, after the bridge bitmap records and after the
// allocation was read (all must be in the inc), and after the transaction (must not be, and is in
// the next one).
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { tmp, makeDisk, strata, ownBytes } from './helpers.ts';
import { startVm, restoresTo } from './vm.ts';

const K = 1024;
const M = 1024 * K;

test('a running VM snapshotted outside Strata: the inc comes from the overlay\'s live allocation, writes between the steps are kept, every point restores exactly', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  const vm = await startVm(dir, disk);
  await vm.write('vm', 0x11, 0, 8 * M);
  let r = await strata(home, ['backup', '--socket', vm.sock, '--node', 'vm', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  const full = JSON.parse(r.out);
  assert.equal(full.level, 'full');
  const t1 = vm.truth('full');

  // Before the snapshot: in the checkpoint, on node vm. After it: in the overlay only.
  await vm.write('vm', 0x21, 1 * M, 64 * K);
  const top = path.join(dir, 'top.qcow2');
  await vm.snapshot(top, disk);
  await vm.write('ovl', 0x31, 2 * M, 128 * K);
  await vm.write('ovl', 0x32, 20 * M + 512, 4 * K); // unaligned: rounded out to one 64 KiB cluster

  // The dry run proves it too and adds nothing to the VM.
  r = await strata(home, ['backup', '--socket', vm.sock, '--node', 'ovl', '--repo', repo, '--dry-run', '--json']);
  assert.equal(r.code, 0, r.err);
  const dry = JSON.parse(r.out);
  assert.deepEqual([dry.level, dry.changesFrom, dry.fallback, dry.dirtyBytes], ['inc', 'allocation', null, (64 + 128 + 64) * K]);
  assert.deepEqual(await vm.bitmaps('ovl'), []);

  let t2 = '';
  const seen: string[] = [];
  const inc = await takeBackup({
    live: { socket: vm.sock, node: 'ovl' }, repo, level: 'inc', since: null, compress: false, dryRun: false, dataDir: home,
    hook: async (point) => {
      seen.push(point);
      if (point === 'looked') await vm.write('ovl', 0x40, 25 * M, 64 * K); // after the look, before the bridge: only in the allocation read again
      if (point === 'bridge-recording') await vm.write('ovl', 0x41, 30 * M, 64 * K); // in the allocation read and in the bridge
      if (point === 'allocation-read') {
        await vm.write('ovl', 0x42, 40 * M, 64 * K); // in the bridge only
        t2 = vm.truth('inc');
      }
      if (point === 'transaction') await vm.write('ovl', 0x43, 50 * M, 64 * K); // after the point: the new checkpoint's
    },
  });
  assert.deepEqual(seen, ['looked', 'bridge-recording', 'allocation-read', 'transaction']);
  assert.equal(inc.level, 'inc');
  assert.equal(inc.changesFrom, 'allocation');
  assert.equal(inc.fallback, null);
  assert.equal(inc.since, full.checkpoint);
  assert.ok(inc.notes.some((s) => /found from allocation: top\.qcow2 has no bitmap for it but sits above the layers that do/.test(s)), inc.notes.join('\n'));
  // the base's 1M, the overlay's 2M (128 KiB), 20M, 25M, 30M and 40M: exactly those clusters
  assert.equal(ownBytes(inc.file), (64 + 128 + 64 + 64 + 64 + 64) * K);
  assert.ok(ownBytes(inc.file) * 20 < ownBytes(path.join(repo, `${full.id}.qcow2`)), 'the inc is much smaller than the full');
  // nothing of the backup's own is left on the VM's nodes: only the new checkpoint on the top
  assert.deepEqual(await vm.bitmaps('ovl'), [inc.checkpoint]);
  assert.deepEqual(await vm.bitmaps('vm'), [full.checkpoint]);
  assert.deepEqual(fs.readdirSync(path.join(home, 'run')), []);

  // The next inc starts from the checkpoint on the top: from bitmaps, holding the write after the transaction.
  await vm.write('ovl', 0x51, 60 * M, 64 * K);
  r = await strata(home, ['backup', '--socket', vm.sock, '--node', 'ovl', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  const next = JSON.parse(r.out);
  assert.deepEqual([next.level, next.changesFrom, next.since, next.dirtyBytes], ['inc', 'bitmaps', inc.checkpoint, 128 * K]);
  const t3 = vm.truth('next');
  // A diff from the full across both layers: from allocation again, through the CLI's JSON.
  r = await strata(home, ['backup', '--socket', vm.sock, '--node', 'ovl', '--repo', repo, '--level', 'diff', '--json']);
  assert.equal(r.code, 0, r.err);
  const diff = JSON.parse(r.out);
  assert.deepEqual([diff.level, diff.changesFrom, diff.fallback, diff.since], ['diff', 'allocation', null, full.checkpoint]);

  for (const [id, truth] of [[full.id, t1], [inc.id, t2], [next.id, t3], [diff.id, t3]]) await restoresTo(repo, dir, id, truth);
}, 180000);

test('a running VM snapshotted outside Strata after its checkpoint was disabled and written: no proof, a full saying why', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  const vm = await startVm(dir, disk);
  await vm.write('vm', 0x11, 0, 2 * M);
  const full = await takeBackup({ live: { socket: vm.sock, node: 'vm' }, repo, level: null, since: null, compress: false, dryRun: false, dataDir: home });
  await vm.look.execute('block-dirty-bitmap-disable', { node: 'vm', name: full.checkpoint });
  await vm.write('vm', 0x21, 3 * M, 64 * K); // tracked by nothing
  await vm.snapshot(path.join(dir, 'top.qcow2'), disk);
  await vm.write('ovl', 0x31, 5 * M, 64 * K);
  const r = await takeBackup({ live: { socket: vm.sock, node: 'ovl' }, repo, level: null, since: null, compress: false, dryRun: false, dataDir: home });
  assert.equal(r.level, 'full');
  assert.equal(r.changesFrom, null);
  assert.match(r.fallback!, /cannot be known: .*disabled/);
  await restoresTo(repo, dir, r.id, vm.truth('full'));
}, 180000);
