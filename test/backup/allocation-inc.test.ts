// An incremental from the repair's allocation proof, on real QEMU: an overlay made with qemu-img
// outside Strata after the last backup has no bitmaps, so the checkpoint math alone says unknown;
// the overlay sits above the layer holding the checkpoint, so everything allocated in it was written
// since, and the backup stays incremental: its dirty set is the base's checkpoint bitmap plus the
// overlay's allocation, rounded out. Known data is written before and after the overlay was made,
// the inc is restored and compared with a raw copy taken at that moment. Where the proof does not
// hold (the checkpoint disabled in the backing layer, then written: when it stopped being tracked
// cannot be ordered against the overlay), it falls back to full.
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { restoreBackup } from '../../electron/core/backup/restore.ts';
import { Repository } from '../../electron/core/backup/repository.ts';
import { tmp, makeDisk, truthOf, sameDisk, bitmapNames, strata, sha256, opts, ownBytes } from './helpers.ts';

const K = 1024;

test('an overlay made outside Strata after the checkpoint: inc from its allocation plus the base bitmap, restores exactly, the chain untouched', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 4M', 'write -P 0x12 8M 1M']);
  const full = await takeBackup(opts(dir, disk));
  // Before the overlay: recorded by the checkpoint in the base.
  qemuIo(disk, ['write -P 0x21 4M 64k', 'write -P 0x22 1M 64k']);
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'disk.qcow2', '-F', 'qcow2', top);
  // After it: in no bitmap, only in the overlay's allocation (one write over a base write, one unaligned).
  qemuIo(top, ['write -P 0x31 1M 64k', 'write -P 0x32 6M 128k', 'write -P 0x33 10485760 4k', 'write -P 0x34 20971776 512']);
  const bitmapsBefore = bitmapNames(top);
  const baseFile = sha256(disk);

  const dry = await strata(home, ['backup', top, '--repo', repo, '--dry-run']);
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /Would take backup inc-2: inc since checkpoint .*, copying 384 KiB/);
  assert.match(dry.out, /changes found from allocation/);
  assert.match(dry.err, /found from allocation: top\.qcow2 has no bitmap for it but sits above the layers that do/);
  assert.equal(sha256(disk), baseFile, 'a dry run writes nothing');
  // Where it lies: the checkpoint's bitmap in the base, and everything allocated in the overlay.
  const dryJson = await strata(home, ['backup', top, '--repo', repo, '--dry-run', '--json']);
  assert.equal(dryJson.code, 0, dryJson.err);
  assert.deepEqual(JSON.parse(dryJson.out).copies, [
    { kind: 'bitmap', layer: disk, name: full.checkpoint },
    { kind: 'allocation', layer: top },
  ]);

  const r = await strata(home, ['backup', top, '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  const inc = JSON.parse(r.out);
  const truth = truthOf(top, dir, 'inc');
  assert.equal(inc.level, 'inc');
  assert.equal(inc.fallback, null);
  assert.equal(inc.changesFrom, 'allocation');
  assert.equal(inc.since, full.checkpoint);
  // base bitmap 4M + 1M (64 KiB each), overlay 1M (same cluster), 6M 128 KiB, 10M 4 KiB and 20M+512 rounded out to 64 KiB each
  assert.equal(inc.dirtyBytes, (64 + 64 + 128 + 64 + 64) * K);
  assert.equal(ownBytes(inc.file), (64 + 64 + 128 + 64 + 64) * K, 'the inc holds exactly those clusters');
  assert.equal(Repository.open(repo).find(inc.id).parent, full.id);
  const out = path.join(dir, 'inc.raw');
  await restoreBackup({ repo, id: inc.id, to: out, format: 'raw', force: false });
  assert.ok(sameDisk(out, truth), 'the inc restores the disk as it was');
  // Nothing of the chain changed but the new checkpoint in the top; no scratch left behind.
  assert.deepEqual(bitmapNames(top), [`top.qcow2:${inc.checkpoint}`, ...bitmapsBefore]);
  assert.deepEqual(bitmapNames(disk), [`disk.qcow2:${full.checkpoint}`]);
  assert.deepEqual(fs.readdirSync(path.join(home, 'run')).filter((n) => n.startsWith('backup-allocation')), []);

  // The next inc starts from the checkpoint in the top: from bitmaps again.
  qemuIo(top, ['write -P 0x41 30M 64k']);
  const next = await takeBackup(opts(dir, top));
  assert.equal(next.level, 'inc');
  assert.equal(next.changesFrom, 'bitmaps');
  assert.equal(next.since, inc.checkpoint);
  assert.equal(next.dirtyBytes, 64 * K);
  const truthNext = truthOf(top, dir, 'next');
  await restoreBackup({ repo, id: next.id, to: path.join(dir, 'next.raw'), format: 'raw', force: false });
  assert.ok(sameDisk(path.join(dir, 'next.raw'), truthNext));
  // and a diff from the full, across both layers, again from allocation
  const diff = await takeBackup(opts(dir, top, { level: 'diff' }));
  assert.equal(diff.level, 'diff');
  assert.equal(diff.changesFrom, 'allocation');
  await restoreBackup({ repo, id: diff.id, to: path.join(dir, 'diff.raw'), format: 'raw', force: false });
  assert.ok(sameDisk(path.join(dir, 'diff.raw'), truthNext));
}, 120000);

test('no proof: the checkpoint disabled in the backing layer and written before the overlay: full, saying why', async () => {
  const dir = tmp();
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 2M']);
  const full = await takeBackup(opts(dir, disk));
  qemuImg('bitmap', '--disable', disk, full.checkpoint!);
  qemuIo(disk, ['write -P 0x21 3M 64k']); // tracked by nothing
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'disk.qcow2', '-F', 'qcow2', top);
  qemuIo(top, ['write -P 0x31 5M 64k']);
  const r = await takeBackup(opts(dir, top));
  assert.equal(r.level, 'full');
  assert.equal(r.changesFrom, null);
  assert.match(r.fallback!, /cannot be known: .*every bitmap covering checkpoint .* is disabled/);
  const truth = truthOf(top, dir, 'full');
  await restoreBackup({ repo, id: r.id, to: path.join(dir, 'full.raw'), format: 'raw', force: false });
  assert.ok(sameDisk(path.join(dir, 'full.raw'), truth));
}, 120000);
