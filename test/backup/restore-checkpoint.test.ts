// Restore with a fresh checkpoint, on real QEMU: the restored image gets the point's checkpoint as a
// recording bitmap and the manifest records it, so the next backup of the restored disk is an
// incremental to that point holding exactly what was written since; it restores exactly. Refused
// with raw (nothing written); a restore that fails leaves no file and records nothing.
import { test, onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { qemuIo } from '../helpers/qemu.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { restoreBackup } from '../../electron/core/backup/restore.ts';
import { Repository } from '../../electron/core/backup/repository.ts';
import { withChain } from '../../electron/core/qcow2/chain.ts';
import { createService } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { tmp, makeDisk, truthOf, sameDisk, bitmapNames, strata, fingerprint, opts } from './helpers.ts';

const bitmapsOf = (image: string) => withChain(image, (c) => c.layers[0].bitmaps.map((b) => ({ name: b.name, granularity: b.granularity, auto: b.auto, inUse: b.inUse })));

test('restore --checkpoint: the restored disk backs up as an inc of that point, holding only what was written since, and restores exactly', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 4M', 'write -P 0x12 10M 1M']);
  const full = await takeBackup(opts(dir, disk));
  const truthFull = truthOf(disk, dir, 'full');
  qemuIo(disk, ['write -P 0x21 1M 256k']);
  const inc = await takeBackup(opts(dir, disk));
  assert.equal(inc.level, 'inc');
  assert.equal(Repository.open(repo).find(full.id).granularity, 65536, 'the checkpoint granularity is recorded at backup time');

  // The older point, not the newest: the restored disk's history starts at full-1.
  const restored = path.join(dir, 'restored.qcow2');
  const r = await strata(home, ['restore', '--repo', repo, full.id, '--to', restored, '--checkpoint', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), { id: full.id, to: restored, bytes: fs.statSync(restored).blocks * 512, checkpoint: full.checkpoint });
  assert.ok(sameDisk(restored, truthFull), 'the restored image is the point');
  assert.deepEqual(bitmapsOf(restored), [{ name: full.checkpoint, granularity: 65536, auto: true, inUse: false }], 'one recording bitmap, the point\'s checkpoint');
  const rec = Repository.open(repo).manifest.restored;
  assert.deepEqual(rec?.map((x) => [x.image, x.id, x.checkpoint]), [[restored, full.id, full.checkpoint]]);
  const text = await strata(home, ['restore', '--repo', repo, full.id, '--to', path.join(dir, 'again.qcow2'), '--checkpoint']);
  assert.match(text.out, new RegExp(`new checkpoint: ${full.checkpoint} \\(the next strata backup of .*again\\.qcow2 into .* is incremental to ${full.id}\\)`));

  // Known data into the restored disk: 64 KiB + 128 KiB + one unaligned write rounded out to 64 KiB.
  qemuIo(restored, ['write -P 0x31 2M 64k', 'write -P 0x32 20M 128k', 'write -P 0x33 30M 4k']);
  const next = await takeBackup(opts(dir, restored));
  assert.equal(next.level, 'inc', String(next.fallback));
  assert.equal(next.fallback, null);
  assert.equal(next.since, full.checkpoint);
  assert.equal(Repository.open(repo).find(next.id).parent, full.id);
  assert.equal(next.dirtyBytes, 256 << 10, 'exactly the clusters written since the restore');
  const truthNext = truthOf(restored, dir, 'next');
  const out = path.join(dir, 'next.raw');
  await restoreBackup({ repo, id: next.id, to: out, format: 'raw', force: false });
  assert.ok(sameDisk(out, truthNext), 'the restored disk\'s inc restores exactly');
  // and the restored disk goes on from its own checkpoint
  qemuIo(restored, ['write -P 0x34 40M 64k']);
  const after = await takeBackup(opts(dir, restored));
  assert.equal(after.level, 'inc');
  assert.equal(after.since, next.checkpoint);
  assert.equal(after.dirtyBytes, 64 << 10);

  // The original disk is not confused by the restored disk's backups: still incremental to its own.
  qemuIo(disk, ['write -P 0x41 5M 64k']);
  const orig = await takeBackup(opts(dir, disk));
  assert.equal(orig.level, 'inc');
  assert.equal(orig.since, inc.checkpoint);
  assert.equal(orig.dirtyBytes, 64 << 10);
  const truthOrig = truthOf(disk, dir, 'orig');
  await restoreBackup({ repo, id: orig.id, to: path.join(dir, 'orig.raw'), format: 'raw', force: false });
  assert.ok(sameDisk(path.join(dir, 'orig.raw'), truthOrig));

  // A restore that fails (a damaged backup file) leaves no file and records no checkpoint.
  const before = Repository.open(repo).manifest.restored;
  const damaged = Repository.open(repo).fileOf(Repository.open(repo).find(orig.id));
  const fd = fs.openSync(damaged, 'r+');
  fs.writeSync(fd, Buffer.from('XXXX'), 0, 4, 0);
  fs.closeSync(fd);
  const failed = await strata(home, ['restore', '--repo', repo, orig.id, '--to', path.join(dir, 'failed.qcow2'), '--checkpoint']);
  assert.equal(failed.code, 2, failed.out);
  assert.deepEqual(fs.readdirSync(dir).filter((n) => n.includes('failed')), [], 'no partial file');
  assert.deepEqual(Repository.open(repo).manifest.restored, before, 'no checkpoint recorded');
}, 120000);

test('restore --checkpoint is refused for a raw target and for a copy, naming why, with nothing written; the channel takes it too', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 1M']);
  const full = await takeBackup(opts(dir, disk));
  const copy = await takeBackup(opts(dir, disk, { level: 'copy' }));
  const outsideHome = () => Object.fromEntries(Object.entries(fingerprint(dir)).filter(([k]) => !k.startsWith('home/')));
  const before = outsideHome();
  const raw = await strata(home, ['restore', '--repo', repo, full.id, '--to', path.join(dir, 'r.raw'), '--format', 'raw', '--checkpoint']);
  assert.equal(raw.code, 2);
  assert.match(raw.err, /r\.raw: a checkpoint is a qcow2 bitmap; --checkpoint needs --format qcow2, not raw; nothing was written/);
  const c = await strata(home, ['restore', '--repo', repo, copy.id, '--to', path.join(dir, 'c.qcow2'), '--checkpoint', '--json']);
  assert.equal(c.code, 2);
  assert.match(c.err, new RegExp(`backup ${copy.id} is a copy without a checkpoint`));
  assert.deepEqual(outsideHome(), before, 'nothing written (but the history of the refused restores)');
  assert.deepEqual(bitmapNames(disk), [`disk.qcow2:${full.checkpoint}`]);

  const service = createService({ dataDir: home, mode: 'browser' });
  onTestFinished(() => service.close());
  const refused = await dispatch(service, 'backup:restore', { repo, id: full.id, to: path.join(dir, 'ch.raw'), format: 'raw', checkpoint: true });
  assert.equal(refused.ok ? null : refused.error.code, 'E_BAD_INPUT');
  const to = path.join(dir, 'ch.qcow2');
  const done = await dispatch(service, 'backup:restore', { repo, id: full.id, to, checkpoint: true });
  assert.ok(done.ok, done.ok ? '' : done.error.message);
  assert.equal((done.result as { checkpoint: string | null }).checkpoint, full.checkpoint);
  assert.deepEqual(bitmapNames(to), [`ch.qcow2:${full.checkpoint}`]);
  // The chain view's marker: the restored image's checkpoint is that backup's.
  const marks = await dispatch(service, 'backup:checkpoints', { image: to });
  assert.deepEqual(marks.ok ? (marks.result as { id: string }[]).map((m) => m.id) : marks.error.message, [full.id]);
}, 120000);
