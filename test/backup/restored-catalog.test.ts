// The SQLite catalog mirrors the manifest's restored list (disks restored with a fresh checkpoint),
// on a real repository and a real SQLite file: written by the CLI's and the channel's restores,
// listed with each point (strata backups, backup:list), rebuilt from the manifest when a catalog is
// new or stale, and replaced when a file is restored again.
import { test, onTestFinished } from 'vitest';
import assert from 'node:assert/strict';
import path from 'node:path';
import { qemuIo } from '../helpers/qemu.ts';
import { takeBackup } from '../../electron/core/backup/take.ts';
import { Repository } from '../../electron/core/backup/repository.ts';
import type { BackupPoint } from '../../electron/core/backup/contract.ts';
import { openDb } from '../../electron/core/store/db.ts';
import { createService } from '../../electron/core/service.ts';
import { dispatch } from '../../electron/core/dispatch.ts';
import { tmp, makeDisk, bitmapNames, strata, opts } from './helpers.ts';

/** The catalog's restored rows in `home`'s strata.db, as the manifest spells them. */
function catalogRows(home: string, repo: string) {
  const db = openDb(path.join(home, 'strata.db'));
  try {
    return (db.prepare('SELECT image, id, checkpoint, restored_at FROM backup_restored WHERE repo = ? ORDER BY restored_at, image').all(repo) as any[]).map((r) => ({ image: r.image, id: r.id, checkpoint: r.checkpoint, restoredAt: r.restored_at }));
  } finally {
    db.close();
  }
}

const manifestRestored = (repo: string) => Repository.open(repo).manifest.restored ?? [];
const restoredOf = (points: BackupPoint[]) => Object.fromEntries(points.map((p) => [p.id, p.restored.map((r) => [r.image, r.checkpoint, r.restoredAt])]));

async function listed(service: ReturnType<typeof createService>, repo: string): Promise<BackupPoint[]> {
  const r = await dispatch(service, 'backup:list', { repo });
  assert.ok(r.ok, r.ok ? '' : r.error.message);
  return r.result as BackupPoint[];
}

test('restored disks: in the catalog after each restore --checkpoint, listed with their point, rebuilt from the manifest, replaced on a new restore', async () => {
  const dir = tmp();
  const home = path.join(dir, 'home');
  const repo = path.join(dir, 'repo');
  const disk = makeDisk(dir);
  qemuIo(disk, ['write -P 0x11 0 2M']);
  const full = await takeBackup(opts(dir, disk));
  qemuIo(disk, ['write -P 0x21 1M 128k']);
  const inc = await takeBackup(opts(dir, disk));
  assert.equal(inc.level, 'inc');
  assert.deepEqual(catalogRows(home, repo), [], 'nothing restored yet');

  // The CLI: the restore's record is in the manifest and mirrored in the catalog.
  const a = path.join(dir, 'a.qcow2');
  const r = await strata(home, ['restore', '--repo', repo, full.id, '--to', a, '--checkpoint', '--json']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(bitmapNames(a), [`a.qcow2:${full.checkpoint}`]);
  const m1 = manifestRestored(repo);
  assert.deepEqual(m1.map((x) => [x.image, x.id, x.checkpoint]), [[a, full.id, full.checkpoint]]);
  assert.deepEqual(catalogRows(home, repo), m1);
  // strata backups lists it with its point, in the JSON and in words.
  const j = await strata(home, ['backups', '--repo', repo, '--json']);
  assert.equal(j.code, 0, j.err);
  assert.deepEqual(restoredOf(JSON.parse(j.out)), { [full.id]: [[a, full.checkpoint, m1[0].restoredAt]], [inc.id]: [] });
  const t = await strata(home, ['backups', '--repo', repo]);
  assert.ok(t.out.includes(`${full.id} restored to ${a} at ${m1[0].restoredAt} with checkpoint ${full.checkpoint}`), t.out);
  // A restore without --checkpoint records nothing.
  assert.equal((await strata(home, ['restore', '--repo', repo, inc.id, '--to', path.join(dir, 'plain.qcow2')])).code, 0);
  assert.deepEqual(catalogRows(home, repo), m1);

  // The channel, in the app's service on the same history file.
  const service = createService({ dataDir: home, mode: 'browser' });
  onTestFinished(() => service.close());
  const b = path.join(dir, 'b.qcow2');
  const done = await dispatch(service, 'backup:restore', { repo, id: inc.id, to: b, checkpoint: true });
  assert.ok(done.ok, done.ok ? '' : done.error.message);
  const m2 = manifestRestored(repo);
  assert.deepEqual(m2.map((x) => [x.image, x.id]), [[a, full.id], [b, inc.id]]);
  assert.deepEqual(catalogRows(home, repo), m2);
  assert.deepEqual(restoredOf(await listed(service, repo)), { [full.id]: [[a, full.checkpoint, m2[0].restoredAt]], [inc.id]: [[b, inc.checkpoint, m2[1].restoredAt]] });

  // Rebuilt from the manifest: a stale catalog (rows lost, one wrong) is put right when the repository is listed...
  const db = openDb(path.join(home, 'strata.db'));
  db.prepare('DELETE FROM backup_restored WHERE image = ?').run(a);
  db.prepare("UPDATE backup_restored SET checkpoint = 'wrong' WHERE image = ?").run(b);
  db.close();
  assert.notDeepEqual(catalogRows(home, repo), m2);
  await listed(service, repo);
  assert.deepEqual(catalogRows(home, repo), m2);
  // ...and a new history file (another machine, a lost strata.db) gets the same rows from the repository alone.
  const home2 = path.join(dir, 'home2');
  const service2 = createService({ dataDir: home2, mode: 'browser' });
  onTestFinished(() => service2.close());
  assert.deepEqual(restoredOf(await listed(service2, repo)), restoredOf(await listed(service, repo)));
  assert.deepEqual(catalogRows(home2, repo), m2);

  // a.qcow2 restored again, from the inc: its record is replaced, in the manifest and the catalog.
  const again = await strata(home, ['restore', '--repo', repo, inc.id, '--to', a, '--force', '--checkpoint', '--json']);
  assert.equal(again.code, 0, again.err);
  const m3 = manifestRestored(repo);
  assert.deepEqual(m3.map((x) => [x.image, x.id]), [[b, inc.id], [a, inc.id]]);
  assert.deepEqual(catalogRows(home, repo), m3);
  const points = await listed(service, repo);
  assert.deepEqual(restoredOf(points)[full.id], []);
  assert.deepEqual(restoredOf(points)[inc.id].map((x) => x[0]).sort(), [a, b].sort());
}, 120000);
