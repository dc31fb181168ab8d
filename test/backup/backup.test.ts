// Backups on real QEMU, in temporary folders: known data written between backups, every level,
// every point restored and compared with a raw copy of the disk taken when it was backed up.
import { test, expect } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuImg, qemuIo } from '../helpers/qemu.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { restoreBackup } from '../../electron/core/backup/restore.ts';
import { verifyRepository } from '../../electron/core/backup/verify.ts';
import { Repository } from '../../electron/core/backup/repository.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { mapAlone } from '../../electron/core/backup/tools.ts';
import { tmp, makeDisk, truthOf, sameDisk, bitmapNames, strata, fingerprint, flipByteAt, opts, ownBytes } from './helpers.ts';


test('full → inc → inc → diff: each point restores exactly, each inc holds only what changed', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  const truth: Record<string, string> = {};
  qemuIo(disk, ['write -P 0x11 0 4M', 'write -P 0x12 8M 1M']);
  const full = await takeBackup(opts(dir, disk));
  truth[full.id] = truthOf(disk, dir, full.id);
  assert.equal(full.level, 'full');
  assert.equal(full.fallback, 'first backup in this repository');
  assert.equal(full.dirtyBytes, 5 << 20);

  qemuIo(disk, ['write -P 0x21 1M 128k', 'write -P 0x22 20M 64k']);
  const inc1 = await takeBackup(opts(dir, disk));
  truth[inc1.id] = truthOf(disk, dir, inc1.id);
  assert.equal(inc1.level, 'inc');
  assert.equal(inc1.since, full.checkpoint);
  assert.equal(inc1.dirtyBytes, 192 << 10);
  assert.equal(ownBytes(inc1.file), 192 << 10, 'the inc holds exactly the changed clusters');

  // A discard reads as zero: it is a zero cluster in the inc, not data.
  qemuIo(disk, ['write -P 0x31 2M 64k', 'discard 8M 1M']);
  const inc2 = await takeBackup(opts(dir, disk, { level: 'inc' }));
  truth[inc2.id] = truthOf(disk, dir, inc2.id);
  assert.equal(inc2.since, inc1.checkpoint);

  qemuIo(disk, ['write -P 0x41 3M 64k']);
  const diff = await takeBackup(opts(dir, disk, { level: 'diff' }));
  truth[diff.id] = truthOf(disk, dir, diff.id);
  assert.equal(diff.since, full.checkpoint, 'a diff starts from the last full');
  const diffInfo = JSON.parse(qemuImg('info', '--output=json', diff.file));
  assert.equal(diffInfo['backing-filename'], path.basename(full.file), 'a diff is backed by its full, by a relative name');

  const repo = Repository.open(path.join(dir, 'repo'));
  assert.deepEqual(repo.manifest.backups.map((b) => [b.id, b.level, b.parent]), [
    ['full-1', 'full', null],
    ['inc-2', 'inc', 'full-1'],
    ['inc-3', 'inc', 'inc-2'],
    ['diff-4', 'diff', 'full-1'],
  ]);
  for (const b of repo.manifest.backups) {
    for (const format of ['qcow2', 'raw'] as const) {
      const to = path.join(dir, `restored-${b.id}.${format}`);
      const r = await restoreBackup({ repo: repo.dir, id: b.id, to, format, force: false });
      assert.ok(sameDisk(to, truth[b.id]), `${b.id} restored as ${format} is the disk as it was`);
      assert.ok(r.bytes < 16 << 20, `${b.id}: the restore is thin (${r.bytes} bytes on disk)`);
    }
  }
  // The repository moves: links are relative.
  const moved = path.join(dir, 'moved');
  fs.renameSync(repo.dir, moved);
  await restoreBackup({ repo: moved, id: 'inc-3', to: path.join(dir, 'moved-inc-3.raw'), format: 'raw', force: false });
  assert.ok(sameDisk(path.join(dir, 'moved-inc-3.raw'), truth['inc-3']));
  // The catalog mirrors the manifest.
  const db = openDb(path.join(dir, 'home', 'strata.db'));
  const rows = db.prepare('SELECT id, level, parent, state FROM backup_catalog ORDER BY created_at').all();
  db.close();
  assert.deepEqual(rows.map((r: any) => r.id), ['full-1', 'inc-2', 'inc-3', 'diff-4']);
  // Every checkpoint the backups made is in the disk, recording, none in use.
  assert.deepEqual(bitmapNames(disk), [full.checkpoint, inc1.checkpoint, inc2.checkpoint, diff.checkpoint].map((n) => `disk.qcow2:${n}`));
}, 60000);

test('checkpoint bitmaps spread over two layers are merged; an overlay made outside Strata: an inc from its allocation', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 2M']);
  const full = await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x21 4M 64k']); // recorded by the checkpoint in the base
  // libvirt's style: the overlay gets a bitmap of the same name when it is made.
  const top = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'disk.qcow2', '-F', 'qcow2', top);
  qemuImg('bitmap', '--add', top, full.checkpoint!);
  qemuIo(top, ['write -P 0x22 1M 64k', 'write -P 0x23 6M 128k']);
  const inc = await takeBackup(opts(dir, top));
  assert.equal(inc.level, 'inc', String(inc.fallback));
  assert.equal(inc.dirtyBytes, (64 + 64 + 128) << 10, 'base and top bitmaps, merged');
  const truthInc = truthOf(top, dir, 'inc');
  await restoreBackup({ repo: path.join(dir, 'repo'), id: inc.id, to: path.join(dir, 'inc.raw'), format: 'raw', force: false });
  assert.ok(sameDisk(path.join(dir, 'inc.raw'), truthInc));

  assert.equal(inc.changesFrom, 'bitmaps');
  // An overlay made outside Strata: no bitmap tracks its writes, its allocation proves them.
  const top2 = path.join(dir, 'top2.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'top.qcow2', '-F', 'qcow2', top2);
  qemuIo(top2, ['write -P 0x31 3M 64k']);
  const next = await takeBackup(opts(dir, top2));
  assert.equal(next.level, 'inc');
  assert.equal(next.fallback, null);
  assert.equal(next.changesFrom, 'allocation');
  assert.equal(next.dirtyBytes, 64 << 10);
  const truthNext = truthOf(top2, dir, 'next');
  await restoreBackup({ repo: path.join(dir, 'repo'), id: next.id, to: path.join(dir, 'next.qcow2'), format: 'qcow2', force: false });
  assert.ok(sameDisk(path.join(dir, 'next.qcow2'), truthNext));
  // and the chain of backups goes on from the new full
  qemuIo(top2, ['write -P 0x41 5M 64k']);
  const after = await takeBackup(opts(dir, top2));
  assert.equal(after.level, 'inc');
  assert.equal(after.since, next.checkpoint);
}, 60000);

test('verify finds a flipped byte in an inc, a truncated file and a broken backing link, and names them', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  qemuIo(disk, ['write -P 0x11 0 1M']);
  await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x22 512k 64k']);
  const inc = await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x33 768k 64k']);
  const inc2 = await takeBackup(opts(dir, disk));
  let r = await strata(home, ['verify', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.ok(JSON.parse(r.out).every((x: any) => x.ok));

  const m = Repository.open(repo).find(inc.id);
  const at = m.digests.runs[0].offset! + 1000;
  flipByteAt(inc.file, at);
  r = await strata(home, ['verify', '--repo', repo, '--json']);
  assert.equal(r.code, 2);
  const res = JSON.parse(r.out);
  assert.deepEqual(res.map((x: any) => [x.id, x.ok]), [['full-1', true], ['inc-2', false], ['inc-3', true]]);
  assert.match(res[1].problems.join(), /sha256 mismatch/);
  assert.match(r.err, /inc-2 \(.*inc-2\.qcow2\)/);
  // The cost follows the backup's own data: one inc re-reads 64 KiB, not the disk.
  r = await strata(home, ['verify', '--repo', repo, inc2.id, '--json']);
  assert.equal(r.code, 0);
  assert.equal(JSON.parse(r.out)[0].checkedBytes, 64 << 10);

  fs.truncateSync(inc2.file, 200000);
  r = await strata(home, ['verify', '--repo', repo, inc2.id]);
  assert.equal(r.code, 2);
  assert.match(r.out, /truncated/);
  qemuImg('rebase', '-u', '-b', '/nowhere/full-1.qcow2', '-F', 'qcow2', inc.file);
  r = await strata(home, ['verify', '--repo', repo, inc.id]);
  assert.equal(r.code, 2);
  assert.match(r.out, /absolute/);
}, 60000);

test('a full of more than one digest piece (hashed on threads started with the job): every piece recorded, verify names the one with a flipped byte', async () => {
  const dir = tmp();
  const disk = makeDisk(dir, '256M');
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  qemuIo(disk, ['write -P 0x41 0 40M', 'write -P 0x42 100M 50M']);
  const full = await takeBackup(opts(dir, disk));
  const m = Repository.open(repo).find(full.id);
  // 90 MiB of data in pieces of at most 32 MiB: at least three, covering exactly the data
  assert.ok(m.digests.runs.length >= 3, `${m.digests.runs.length} pieces`);
  assert.equal(m.digests.runs.reduce((n, x) => n + x.length, 0), 90 << 20);
  assert.ok(m.digests.runs.every((x) => x.length <= 32 << 20 && /^[0-9a-f]{64}$/.test(x.sha256)));
  let r = await strata(home, ['verify', '--repo', repo, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out)[0].checkedBytes, 90 << 20);
  // an offline full's digests are of the disk's bytes (the "guest" scheme): the file's own map says
  // where the run's last byte lies
  assert.equal(m.digests.scheme, 'guest');
  const last = m.digests.runs[m.digests.runs.length - 1];
  const at = last.start + last.length - 1;
  const e = (await mapAlone(full.file)).find((x) => x.start <= at && at < x.start + x.length)!;
  flipByteAt(full.file, e.offset! + (at - e.start));
  r = await strata(home, ['verify', '--repo', repo, '--json']);
  assert.equal(r.code, 2);
  const problems: string[] = JSON.parse(r.out)[0].problems;
  assert.deepEqual(problems.filter((x) => /sha256 mismatch/.test(x)), [`${full.file}: the data of disk bytes ${last.start}..${last.start + last.length} differs from what was written (sha256 mismatch)`]);
}, 60000);

test('compress and copy: a compressed full restores exactly; copy adds no checkpoint', async () => {
  const dir = tmp();
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 2M']);
  const full = await takeBackup(opts(dir, disk, { compress: true }));
  const truth = truthOf(disk, dir, 'full');
  assert.ok(full.bytes < 1 << 20, `compressed: ${full.bytes} bytes for 2 MiB of one byte value`);
  const before = bitmapNames(disk);
  const copy = await takeBackup(opts(dir, disk, { level: 'copy' }));
  assert.equal(copy.checkpoint, null);
  assert.deepEqual(bitmapNames(disk), before);
  for (const id of [full.id, copy.id]) {
    const to = path.join(dir, `${id}.raw`);
    await restoreBackup({ repo: path.join(dir, 'repo'), id, to, format: 'raw', force: false });
    assert.ok(sameDisk(to, truth));
  }
  // the next inc is relative to the full (a copy is outside the chain)
  qemuIo(disk, ['write -P 0x22 1M 64k']);
  const inc = await takeBackup(opts(dir, disk));
  expect(inc.since).toBe(full.checkpoint);
}, 60000);

test('prune: a plan first; with --yes the manifest, then the files; every remaining point restores', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 1M']);
  await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x12 1M 64k']);
  await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x13 2M 64k']);
  await takeBackup(opts(dir, disk, { level: 'full' }));
  qemuIo(disk, ['write -P 0x14 3M 64k']);
  const last = await takeBackup(opts(dir, disk));
  const truth = truthOf(disk, dir, 'last');
  const before = fingerprint(repo);
  let r = await strata(home, ['prune', '--repo', repo, '--keep-last', '1', '--json']);
  assert.equal(r.code, 0, r.err);
  let plan = JSON.parse(r.out);
  assert.equal(plan.applied, false);
  assert.deepEqual(plan.keep.map((k: any) => [k.id, k.why]), [['full-3', ['needed to restore inc-4']], ['inc-4', ['keep-last']]]);
  assert.deepEqual(plan.remove.map((x: any) => x.id), ['full-1', 'inc-2']);
  assert.deepEqual(fingerprint(repo), before, 'the plan removes nothing');
  r = await strata(home, ['prune', '--repo', repo, '--keep-last', '1', '--yes', '--json']);
  plan = JSON.parse(r.out);
  assert.equal(plan.applied, true);
  assert.deepEqual(fs.readdirSync(repo).sort(), ['full-3.qcow2', 'inc-4.qcow2', 'strata-backups.json']);
  assert.equal((await strata(home, ['verify', '--repo', repo])).code, 0);
  await restoreBackup({ repo, id: last.id, to: path.join(dir, 'last.raw'), format: 'raw', force: false });
  assert.ok(sameDisk(path.join(dir, 'last.raw'), truth));
  qemuIo(disk, ['write -P 0x15 4M 64k']);
  const next = await takeBackup(opts(dir, disk));
  assert.equal(next.level, 'inc');
  assert.equal(next.since, last.checkpoint);
  r = await strata(home, ['prune', '--repo', repo]);
  assert.equal(r.code, 2);
  assert.match(r.err, /needs at least one of --keep-last/);
}, 60000);
